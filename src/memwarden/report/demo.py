"""``memwarden demo``: profile a naive and a memwarden log analysis side by side.

Generates a deterministic synthetic access log, runs both variants of
:mod:`memwarden.report._demo_workload` as children under the run engine (in
parallel by default: each is sampled on its own, so their peaks do not mix),
checks that their results are equal, and writes one HTML report comparing the
two timelines.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memwarden.report.runner import RunResult, bootstrap_command, bootstrap_env, run_program

__all__ = [
    "DemoResult",
    "ServiceDemo",
    "VariantResult",
    "hard_limit",
    "run_demo",
    "run_service_demo",
]

_WORKLOAD = "memwarden.report._demo_workload"
VARIANTS = ("naive", "memwarden")


@dataclass(frozen=True)
class VariantResult:
    """One variant's run: the engine's outcome and the analysis it produced."""

    name: str
    run: RunResult
    result: dict[str, Any] | None
    components: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """The child exited 0 and wrote its result."""
        return self.run.exit_code == 0 and self.result is not None


@dataclass(frozen=True)
class DemoResult:
    """The whole demo: both variants, whether their results agree, where the report is."""

    log_bytes: int
    log_lines: int
    variants: dict[str, VariantResult]
    results_equal: bool
    html_path: Path | None
    workdir: Path
    generate_s: float
    service: ServiceDemo | None = None


def _run_variant(
    name: str,
    log_path: Path,
    workdir: Path,
    interval_s: float,
    pids: dict[str, int],
) -> VariantResult:
    out = workdir / f"{name}.json"
    trace = workdir / f"{name}.trace.jsonl"
    argv = [sys.executable, "-m", _WORKLOAD, name, str(log_path), str(out)]
    t0 = (time.monotonic(), time.time())
    env = dict(os.environ)
    if name == "memwarden":
        # The bootstrap records the track() spans of each batch (no tracemalloc: it
        # would distort the very peak being compared).
        argv = bootstrap_command(argv)
        env = bootstrap_env(
            env,
            trace_path=trace,
            t0_monotonic=t0[0],
            t0_wall=t0[1],
            heap=False,
            spans=True,
            top=10,
            interval_s=interval_s,
        )
    run = run_program(
        argv,
        trace_path=trace,
        interval_s=interval_s,
        env=env,
        header={"label": f"{name} version", "command": argv[-4:]},
        t0=t0,
        foreground=False,
        on_start=lambda pid: pids.__setitem__(name, pid),
    )
    result: dict[str, Any] | None = None
    components: dict[str, str] = {}
    if run.exit_code == 0 and out.exists():
        result = json.loads(out.read_text())
        components = result.pop("components", {})
    return VariantResult(name, run, result, components)


def run_demo(
    *,
    size_bytes: int = 100 * 10**6,
    seed: int = 1,
    html_path: Path | None = Path("memwarden-demo.html"),
    workdir: Path | None = None,
    keep: bool = False,
    parallel: bool = True,
    interval_s: float = 0.1,
    progress: Any = None,
    service: bool = True,
) -> DemoResult:
    """Run the demo and return what happened.

    Args:
        size_bytes: size of the synthetic log.
        seed: its random seed (the same seed gives the same file and results).
        html_path: where to write the HTML report (None: no report).
        workdir: where the log, traces and results go (default: a temporary
            directory, removed afterwards unless ``keep``).
        keep: keep ``workdir``.
        parallel: run both variants at once (one per core) rather than one after the other.
        interval_s: sampling interval.
        progress: called with a one-line message at each step (the CLI prints it).
        service: also run part two, the service under a hard limit, ungoverned and
            governed (:func:`run_service_demo`).
    """
    from memwarden.report._demo_workload import generate_log

    def say(message: str) -> None:
        if progress is not None:
            progress(message)

    made_tmp = workdir is None
    work = Path(tempfile.mkdtemp(prefix="memwarden-demo-")) if workdir is None else workdir
    work.mkdir(parents=True, exist_ok=True)
    pids: dict[str, int] = {}
    try:
        log_path = work / "access.log"
        say(f"generating a {size_bytes / 1e6:.0f} MB access log (seed {seed})…")
        g0 = time.perf_counter()
        lines = generate_log(log_path, size_bytes, seed=seed)
        generate_s = time.perf_counter() - g0
        log_bytes = log_path.stat().st_size
        say(
            f"running the naive and the memwarden version under `memwarden run` "
            f"({'in parallel' if parallel else 'one after the other'})…"
        )
        variants: dict[str, VariantResult] = {}
        try:
            if parallel:
                with ThreadPoolExecutor(max_workers=2, thread_name_prefix="memwarden-demo") as ex:
                    futures = {
                        n: ex.submit(_run_variant, n, log_path, work, interval_s, pids)
                        for n in VARIANTS
                    }
                    for n, fut in futures.items():
                        variants[n] = _wait(fut)
            else:
                for n in VARIANTS:
                    variants[n] = _run_variant(n, log_path, work, interval_s, pids)
        except BaseException:
            for pid in pids.values():  # Ctrl-C or a failure: take the children down too
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)
            raise
        a, b = variants["naive"], variants["memwarden"]
        equal = a.ok and b.ok and a.result == b.result
        svc: ServiceDemo | None = None
        if service:
            say("running a caching service under one hard limit, ungoverned then governed…")
            svc = run_service_demo(work)
        written: Path | None = None
        if html_path is not None:
            from memwarden.report.html import render_html
            from memwarden.report.trace import read_trace

            traces = [read_trace(v.run.trace_path) for v in variants.values()]
            extra = {
                f"{v.name} version": {
                    "result": "equal" if equal else ("differs" if v.ok else "failed"),
                    "exit code": str(v.run.exit_code),
                }
                for v in variants.values()
            }
            if svc is not None:
                for mode, (run, _res) in svc.runs.items():
                    traces.append(read_trace(run.trace_path))
                    extra[f"service, {mode}"] = {
                        "result": svc.outcome(mode),
                        "exit code": str(run.exit_code),
                    }
            notes = [
                f"A {log_bytes / 1e6:.0f} MB synthetic access log ({lines:,} lines, seed {seed}) "
                "analysed twice: naively (whole-file read, every record kept, a deep clone, an "
                "unbounded cache) and the memwarden way (streaming, pooled buffers, a bounded "
                "cache, adaptive batches, track() spans). Both produce the same report.",
                "memwarden version components: "
                + "; ".join(f"{k}: {v}" for k, v in sorted(b.components.items())),
            ]
            if svc is not None:
                notes.append(
                    f"Part two: a service that caches every response, under {svc.how}, run "
                    f"ungoverned ({svc.outcome('ungoverned')}) and governed by memwarden "
                    f"({svc.outcome('governed')}); green lines on the timeline are the "
                    "governor's relief runs."
                )
            from memwarden._files import write_output

            write_output(
                html_path,
                render_html(
                    traces,
                    title="memwarden demo: naive vs memwarden",
                    notes=notes,
                    extra_columns=extra,
                ),
            )
            written = html_path
        return DemoResult(log_bytes, lines, variants, equal, written, work, generate_s, svc)
    finally:
        if made_tmp and not keep:
            shutil.rmtree(work, ignore_errors=True)


def _wait(fut: Any) -> VariantResult:
    # Poll so Ctrl-C reaches the main thread while the children run.
    while True:
        try:
            result: VariantResult = fut.result(timeout=0.2)
        except TimeoutError:
            continue
        return result


# ---------------------------------------------------------------------------
# part two: the same service under one hard limit, ungoverned and governed

_SERVICE = "memwarden.report._demo_service"
SERVICE_MODES = ("ungoverned", "governed")


@dataclass(frozen=True)
class ServiceDemo:
    """Both service runs under the same hard limit.

    Attributes:
        limit_bytes: the hard limit.
        how: how it was imposed (a memory cgroup as root, else RLIMIT_DATA).
        runs: per mode, the run engine's outcome and the child's result (None if it died).
    """

    limit_bytes: int
    how: str
    runs: dict[str, tuple[RunResult, dict[str, Any] | None]]

    def outcome(self, mode: str) -> str:
        """``finished``, ``OOM-killed``, ``MemoryError`` or ``exit N``, in words."""
        run, result = self.runs[mode]
        if result is not None and run.exit_code == 0:
            return "finished"
        if run.signal == signal.SIGKILL:
            return "OOM-killed (SIGKILL)"
        return f"failed (exit {run.exit_code})"


@contextlib.contextmanager
def hard_limit(limit_bytes: int) -> Any:
    """A new memory cgroup with ``limit_bytes`` below ours (root), else None for RLIMIT_DATA.

    Yields:
        ``(cgroup directory or None, description)``.
    """
    import uuid

    from memwarden.probes import cgroup_info

    info = cgroup_info()
    path: Path | None = None
    if os.geteuid() == 0 and info is not None and os.access(info.directory, os.W_OK):
        path = info.directory / f"memwarden-demo-{uuid.uuid4().hex[:8]}"
        try:
            path.mkdir(mode=0o755)
            limit_file = "memory.limit_in_bytes" if info.version == 1 else "memory.max"
            (path / limit_file).write_text(str(limit_bytes))
        except OSError:
            with contextlib.suppress(OSError):
                path.rmdir()
            path = None
    how = (
        f"a {limit_bytes >> 20} MiB memory cgroup"
        if path is not None
        else f"RLIMIT_DATA of {limit_bytes >> 20} MiB (run as root for a real cgroup)"
    )
    try:
        yield path, how
    finally:
        if path is not None:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    path.rmdir()
                    break
                except OSError:
                    time.sleep(0.05)


def run_service_demo(
    work: Path, *, limit_bytes: int | None = None, interval_s: float = 0.05
) -> ServiceDemo:
    """Run the demo service ungoverned, then governed, each under the same hard limit."""
    from memwarden.report._demo_service import LIMIT_BYTES

    limit = limit_bytes or LIMIT_BYTES
    runs: dict[str, tuple[RunResult, dict[str, Any] | None]] = {}
    with hard_limit(limit) as (cgroup, how):
        for mode in SERVICE_MODES:
            out = work / f"service-{mode}.json"
            trace = work / f"service-{mode}.trace.jsonl"
            t0 = (time.monotonic(), time.time())
            env = dict(os.environ)
            env.pop("MEMWARDEN_MAX_MEMORY", None)  # the governed child finds the limit itself
            env["MEMWARDEN_TRACE_FILE"] = str(trace)
            env["MEMWARDEN_TRACE_T0"] = repr(t0[0])
            if cgroup is not None:
                env["MEMWARDEN_DEMO_CGROUP"] = str(cgroup)
            else:
                env["MEMWARDEN_DEMO_RLIMIT"] = str(limit)
            run = run_program(
                [sys.executable, "-m", _SERVICE, mode, str(out)],
                trace_path=trace,
                interval_s=interval_s,
                env=env,
                header={"label": f"service, {mode}", "command": [_SERVICE, mode]},
                t0=t0,
                foreground=False,
            )
            result = json.loads(out.read_text()) if out.exists() else None
            runs[mode] = (run, result)
    return ServiceDemo(limit, how, runs)
