"""A small pinned part of the labelled lint corpus, end to end (wheels from PyPI).

The full corpus (twenty packages, thousands of files) runs in
``bench/bench_lint_corpus.py``; this test downloads two small wheels of it (once, into
``bench/.cache/``) and checks that every finding on them has a label, that no label went
stale, and that the labels' verdicts hold. Without network access it is skipped, saying so.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from memwarden.lint.runner import lint_paths

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_lint_corpus.py"
PART = ["rich==13.7.1", "click==8.1.7"]


def _corpus() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_lint_corpus", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_lint_corpus"] = module
    spec.loader.exec_module(module)
    return module


def test_pinned_part_matches_its_labels() -> None:
    corpus = _corpus()
    assert set(PART) <= set(corpus.pinned())
    root = corpus.CACHE  # bench/.cache/ (never committed): downloaded once, then reused
    try:
        dirs = corpus.fetch(PART, root)
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"offline: the corpus wheels cannot be downloaded ({exc})")
    result = lint_paths([dirs[spec] for spec in PART], root=root, jobs=1)
    assert len(result.files) > 60
    labels = [lb for lb in corpus.load_labels() if lb.package in PART]
    comparison = corpus.compare([f.to_dict() for f in result.findings], labels, root)
    assert comparison.unlabelled == []
    assert comparison.stale == []
    assert comparison.true["MW101"] == 6
    assert comparison.false["MW101"] == 0
