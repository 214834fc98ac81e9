"""Summarize a trace: peak and when, duration, mean, growth and leak suspicion, sites, operations.

The summary is plain data (``to_dict`` gives the ``--json`` form) that the
terminal and HTML renderers share, so both always say the same thing.
Growth is judged on the run after its warm-up (the first quarter: imports and
loading are not leaks) with robust rank statistics: Theil–Sen slope and the
Mann–Kendall trend test (``memwarden.leaks.suspect_leak``).
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from memwarden._units import format_size
from memwarden.leaks import suspect_leak
from memwarden.report.trace import Event, RouteRow, Sample, Site, SiteSnapshot, Span, Trace

__all__ = [
    "Growth",
    "OperationRow",
    "ProcessHeap",
    "StackRow",
    "Summary",
    "growth_verdict",
    "routes_of",
    "summarize",
]

#: Share of the run treated as warm-up and left out of the growth test.
WARMUP_FRACTION = 0.25
_MIN_GROWTH_POINTS = 10
_MIN_NOISE_FLOOR_BYTES = 4 * 2**20


@dataclass(frozen=True)
class Growth:
    """How memory grew after warm-up.

    Attributes:
        slope_bytes_per_s: Theil–Sen slope of RSS over time.
        total_bytes: the slope times the span judged.
        p_value: one-sided Mann–Kendall p-value of an upward trend.
        tau: Mann–Kendall S / pairs in [-1, 1].
        leak_suspected: memory grew steadily: significant upward trend and a
            total growth above the noise floor.
        window_s: ``(start, end)`` seconds of the part of the run judged.
        method: where the verdict came from.
        reason: the leak detector's one-sentence explanation, when it judged.
    """

    slope_bytes_per_s: float
    total_bytes: float
    p_value: float
    tau: float
    leak_suspected: bool
    window_s: tuple[float, float]
    noise_floor_bytes: float
    points: int
    method: str
    reason: str = ""


@dataclass(frozen=True)
class OperationRow:
    """Aggregate of every ``track()`` span of one name."""

    name: str
    count: int
    total_s: float
    mean_s: float
    max_rss_delta_bytes: int
    sum_rss_delta_bytes: int
    max_peak_rss_bytes: int
    max_heap_delta_bytes: int


@dataclass(frozen=True)
class StackRow:
    """One call stack of a sampling profile and the bytes it held.

    Attributes:
        size_bytes: estimated bytes.
        error_bytes: one standard error of the estimate.
        where: ``file:line`` of the innermost frame in the program's own code (past
            the standard library, site-packages and memwarden), else the innermost.
        frames: the stack as ``function (file:line)``, innermost first (at most 8).
    """

    size_bytes: int
    error_bytes: int
    where: str
    frames: tuple[str, ...]


@dataclass(frozen=True)
class ProcessHeap:
    """What one Python process of the run held at its sampled peak (or at exit).

    Attributes:
        pid: the process.
        ppid: its parent.
        command: its first command-line words.
        when: ``"peak"`` or ``"exit"`` (exit when no peak profile was written).
        t_s: when the profile was taken, seconds since the run started.
        total_bytes: the profile's estimated live heap.
        stacks: the largest stacks, largest first.
    """

    pid: int
    ppid: int
    command: str
    when: str
    t_s: float
    total_bytes: int
    stacks: tuple[StackRow, ...]


@dataclass(frozen=True)
class Summary:
    """Everything a report shows about one trace."""

    label: str
    command: list[str]
    path: str | None
    duration_s: float
    samples: int
    interval_s: float
    peak_rss_bytes: int
    peak_t_s: float | None
    mean_rss_bytes: int
    final_rss_bytes: int
    max_processes: int
    limit_bytes: int | None
    exit_code: int | None
    end_reason: str | None
    growth: Growth | None
    peak_sites: SiteSnapshot | None
    exit_sites: SiteSnapshot | None
    operations: list[OperationRow]
    events: list[Event]
    problems: list[str] = field(default_factory=list)
    #: The sampling profile of each Python process, largest first.
    processes: list[ProcessHeap] = field(default_factory=list)
    #: Server routes (WSGI/ASGI middleware), summed over processes, most growth first.
    routes: list[RouteRow] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form (``memwarden report --json``).

        Every float is finite (a NaN or infinity, which JSON cannot carry, becomes
        ``None``), so ``json.dumps(..., allow_nan=False)`` always succeeds.
        """
        out = asdict(self)
        if self.growth is not None:
            out["growth"]["window_s"] = list(self.growth.window_s)
        return _finite(out)  # type: ignore[no-any-return]


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _time_weighted_mean(samples: Sequence[Sample]) -> float:
    if not samples:
        return 0.0
    if len(samples) == 1:
        return float(samples[0].rss_bytes)
    area = 0.0
    for a, b in itertools.pairwise(samples):
        area += (b.t_s - a.t_s) * (a.rss_bytes + b.rss_bytes) / 2
    span = samples[-1].t_s - samples[0].t_s
    return area / span if span > 0 else float(statistics.fmean(s.rss_bytes for s in samples))


def growth_of(
    samples: Sequence[Sample], *, warmup_fraction: float = WARMUP_FRACTION
) -> Growth | None:
    """Judge the growth of RSS over the run after warm-up; None when too short to say.

    The noise floor is 5% of the median RSS or 4 MiB, whichever is larger: a
    sawtooth of buffers or an allocator keeping freed pages is not a leak.
    """
    if len(samples) < _MIN_GROWTH_POINTS:
        return None
    t_first, t_last = samples[0].t_s, samples[-1].t_s
    cut = t_first + (t_last - t_first) * warmup_fraction
    window = [s for s in samples if s.t_s >= cut]
    if len(window) < _MIN_GROWTH_POINTS:
        return None
    ys = [float(s.rss_bytes) for s in window]
    xs = [s.t_s for s in window]
    floor = max(_MIN_NOISE_FLOOR_BYTES, 0.05 * statistics.median(ys))
    window_s = (round(xs[0], 3), round(xs[-1], 3))
    judged = suspect_leak(xs, ys, noise_floor_bytes=floor)
    return Growth(
        slope_bytes_per_s=judged.slope_bytes_per_s,
        total_bytes=judged.total_growth_bytes,
        p_value=judged.p_value,
        tau=judged.tau,
        leak_suspected=judged.suspected,
        window_s=window_s,
        noise_floor_bytes=floor,
        points=judged.points,
        method="memwarden.leaks.suspect_leak",
        reason=judged.reason,
    )


def operations_of(spans: Sequence[Span]) -> list[OperationRow]:
    """Aggregate spans by name, the most expensive (total time) first."""
    by_name: dict[str, list[Span]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    rows = []
    for name, group in by_name.items():
        total = sum(s.duration_s for s in group)
        rows.append(
            OperationRow(
                name=name,
                count=len(group),
                total_s=total,
                mean_s=total / len(group),
                max_rss_delta_bytes=max(s.rss_delta_bytes for s in group),
                sum_rss_delta_bytes=sum(s.rss_delta_bytes for s in group),
                max_peak_rss_bytes=max(s.peak_rss_bytes for s in group),
                max_heap_delta_bytes=max(s.python_heap_delta_bytes for s in group),
            )
        )
    rows.sort(key=lambda r: (-r.total_s, r.name))
    return rows


def _pick_sites(trace: Trace) -> tuple[SiteSnapshot | None, SiteSnapshot | None]:
    peaks = [s for s in trace.sites if s.when == "peak"]
    exits = [s for s in trace.sites if s.when == "exit"]
    peak = max(peaks, key=lambda s: s.traced_bytes, default=None)
    exit_ = exits[-1] if exits else None
    return peak, exit_


def _stack_rows(profile: Any, n: int) -> tuple[StackRow, ...]:
    from memwarden import tracing

    rows = []
    for entry in profile.top(by="stack", n=n, frame_filter=None):
        frames = entry.frames
        i = tracing.user_frame([f.filename for f in frames])
        key = frames[0 if i is None else i] if frames else None
        where = f"{key.filename}:{key.lineno}" if key is not None else "?"
        text = tuple(f"{f.function} ({f.filename}:{f.lineno})" for f in frames[:8])
        rows.append(StackRow(entry.size_bytes, entry.error_bytes, where, text))
    return tuple(rows)


def processes_of(trace: Trace, *, stacks: int = 5) -> tuple[list[ProcessHeap], list[str]]:
    """Each profiled process's heap at its peak (its exit profile when no peak was written).

    Returns:
        The processes, largest heap first, and notes about unreadable profiles.
    """
    from memwarden.exceptions import TraceFormatError

    problems: list[str] = []
    out: list[ProcessHeap] = []
    pids = sorted({pid for pid, _ in trace.profiles})
    for pid in pids:
        rec = trace.profiles.get((pid, "peak")) or trace.profiles.get((pid, "exit"))
        if rec is None:
            continue
        try:
            profile = rec.profile()
        except TraceFormatError as exc:
            problems.append(str(exc))
            continue
        if profile.total_bytes <= 0:
            continue
        out.append(
            ProcessHeap(
                pid=pid,
                ppid=rec.ppid,
                command=" ".join(rec.argv)[:120],
                when=rec.when,
                t_s=rec.t_s,
                total_bytes=profile.total_bytes,
                stacks=_stack_rows(profile, stacks),
            )
        )
    out.sort(key=lambda p: (-p.total_bytes, p.pid))
    return out, problems


def growth_verdict(summary: Summary) -> tuple[str, str]:
    """The growth line of a report and its kind: ``leak``, ``grows`` or ``ok``.

    "LEAK SUSPECTED" only where :func:`memwarden.leaks.suspect_leak`'s criteria
    hold (steady growth after warm-up, the floor rising too) in a program that
    did not end by itself; a program that grew until it exited on its own is
    said to grow (it builds its data and exits); growth within the noise floor
    is said to be below it.
    """
    g = summary.growth
    if g is None:
        return "too few samples to judge growth", "ok"
    rate = f"{format_size(round(g.slope_bytes_per_s))}/s"
    span = f"{g.window_s[0]:.1f}–{g.window_s[1]:.1f} s"
    if g.leak_suspected and summary.end_reason != "exited":
        return (
            f"LEAK SUSPECTED: memory grows steadily ({rate}, "
            f"{format_size(round(g.total_bytes))} over {span}, and did not stop)",
            "leak",
        )
    if g.leak_suspected:
        return (
            f"grows: {format_size(round(g.total_bytes))} over {span} ({rate}) until the program "
            "exited (it builds its data and exits; a leak needs a longer run to tell)",
            "grows",
        )
    if g.total_bytes <= g.noise_floor_bytes:
        return (
            f"no steady growth: below the noise floor ({format_size(round(g.noise_floor_bytes))})",
            "ok",
        )
    return f"no steady growth: {g.reason}", "ok"


def summarize(trace: Trace) -> Summary:
    """Return the :class:`Summary` of ``trace``."""
    samples = trace.samples
    peak_sample = max(samples, key=lambda s: s.rss_bytes, default=None)
    end = trace.end
    peak_sites, exit_sites = _pick_sites(trace)
    processes, profile_problems = processes_of(trace)
    interval = trace.header.get("interval_s", 0.0)
    return Summary(
        label=trace.label,
        command=trace.command,
        path=trace.path,
        duration_s=max(0.0, trace.duration_s),
        samples=trace.sample_count or len(samples),
        interval_s=(
            float(interval)
            if isinstance(interval, int | float)
            and not isinstance(interval, bool)
            and math.isfinite(interval)
            and 0 <= interval <= 3600
            else 0.0
        ),
        peak_rss_bytes=trace.peak_rss_bytes,
        peak_t_s=peak_sample.t_s if peak_sample is not None else None,
        mean_rss_bytes=round(_time_weighted_mean(samples)),
        final_rss_bytes=samples[-1].rss_bytes if samples else 0,
        max_processes=max((s.processes for s in samples), default=0),
        limit_bytes=trace.limit_bytes,
        exit_code=end.exit_code if end else None,
        end_reason=end.reason if end else None,
        growth=growth_of(samples),
        peak_sites=peak_sites,
        exit_sites=exit_sites,
        operations=operations_of(trace.spans),
        events=list(trace.events),
        problems=[*trace.problems, *profile_problems],
        processes=processes,
        routes=routes_of(trace),
    )


def routes_of(trace: Trace, *, n: int = 20) -> list[RouteRow]:
    """The routes whose requests grew RSS most, summed over the server's processes."""
    acc: dict[str, list[int]] = {}
    for rows in trace.routes.values():
        for r in rows:
            a = acc.setdefault(r.route, [0, 0, 0, 0])
            a[0] += r.requests
            a[1] += r.rss_delta_sum_bytes
            a[2] += r.under_pressure
            a[3] += r.allocated_bytes
    out = [RouteRow(route, *figures) for route, figures in acc.items()]
    out.sort(key=lambda r: (-r.rss_delta_sum_bytes, -r.allocated_bytes, r.route))
    return out[:n]


def site_label(site: Site) -> str:
    """``file:line`` of a site."""
    return f"{site.file}:{site.line}"
