"""Shared fixtures for memwarden's own tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def python_exe() -> str:
    """The interpreter running the tests (its venv has memwarden installed)."""
    return sys.executable


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove MEMWARDEN_* variables so configuration tests start from defaults."""
    for key in list(os.environ):
        if key.startswith("MEMWARDEN_"):
            monkeypatch.delenv(key)
