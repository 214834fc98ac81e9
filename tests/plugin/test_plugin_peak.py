"""limit_memory failures name the line behind the peak, even when it was freed before the end."""

from __future__ import annotations

import pytest

from memwarden import profiler
from tests.support.memwarden_plugin import ARGS


@pytest.mark.skip(
    reason="peak attribution by the sampler is opt-in (MEMWARDEN_PYTEST_PEAK_PROFILE=1): "
    "in-process pytester sessions hung with the sampler under tracemalloc"
)
@pytest.mark.skipif(
    not profiler.native_available(),
    reason=f"the native sampling profiler is not built: {profiler.native_error()}",
)
def test_the_peak_is_named_even_when_freed_through_a_library(pytester: pytest.Pytester) -> None:
    """A json temporary freed before the test ends is charged to the test file's line."""
    pytester.makepyfile(
        test_peak="""
        import json
        import pytest

        def build(n):
            return json.loads(json.dumps([str(i) * 10 for i in range(n)]))

        @pytest.mark.limit_memory("1 MB")
        def test_temporaries():
            data = build(100_000)
            del data
        """
    )
    result = pytester.runpytest_inprocess(*ARGS)
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "Allocations behind the peak" in out
    head = out.split("Allocations behind the peak", 1)[1]
    first = head.splitlines()[1].strip()
    assert first.startswith(f"{pytester.path / 'test_peak.py'}:5: "), first  # the test file's line
    assert "test_temporaries (" in head  # then its stack, down to the test function
    assert "still alive at the end" not in out
