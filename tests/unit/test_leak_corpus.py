"""The leak corpus: default ``check_leaks`` settings classify every real leak and look-alike."""

from __future__ import annotations

import pytest

from memwarden.leaks import check_leaks
from tests.leak_corpus import LEAKS, NOT_LEAKS, Case
from tests.support.memwarden_plugin import coverage_active

# ~1-3 s per case (the default check calibrates to ~0.6 s of calls); untraced: coverage keeps
# a tracer per thread, which the threads look-alike would rightly report (make test runs
# `-m untraced` without coverage).
pytestmark = [pytest.mark.slow, pytest.mark.untraced]


@pytest.mark.parametrize("case", LEAKS, ids=lambda c: c.name)
def test_real_leak_is_reported(case: Case) -> None:
    """A real leak is reported, with the right kind (Python heap or native)."""
    fn, cleanup = case.factory()
    try:
        report = check_leaks(fn)
    finally:
        cleanup()
    assert report.leaked, report.summary()
    assert report.kind == ("native" if case.native else "python"), report.summary()
    assert report.growth_per_call_bytes > 0


@pytest.mark.parametrize("case", NOT_LEAKS, ids=lambda c: c.name)
def test_look_alike_is_not_reported(case: Case) -> None:
    """A bounded, temporary or cyclic structure is not reported as a leak."""
    if case.name == "threads_started_and_joined" and coverage_active():
        pytest.skip(
            "under coverage every started thread leaks: coverage's collector keeps a "
            "tracer per thread (the detector reports exactly that)"
        )
    fn, cleanup = case.factory()
    try:
        report = check_leaks(fn)
    finally:
        cleanup()
    assert not report.leaked, report.summary()


def test_corpus_has_both_sides() -> None:
    """The corpus keeps at least the issue's seven leak causes and eight look-alikes."""
    assert len(LEAKS) >= 7
    assert len(NOT_LEAKS) >= 8
    assert {c.name for c in LEAKS}.isdisjoint({c.name for c in NOT_LEAKS})
