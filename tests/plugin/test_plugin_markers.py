"""pytester runs of the markers limit_memory, limit_leaks and no_leaks, passing and failing."""

from __future__ import annotations

import pytest

from tests.support.memwarden_plugin import ARGS, untraced


def test_limit_memory_passes_under_the_limit(pytester: pytest.Pytester) -> None:
    """A test allocating 100 KB under a 1 MB limit passes."""
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.limit_memory("1 MB")
        def test_small():
            data = bytearray(100_000)
            assert len(data) == 100_000
        """
    )
    result = pytester.runpytest_inprocess(*ARGS)
    result.assert_outcomes(passed=1)


def test_limit_memory_fails_over_the_limit(pytester: pytest.Pytester) -> None:
    """A 5 MB peak under a 1 MB limit fails with status MEMORY, the limit, the peak and the site."""
    pytester.makepyfile(
        """
        import pytest

        KEEP = []

        @pytest.mark.limit_memory("1 MB")
        def test_big():
            KEEP.append(bytearray(5_000_000))
        """
    )
    result = pytester.runpytest_inprocess(*ARGS, "-rf")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "MEMORY test_limit_memory_fails_over_the_limit.py::test_big" in out
    assert "limited to 1 MB (limit_memory marker)" in out  # the limit as written
    assert "4.8 MiB at its peak" in out
    assert "test_limit_memory_fails_over_the_limit.py:7: " in out


@pytest.fixture
def numpy_loaded() -> None:
    """numpy imported before pytester snapshots sys.modules.

    Otherwise the in-process run's import is dropped at teardown and numpy, which
    cannot be loaded twice in a process, breaks later tests (matplotlib charts).
    """
    pytest.importorskip("numpy")


def test_limit_memory_counts_numpy_buffers(numpy_loaded: None, pytester: pytest.Pytester) -> None:
    """numpy arrays report to tracemalloc, so a 16 MB array breaks an 8 MB limit."""
    pytester.makepyfile(
        """
        import numpy as np
        import pytest

        @pytest.mark.limit_memory("8 MB")
        def test_numpy():
            a = np.ones(2_000_000)  # 16 MB of float64
            assert a.sum() == 2_000_000
        """
    )
    result = pytester.runpytest_inprocess(*ARGS)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*limited to 8 MB*but allocated 15.* MiB at its peak*"])


def test_limit_leaks_one_byte_passes_empty_and_printing_tests(pytester: pytest.Pytester) -> None:
    """At "1 B", a test doing nothing, one that prints and one freeing what it made all pass."""
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.limit_leaks("1 B")
        def test_empty():
            pass

        @pytest.mark.limit_leaks("1 B")
        def test_prints():
            print("hello " * 2000)

        @pytest.mark.limit_leaks("1 B")
        def test_temporaries():
            rows = [{"i": i} for i in range(10_000)]
            del rows
        """
    )
    with untraced():  # coverage's line data would count (see untraced's docstring)
        result = pytester.runpytest_inprocess(*ARGS)
    result.assert_outcomes(passed=3)


def test_limit_leaks_fails_for_kept_memory_and_shows_the_site(pytester: pytest.Pytester) -> None:
    """Memory a test leaves in a module global fails the limit; the site names the test line."""
    pytester.makepyfile(
        """
        import pytest

        CACHE = []

        @pytest.mark.limit_leaks("10 KB")
        def test_leaky():
            CACHE.append(bytearray(200_000))
        """
    )
    result = pytester.runpytest_inprocess(*ARGS)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*Test leaked 195.* KiB, more than its limit of 9.8 KiB*",
            "*test_limit_leaks_fails_for_kept_memory_and_shows_the_site.py:7: 195.* KiB*",
            "*test_leaky at *test_limit_leaks_fails_for_kept_memory_and_shows_the_site.py:7*",
        ]
    )


def test_limit_leaks_filter_fn_excludes_stacks(pytester: pytest.Pytester) -> None:
    """A filter_fn rejecting stacks through a helper function makes the same leak pass."""
    pytester.makepyfile(
        """
        import pytest

        CACHE = []

        def warm_cache():
            CACHE.append(bytearray(200_000))

        def not_warm_cache(stack):
            return not any(frame.function == "warm_cache" for frame in stack.frames)

        @pytest.mark.limit_leaks("10 KB", filter_fn=not_warm_cache)
        def test_filtered():
            warm_cache()

        @pytest.mark.limit_leaks("10 KB")
        def test_unfiltered():
            warm_cache()
        """
    )
    result = pytester.runpytest_inprocess(*ARGS)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_unfiltered*"])


def test_no_leaks_passes_clean_and_fails_leaky_body(pytester: pytest.Pytester) -> None:
    """no_leaks reruns the body with the same fixtures; a leaking body fails with the summary."""
    pytester.makepyfile(
        """
        import pytest

        SETUPS = []
        HOARD = []

        @pytest.fixture
        def payload():
            SETUPS.append(1)
            return [1, 2, 3]

        @pytest.mark.no_leaks(rounds=5, calls_per_round=40)
        def test_clean(payload):
            assert sum(list(payload) * 10) == 60

        @pytest.mark.no_leaks(rounds=5, calls_per_round=40)
        def test_leaky(payload):
            HOARD.append(list(payload) * 10)

        def test_fixture_set_up_once_per_test():
            assert len(SETUPS) == 2
        """
    )
    result = pytester.runpytest_inprocess(*ARGS, "-p", "no:randomly")
    result.assert_outcomes(passed=2, failed=1)
    out = result.stdout.str()
    assert "LEAK: test_no_leaks_passes_clean_and_fails_leaky_body.test_leaky keeps" in out
    assert "5 rounds x 40 calls" in out


def test_no_leaks_failure_in_body_is_a_normal_failure(pytester: pytest.Pytester) -> None:
    """An assertion failing inside a no_leaks body fails the test as an ordinary failure."""
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.no_leaks(rounds=4, calls_per_round=2)
        def test_wrong():
            assert 1 == 2
        """
    )
    result = pytester.runpytest_inprocess(*ARGS, "-rf")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["FAILED *test_wrong*"])


@pytest.mark.parametrize(
    ("decorator", "message"),
    [
        ('@pytest.mark.limit_memory("lots")', "limit_memory('lots')*expected a size"),
        ("@pytest.mark.limit_memory()", "limit_memory()*missing a required argument"),
        ('@pytest.mark.limit_leaks("1 MB", filter=None)', "unexpected keyword argument 'filter'"),
        ('@pytest.mark.limit_leaks("1 MB", filter_fn=3)', "expected a callable"),
        ("@pytest.mark.no_leaks(rounds=1)", "no_leaks(rounds=1)*expected an int >= 4"),
        ("@pytest.mark.no_leaks(calls_per_round=0)", "expected an int >= 1 or None"),
    ],
)
def test_bad_marker_arguments_are_usage_errors(
    pytester: pytest.Pytester, decorator: str, message: str
) -> None:
    """Wrong marker arguments stop the run at collection with exit code 4 and a named value."""
    pytester.makepyfile(
        f"""
        import pytest

        {decorator}
        def test_x():
            pass
        """
    )
    result = pytester.runpytest_inprocess(*ARGS)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*test_x*{message}*"])


def test_markers_are_documented(pytester: pytest.Pytester) -> None:
    """`pytest --markers` lists the three markers with their docstrings."""
    result = pytester.runpytest_inprocess(*ARGS, "--markers")
    result.stdout.fnmatch_lines(
        [
            "*@pytest.mark.limit_memory(limit, current_thread_only=False)*peak memory*",
            "*@pytest.mark.limit_leaks(location_limit, filter_fn=None)*still alive*",
            "*@pytest.mark.no_leaks(rounds=8, calls_per_round=None, warmup=2)*rerun*",
        ]
    )


def test_no_leaks_on_async_test_warns(pytester: pytest.Pytester) -> None:
    """no_leaks on an async test is not silently ignored: a warning says to use the async check."""
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.no_leaks()
        async def test_async():
            pass
        """
    )
    result = pytester.runpytest_inprocess(*ARGS, "-W", "default")
    result.stdout.fnmatch_lines(["*no_leaks does not rerun async tests*check_leaks_async*"])
