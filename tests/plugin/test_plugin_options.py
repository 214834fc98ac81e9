"""pytester runs of the plugin's flags, ini keys, fixtures and its inertness."""

from __future__ import annotations

import json

import pytest

from tests.support.memwarden_plugin import ARGS, QUIET_PLUGINS

TESTS = """
import pytest

KEEP = []

def test_small():
    data = bytearray(10_000)

def test_big():
    data = bytearray(3_000_000)

@pytest.mark.limit_leaks("1 MB")
def test_keeps():
    KEEP.append(bytearray(50_000))
"""


def test_inert_without_marker_or_flag(pytester: pytest.Pytester) -> None:
    """With no marker and no flag, tracemalloc stays off during the test and nothing is printed."""
    pytester.makepyfile(
        """
        import tracemalloc

        def test_plain():
            assert not tracemalloc.is_tracing()
        """
    )
    result = pytester.runpytest_inprocess(*ARGS)
    result.assert_outcomes(passed=1)
    assert "memwarden" not in result.stdout.str().split("collected")[1]


def test_memwarden_flag_prints_table_sorted_by_peak(pytester: pytest.Pytester) -> None:
    """--memwarden prints the highest peaks first, with leaked bytes where measured."""
    pytester.makepyfile(TESTS)
    result = pytester.runpytest_inprocess(*ARGS, "--memwarden")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "*memwarden: highest peak memory per test*",
            "test*peak*leaked*limit*",
            "*::test_big *2.* MiB*-*-",
            "*::test_keeps *KiB*4?.* KiB*-",
            "*::test_small*",
        ]
    )


def test_memwarden_top_limits_rows(pytester: pytest.Pytester) -> None:
    """--memwarden-top=1 keeps only the highest row."""
    pytester.makepyfile(TESTS)
    result = pytester.runpytest_inprocess(*ARGS, "--memwarden", "--memwarden-top=1")
    out = result.stdout.str()
    assert "::test_big" in out.split("highest peak memory")[1]
    assert "::test_small" not in out.split("highest peak memory")[1]


def test_memwarden_limit_applies_to_every_test(pytester: pytest.Pytester) -> None:
    """--memwarden-limit=1MB fails the 3 MB test only, and a marker's own limit wins over it."""
    pytester.makepyfile(
        TESTS
        + """
@pytest.mark.limit_memory("10 MB")
def test_big_with_own_limit():
    data = bytearray(3_000_000)
"""
    )
    result = pytester.runpytest_inprocess(*ARGS, "--memwarden-limit=1MB", "-rf")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["MEMORY *::test_big - Test was lim*"])
    result.stdout.fnmatch_lines(
        ["*limited to 976.6 KiB (--memwarden-limit) but allocated 2.* MiB*"]
    )


def test_memwarden_json_writes_per_test_figures(pytester: pytest.Pytester) -> None:
    """--memwarden-json writes one record per test with peak, leaked and outcome."""
    pytester.makepyfile(TESTS)
    out = pytester.path / "mem" / "figures.json"
    result = pytester.runpytest_inprocess(*ARGS, f"--memwarden-json={out}")
    result.assert_outcomes(passed=3)
    data = json.loads(out.read_text())
    by_name = {t["nodeid"].split("::")[1]: t for t in data["tests"]}
    assert set(by_name) == {"test_small", "test_big", "test_keeps"}
    assert by_name["test_big"]["peak_bytes"] >= 3_000_000
    assert by_name["test_small"]["peak_bytes"] < 1_000_000
    assert 50_000 <= by_name["test_keeps"]["leaked_bytes"] < 60_000
    assert all(t["outcome"] == "passed" for t in data["tests"])


def test_ini_keys(pytester: pytest.Pytester) -> None:
    """memwarden, memwarden_limit, memwarden_json and memwarden_top work from the ini file."""
    pytester.makeini(
        """
        [pytest]
        memwarden = true
        memwarden_limit = 1 MB
        memwarden_json = out.json
        memwarden_top = 2
        """
    )
    pytester.makepyfile(TESTS)
    result = pytester.runpytest_inprocess(*ARGS)
    result.assert_outcomes(passed=2, failed=1)
    table = result.stdout.str().split("highest peak memory")[1].split("short test summary")[0]
    assert table.count("::test_") == 2
    assert len(json.loads((pytester.path / "out.json").read_text())["tests"]) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--memwarden-limit=huge",), "*'huge' (--memwarden-limit): expected a size*"),
        (("-o", "memwarden_limit=12 parsecs"), "*(memwarden_limit (ini)): expected a size*"),
        (("-o", "memwarden_top=many"), "*memwarden_top='many' (ini): expected an integer*"),
    ],
)
def test_bad_option_values_are_usage_errors(
    pytester: pytest.Pytester, args: tuple[str, ...], message: str
) -> None:
    """An invalid size or count from the command line or ini stops the run with a usage error."""
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_inprocess(*ARGS, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_fixtures_leak_check_budget_and_monitor(pytester: pytest.Pytester) -> None:
    """leak_check fails a leaking callable; memory_budget and memory_monitor are usable."""
    pytester.makepyfile(
        """
        import pytest

        HOARD = []

        def test_leak_check_clean(leak_check):
            report = leak_check(lambda: [0] * 100, rounds=4, calls_per_round=50)
            assert not report.leaked

        def test_leak_check_leaky(leak_check):
            leak_check(lambda: HOARD.append([0] * 100), rounds=4, calls_per_round=50)

        def test_budget(memory_budget):
            from memwarden.exceptions import MemoryBudgetExceededError
            with pytest.raises(MemoryBudgetExceededError):
                with memory_budget("1 MB"):
                    data = bytearray(5_000_000)

        def test_monitor(memory_monitor):
            assert memory_monitor.running
        """
    )
    result = pytester.runpytest_inprocess(*ARGS, "-rf")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["LEAK: *keeps*per call*", "FAILED *::test_leak_check_leaky*"])


def test_stands_down_when_pytest_memray_is_active(pytester: pytest.Pytester) -> None:
    """With pytest-memray loaded, the header says so and memwarden leaves its markers to it."""
    pytest.importorskip("pytest_memray")
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.limit_leaks("1 MB")
        def test_x():
            pass
        """
    )
    args = [a for a in ARGS if a != "no:memray"]
    args.remove("-p")  # the "-p" that went with no:memray
    result = pytester.runpytest_inprocess(*args)
    result.stdout.fnmatch_lines(["memwarden: pytest-memray is active*-p no:memray*"])
    result.assert_outcomes(passed=1)


@pytest.mark.slow
def test_xdist_two_workers_collect_figures_on_controller(pytester: pytest.Pytester) -> None:
    """Under -n 2 the table and JSON on the controller have every worker's tests and failures."""
    pytest.importorskip("xdist")
    pytester.makepyfile(
        TESTS
        + """
@pytest.mark.limit_memory("1 MB")
def test_over():
    data = bytearray(2_000_000)
"""
    )
    out = pytester.path / "x.json"
    result = pytester.runpytest_subprocess(
        *QUIET_PLUGINS, "-n", "2", "--memwarden", f"--memwarden-json={out}", "-rf"
    )
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*highest peak memory*", "MEMORY *::test_over*"])
    tests = json.loads(out.read_text())["tests"]
    assert len(tests) == 4
    assert {t["outcome"] for t in tests} == {"passed", "failed"}
    assert [t["problem"] for t in tests if t["outcome"] == "failed"] == ["limit_memory"]
