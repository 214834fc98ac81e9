"""memwarden's pytest plugin: memory-limit and leak markers; inert unless a marker or flag asks.

Markers: ``limit_memory(limit)`` and ``limit_leaks(location_limit, filter_fn=None)``
(pytest-memray's signatures, measured with tracemalloc) and ``no_leaks(rounds=…)``
(reruns the test body under ``memwarden.leaks.check_leaks``). Options:
``--memwarden`` (table of the highest peaks), ``--memwarden-limit=SIZE`` (a default
``limit_memory`` for every test), ``--memwarden-json=PATH`` (per-test figures);
ini keys ``memwarden``, ``memwarden_limit``, ``memwarden_json``, ``memwarden_top``.
Fixtures: ``memory_monitor``, ``memory_budget`` (factory), ``leak_check``.
Works under pytest-xdist: figures travel on the test reports to the controller.
"""

from __future__ import annotations

import inspect
import json
import time
import warnings
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from memwarden._units import format_size, parse_size
from memwarden.exceptions import ConfigurationError
from memwarden.pytest_plugin._marks import (
    MARKERS,
    Measurement,
    MemoryProblem,
    limit_leaks_problem,
    limit_memory_problem,
    release_peak_sampler,
    validate,
)

__all__ = ["MemwardenPlugin"]

_PROBLEM = pytest.StashKey[MemoryProblem]()
_FIGURES = pytest.StashKey[dict[str, Any]]()
_REPORT_ATTR = "memwarden"  # attribute on TestReport; xdist serialises it to the controller


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("memwarden", "memwarden memory limits and leak checks")
    group.addoption(
        "--memwarden",
        action="store_true",
        default=None,
        help="measure every test's peak memory and print the highest at the end",
    )
    group.addoption(
        "--memwarden-limit",
        metavar="SIZE",
        default=None,
        help="apply limit_memory(SIZE) to every test without its own limit_memory marker",
    )
    group.addoption(
        "--memwarden-json",
        metavar="PATH",
        default=None,
        help="write per-test memory figures (peak, leaked, limit, outcome) to PATH as JSON",
    )
    group.addoption(
        "--memwarden-top",
        metavar="N",
        type=int,
        default=None,
        help="rows in the --memwarden table (default 10)",
    )
    parser.addini("memwarden", "like --memwarden", type="bool", default=False)
    parser.addini("memwarden_limit", "like --memwarden-limit", default="")
    parser.addini("memwarden_json", "like --memwarden-json", default="")
    parser.addini("memwarden_top", "like --memwarden-top", default="10")


def _marker_help(name: str) -> str:
    doc = inspect.getdoc(MARKERS[name]) or name
    return " ".join(doc.split())


def pytest_configure(config: pytest.Config) -> None:
    for name in MARKERS:
        config.addinivalue_line("markers", _marker_help(name))
    config.pluginmanager.register(MemwardenPlugin(config), "memwarden-plugin")


class MemwardenPlugin:
    """Per-session state: the options, and (on the controller) the collected figures."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        opt = config.getoption
        self.table = bool(opt("memwarden") or config.getini("memwarden"))
        limit_text = opt("memwarden_limit") or config.getini("memwarden_limit") or ""
        source = "--memwarden-limit" if opt("memwarden_limit") else "memwarden_limit (ini)"
        try:
            self.default_limit = (
                parse_size(limit_text, source=source) if str(limit_text).strip() else None
            )
        except ConfigurationError as exc:
            raise pytest.UsageError(str(exc)) from exc
        json_path = opt("memwarden_json") or config.getini("memwarden_json") or ""
        self.json_path = Path(json_path) if json_path else None
        top = opt("memwarden_top")
        try:
            self.top = int(top if top is not None else config.getini("memwarden_top"))
        except ValueError as exc:
            raise pytest.UsageError(
                f"memwarden_top={config.getini('memwarden_top')!r} (ini): expected an integer"
            ) from exc
        self.measure_all = (
            self.table or self.json_path is not None or self.default_limit is not None
        )
        self.results: list[dict[str, Any]] = []
        self.started = time.perf_counter()

    # -- collection: bad marker arguments are usage errors before anything runs

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            for name in MARKERS:
                for mark in item.iter_markers(name):
                    try:
                        validate(name, mark.args, dict(mark.kwargs))
                    except ConfigurationError as exc:
                        raise pytest.UsageError(f"{item.nodeid}: {exc}") from exc

    # -- running

    def _memray_active(self) -> bool:
        return self.config.pluginmanager.has_plugin("memray_manager")

    def pytest_report_header(self) -> str | None:
        if self._memray_active():
            return (
                "memwarden: pytest-memray is active and handles limit_memory/limit_leaks "
                "(pass -p no:memray to use memwarden's)"
            )
        return None

    def _settings(self, item: pytest.Item) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for name in MARKERS:
            mark = item.get_closest_marker(name)
            if mark is not None:
                found[name] = validate(name, mark.args, dict(mark.kwargs))
        return found

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, object, object]:
        # Outermost wrapper of the call phase: capture and logging plugins run inside
        # it, so their buffers are read and released before we look at what is alive.
        settings = self._settings(item)
        if self._memray_active():
            # pytest-memray acts on the same two markers; two plugins judging one
            # test would double-report, so memwarden stands down for them.
            settings.pop("limit_memory", None)
            settings.pop("limit_leaks", None)
        wants_memory = "limit_memory" in settings or "limit_leaks" in settings
        if not (wants_memory or self.measure_all):
            return (yield)  # inert: no marker, no flag
        limit = settings.get("limit_memory", {}).get("limit_bytes", self.default_limit)
        leak_settings = settings.get("limit_leaks", {})
        m = Measurement(
            want_leaks="limit_leaks" in settings,
            limit_bytes=limit,
            leak_limit_bytes=leak_settings.get("limit_bytes"),
            filter_fn=leak_settings.get("filter_fn"),
            test_file=str(item.path) if limit is not None else None,
        )
        m.start()
        t0 = time.perf_counter()
        try:
            return (yield)
        finally:
            m.stop()
            self._judge(item, settings, m, time.perf_counter() - t0)

    def _judge(
        self,
        item: pytest.Item,
        settings: dict[str, dict[str, Any]],
        m: Measurement,
        duration_s: float,
    ) -> None:
        figures: dict[str, Any] = item.stash.get(_FIGURES, {})
        figures.update(peak_bytes=m.peak_bytes, duration_s=duration_s)
        problem: MemoryProblem | None = None
        limit_source = "limit_memory marker"
        limit = settings.get("limit_memory", {}).get("limit_bytes")
        limit_text = settings.get("limit_memory", {}).get("limit_text")
        if limit is None and self.default_limit is not None:
            limit, limit_source = self.default_limit, "--memwarden-limit"
        if limit is not None:
            figures["limit_bytes"] = limit
            problem = limit_memory_problem(m, limit, limit_source, limit_text)
        if "limit_leaks" in settings:
            s = settings["limit_leaks"]
            leak_problem, leaked = limit_leaks_problem(m, s["limit_bytes"], s["filter_fn"])
            figures.update(leaked_bytes=leaked, leak_limit_bytes=s["limit_bytes"])
            problem = problem or leak_problem
        item.stash[_FIGURES] = figures
        if problem is not None:
            item.stash[_PROBLEM] = problem

    @pytest.hookimpl(tryfirst=True)
    def pytest_pyfunc_call(self, pyfuncitem: pytest.Function) -> bool | None:
        mark = pyfuncitem.get_closest_marker("no_leaks")
        if mark is None:
            return None
        fn = pyfuncitem.obj
        if inspect.iscoroutinefunction(fn):
            # The async plugin owns the event loop and async fixtures: rerunning the
            # body in a loop of ours could break them. Say so rather than pass silently.
            warnings.warn(
                pytest.PytestWarning(
                    f"{pyfuncitem.nodeid}: no_leaks does not rerun async tests; call "
                    "memwarden.leaks.check_leaks_async in the test instead"
                ),
                stacklevel=1,
            )
            return None
        options = validate("no_leaks", mark.args, dict(mark.kwargs))
        argnames = pyfuncitem._fixtureinfo.argnames
        kwargs = {name: pyfuncitem.funcargs[name] for name in argnames}

        from memwarden.leaks import check_leaks

        # A closure rather than **kwargs: a fixture named like a check_leaks option
        # (``rounds``) must reach the test, not the detector.
        def body() -> None:
            fn(**kwargs)

        body.__qualname__, body.__module__ = fn.__qualname__, fn.__module__
        report = check_leaks(
            body,
            rounds=options["rounds"],
            calls_per_round=options["calls_per_round"],
            warmup=options["warmup"],
        )
        figures = pyfuncitem.stash.get(_FIGURES, {})
        figures.update(
            leaked=report.leaked,
            growth_per_call_bytes=report.growth_per_call_bytes,
            leak_kind=report.kind,
        )
        pyfuncitem.stash[_FIGURES] = figures
        if report.leaked:
            pyfuncitem.stash[_PROBLEM] = MemoryProblem("memory leak", report.summary(), "no_leaks")
        return True

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if report.when != "call":
            return report
        figures = item.stash.get(_FIGURES, None)
        if figures is not None:
            setattr(report, _REPORT_ATTR, dict(figures, nodeid=report.nodeid))
        problem = item.stash.get(_PROBLEM, None)
        if problem is not None and report.outcome == "passed":
            report.outcome = "failed"
            report.longrepr = problem.text
            data = getattr(report, _REPORT_ATTR, None) or {"nodeid": report.nodeid}
            data["problem"] = problem.kind
            setattr(report, _REPORT_ATTR, data)
        return report

    @pytest.hookimpl(tryfirst=True)
    def pytest_report_teststatus(
        self, report: pytest.TestReport
    ) -> tuple[str, str, tuple[str, dict[str, bool]]] | None:
        data = getattr(report, _REPORT_ATTR, None)
        if (
            report.when == "call"
            and report.failed
            and isinstance(data, dict)
            and data.get("problem")
        ):
            return "failed", "M", ("MEMORY", {"red": True})
        return None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        data = getattr(report, _REPORT_ATTR, None)
        if report.when == "call" and isinstance(data, dict) and len(self.results) < 1_000_000:
            self.results.append(dict(data, outcome=report.outcome))

    # -- end of session (controller only under xdist)

    def _is_worker(self) -> bool:
        return hasattr(self.config, "workerinput")

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self._is_worker() or not self.table:
            return
        rows = sorted(
            (r for r in self.results if "peak_bytes" in r),
            key=lambda r: r["peak_bytes"],
            reverse=True,
        )[: max(0, self.top)]
        tr = terminalreporter
        tr.write_sep("=", "memwarden: highest peak memory per test")
        if not rows:
            tr.write_line("no tests were measured")
            return
        width = max(len(r["nodeid"]) for r in rows)
        tr.write_line(f"{'test':<{width}}  {'peak':>10}  {'leaked':>10}  {'limit':>10}")
        for r in rows:
            leaked = format_size(r["leaked_bytes"]) if "leaked_bytes" in r else "-"
            limit = format_size(r["limit_bytes"]) if "limit_bytes" in r else "-"
            tr.write_line(
                f"{r['nodeid']:<{width}}  {format_size(r['peak_bytes']):>10}  "
                f"{leaked:>10}  {limit:>10}"
            )

    def pytest_sessionfinish(self) -> None:
        release_peak_sampler()
        if self._is_worker() or self.json_path is None:
            return
        data = {
            "version": 1,
            "tool": "memwarden",
            "duration_s": time.perf_counter() - self.started,
            "tests": sorted(self.results, key=lambda r: r["nodeid"]),
        }
        self.json_path.parent.mkdir(parents=True, exist_ok=True)
        from memwarden._files import write_output

        write_output(self.json_path, json.dumps(data, indent=2, sort_keys=True) + "\n")


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture
def memory_monitor() -> Iterator[Any]:
    """A started ``memwarden.monitoring.MemoryMonitor`` for this test, stopped afterwards."""
    from memwarden.monitoring import MemoryMonitor

    monitor = MemoryMonitor()
    monitor.start()
    try:
        yield monitor
    finally:
        monitor.close()


@pytest.fixture
def memory_budget() -> Callable[..., Any]:
    """The ``memwarden.budget.memory_budget`` factory: ``with memory_budget("50 MiB"): ...``."""
    from memwarden.budget import memory_budget as factory

    return factory


@pytest.fixture
def leak_check() -> Callable[..., Any]:
    """``leak_check(fn, *args, **kwargs)``: run ``check_leaks`` and fail the test if it leaks.

    Returns the ``LeakReport`` when there is no leak.
    """
    from memwarden.testing import assert_no_leaks

    def run(fn: Callable[..., object], *args: Any, **kwargs: Any) -> Any:
        try:
            return assert_no_leaks(fn, *args, **kwargs)
        except AssertionError as exc:
            pytest.fail(str(exc), pytrace=False)

    return run
