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

__all__ = ["DemoResult", "VariantResult", "run_demo"]

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
            notes = [
                f"A {log_bytes / 1e6:.0f} MB synthetic access log ({lines:,} lines, seed {seed}) "
                "analysed twice: naively (whole-file read, every record kept, a deep clone, an "
                "unbounded cache) and the memwarden way (streaming, pooled buffers, a bounded "
                "cache, adaptive batches, track() spans). Both produce the same report.",
                "memwarden version components: "
                + "; ".join(f"{k}: {v}" for k, v in sorted(b.components.items())),
            ]
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
        return DemoResult(log_bytes, lines, variants, equal, written, work, generate_s)
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
