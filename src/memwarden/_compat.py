"""Small shims over differences between the supported Python versions and platforms."""

from __future__ import annotations

import sys

__all__ = ["IS_LINUX", "PY311"]

PY311 = sys.version_info >= (3, 11)
IS_LINUX = sys.platform.startswith("linux")
