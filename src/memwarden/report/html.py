"""Render one or more traces as a single-file HTML report that works offline.

The timeline is drawn by matplotlib (Agg, no pyplot state) and embedded as
inline SVG: RSS of each run, the ``--limit`` with warning/critical threshold
lines, the peak, limit events, and ``track()`` operation spans on a lane chart
below. Tables list the top allocation sites and operations. The page loads
nothing from the network and runs no script. Every string that comes from the
profiled program (command, paths, code, operation names, labels) is escaped:
HTML-escaped in the page, and drawn as glyph outlines (never markup or
mathtext) in the chart.
"""

from __future__ import annotations

import datetime as _dt
import html
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass

from memwarden._units import format_size
from memwarden.report.summary import Summary, site_label, summarize
from memwarden.report.trace import Sample, SiteSnapshot, Trace

__all__ = ["ReportRun", "render_chart_svg", "render_html", "write_html"]

_MAX_CHART_POINTS = 4000
_SVG_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_MAX_LANES = 10
_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
#: Threshold lines drawn under a limit, as fractions of it (the monitor's defaults).
THRESHOLDS = (("warning", 0.8), ("critical", 0.9))


@dataclass(frozen=True)
class ReportRun:
    """A trace and its summary, as rendered."""

    trace: Trace
    summary: Summary


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _chart_text(value: str, limit: int = 60) -> str:
    # Matplotlib parses $...$ as mathtext; program-supplied text must stay literal.
    text = value if len(value) <= limit else value[: limit - 1] + "…"
    return text.replace("$", r"\$")


def _downsample(samples: Sequence[Sample], max_points: int) -> tuple[list[float], list[float]]:
    """Min/max per bucket so spikes and the peak survive thinning."""
    if len(samples) <= max_points:
        return [s.t_s for s in samples], [s.rss_bytes / 2**20 for s in samples]
    buckets = max_points // 2
    step = len(samples) / buckets
    xs: list[float] = []
    ys: list[float] = []
    for b in range(buckets):
        chunk = samples[int(b * step) : max(int((b + 1) * step), int(b * step) + 1)]
        lo = min(chunk, key=lambda s: s.rss_bytes)
        hi = max(chunk, key=lambda s: s.rss_bytes)
        for s in sorted((lo, hi), key=lambda s: s.t_s):
            xs.append(s.t_s)
            ys.append(s.rss_bytes / 2**20)
    return xs, ys


def render_chart_svg(runs: Sequence[ReportRun], *, width_in: float = 11.0) -> str:
    """Return the timeline chart of ``runs`` as an SVG document fragment (no XML prolog)."""
    import matplotlib
    from matplotlib.figure import Figure

    spans_run = runs[0] if len(runs) == 1 and runs[0].trace.spans else None
    lanes: list[str] = []
    if spans_run is not None:
        lanes = [row.name for row in spans_run.summary.operations[:_MAX_LANES]]
    with matplotlib.rc_context(
        {"svg.fonttype": "path", "svg.hashsalt": "memwarden", "font.size": 9}
    ):
        fig = Figure(figsize=(width_in, 4.6 + (0.28 * len(lanes) + 0.6 if lanes else 0)))
        if lanes:
            gs = fig.add_gridspec(2, 1, height_ratios=[4.6, 0.28 * len(lanes) + 0.6], hspace=0.08)
            ax = fig.add_subplot(gs[0])
            lane_ax = fig.add_subplot(gs[1], sharex=ax)
        else:
            ax = fig.add_subplot()
            lane_ax = None
        top = 0.0
        for i, run in enumerate(runs):
            colour = _COLOURS[i % len(_COLOURS)]
            xs, ys = _downsample(run.trace.samples, _MAX_CHART_POINTS)
            label = _chart_text(run.summary.label)
            ax.plot(xs, ys, color=colour, linewidth=1.4, label=label, drawstyle="steps-post")
            if ys:
                ax.fill_between(xs, ys, step="post", color=colour, alpha=0.08)
                top = max(top, *ys)
            if run.summary.peak_t_s is not None and ys:
                peak_mib = max(ys)
                ax.plot([run.summary.peak_t_s], [peak_mib], marker="v", color=colour, markersize=7)
                ax.annotate(
                    _chart_text(f"peak {format_size(run.summary.peak_rss_bytes)}"),
                    (run.summary.peak_t_s, peak_mib),
                    textcoords="offset points",
                    xytext=(4, 6),
                    color=colour,
                    fontsize=8,
                )
            for event in run.trace.events:
                if event.kind == "limit":
                    ax.axvline(event.t_s, color="#b00", linestyle=":", linewidth=1)
                elif event.kind == "relief":
                    ax.axvline(event.t_s, color="#2a2", linestyle="-", linewidth=0.6, alpha=0.5)
                elif event.kind == "heap-snapshot" and len(runs) == 1:
                    # tracemalloc snapshots cost the child time and memory: show where.
                    ax.axvline(event.t_s, color="#999", linestyle=":", linewidth=0.8)
        limit = next((r.trace.limit_bytes for r in runs if r.trace.limit_bytes), None)
        if limit:
            limit_mib = limit / 2**20
            ax.axhline(limit_mib, color="#b00", linestyle="--", linewidth=1.2, label="limit")
            for (name, fraction), style in zip(THRESHOLDS, ("#e69500", "#d45500"), strict=True):
                ax.axhline(
                    limit_mib * fraction,
                    color=style,
                    linestyle=":",
                    linewidth=1,
                    label=f"{name} ({fraction:.0%})",
                )
            top = max(top, limit_mib)
        ax.set_ylim(0, top * 1.12 if top > 0 else 1)
        ax.set_xlim(left=0)
        ax.set_ylabel("RSS (MiB)")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", fontsize=8, framealpha=0.85)
        ax.set_title("Resident memory of the process tree", loc="left", fontsize=10)
        if lane_ax is not None and spans_run is not None:
            ax.tick_params(labelbottom=False)
            index = {name: i for i, name in enumerate(lanes)}
            for span in spans_run.trace.spans:
                row = index.get(span.name)
                if row is None:
                    continue
                lane_ax.broken_barh(
                    [(span.start_s, max(span.duration_s, 1e-3))],
                    (row - 0.4, 0.8),
                    facecolors=_COLOURS[row % len(_COLOURS)],
                    alpha=0.75,
                )
            lane_ax.set_yticks(range(len(lanes)))
            lane_ax.set_yticklabels([_chart_text(n, 28) for n in lanes])
            lane_ax.set_ylim(-0.6, len(lanes) - 0.4)
            lane_ax.invert_yaxis()
            lane_ax.grid(True, axis="x", alpha=0.3)
            lane_ax.set_xlabel("time since start (s)")
        else:
            ax.set_xlabel("time since start (s)")
        fig.subplots_adjust(left=0.17 if lanes else 0.07, right=0.98, top=0.93, bottom=0.1)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = buf.getvalue()
    start = svg.find("<svg")
    svg = svg[start:] if start >= 0 else svg
    # Matplotlib notes each text in an (escaped) XML comment; drop them: the page
    # needs no copy of program strings inside the drawing.
    return _SVG_COMMENT.sub("", svg)


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;
color:#1b1f23;background:#f6f8fa}
main{max-width:1180px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.sub{color:#57606a;margin:0 0 18px;word-break:break-all}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:12px 0}
.card{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:10px 14px;min-width:130px}
.card b{display:block;font-size:18px}.card span{color:#57606a;font-size:12px}
.chart{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:8px}
.chart svg{width:100%;height:auto;display:block}
table{border-collapse:collapse;background:#fff;width:100%;font-size:13px}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
td.n,th.n{text-align:right;white-space:nowrap}
code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;word-break:break-all}
.leak{color:#b00;font-weight:600}.ok{color:#1a7f37}.warn{color:#9a6700}
footer{color:#57606a;font-size:12px;margin-top:30px}
"""


def _cards(s: Summary) -> str:
    items = [
        (
            format_size(s.peak_rss_bytes),
            "peak RSS" + (f" at {s.peak_t_s:.2f} s" if s.peak_t_s is not None else ""),
        ),
        (f"{s.duration_s:.2f} s", "duration"),
        (format_size(s.mean_rss_bytes), "mean RSS (time-weighted)"),
        (format_size(s.final_rss_bytes), "last sample"),
    ]
    if s.limit_bytes:
        items.append((format_size(s.limit_bytes), "limit"))
    if s.end_reason is not None:
        items.append((f"{s.exit_code}", f"exit code ({s.end_reason})"))
    if s.max_processes > 1:
        items.append((str(s.max_processes), "processes at most"))
    return (
        '<div class="cards">'
        + "".join(f"<div class=card><b>{_esc(v)}</b><span>{_esc(k)}</span></div>" for v, k in items)
        + "</div>"
    )


def _growth(s: Summary) -> str:
    g = s.growth
    if g is None:
        return "<p>Too few samples to judge growth.</p>"
    detail = (
        f"{format_size(round(g.slope_bytes_per_s))}/s, {format_size(round(g.total_bytes))} over "
        f"{g.window_s[0]:.1f}–{g.window_s[1]:.1f} s (after warm-up), Mann–Kendall "
        f"p={g.p_value:.2g}, τ={g.tau:.2f}; noise floor {format_size(round(g.noise_floor_bytes))}"
    )
    if g.leak_suspected:
        return f'<p class="leak">Leak suspected: memory grows steadily — {_esc(detail)}.</p>'
    return f'<p class="ok">No steady growth — {_esc(detail)}.</p>'


def _sites(snap: SiteSnapshot | None, title: str) -> str:
    if snap is None or not snap.sites:
        return ""
    rows = "".join(
        f"<tr><td class=n>{_esc(format_size(site.size_bytes))}</td><td class=n>{site.count}</td>"
        f"<td><code>{_esc(site_label(site))}</code></td><td><code>{_esc(site.code)}</code></td></tr>"
        for site in snap.sites
    )
    return (
        f"<h3>Top allocation sites {_esc(title)} — Python heap "
        f"{_esc(format_size(snap.traced_bytes))} at {snap.t_s:.2f} s</h3>"
        "<table><tr><th class=n>size</th><th class=n>blocks</th><th>where</th><th>code</th></tr>"
        f"{rows}</table>"
    )


def _operations(s: Summary) -> str:
    if not s.operations:
        return ""
    rows = "".join(
        f"<tr><td>{_esc(r.name)}</td><td class=n>{r.count}</td><td class=n>{r.total_s:.3f} s</td>"
        f"<td class=n>{r.mean_s:.3f} s</td>"
        f"<td class=n>{_esc(format_size(r.max_rss_delta_bytes))}</td>"
        f"<td class=n>{_esc(format_size(r.max_peak_rss_bytes))}</td>"
        f"<td class=n>{_esc(format_size(r.max_heap_delta_bytes))}</td></tr>"
        for r in s.operations
    )
    return (
        "<h3>Operations (<code>track()</code>)</h3>"
        "<table><tr><th>operation</th><th class=n>count</th>"
        "<th class=n>total</th><th class=n>mean</th><th class=n>max RSS Δ</th>"
        f"<th class=n>max peak RSS</th><th class=n>max heap Δ</th></tr>{rows}</table>"
    )


def _events(s: Summary) -> str:
    parts = [f"<li class=warn>{_esc(p)}</li>" for p in s.problems]
    parts += [f"<li>{e.t_s:.2f} s — {_esc(e.kind)}: {_esc(e.message)}</li>" for e in s.events[:50]]
    return f"<h3>Events</h3><ul>{''.join(parts)}</ul>" if parts else ""


def _comparison(runs: Sequence[ReportRun], extra: dict[str, dict[str, str]]) -> str:
    base = runs[0].summary
    extra_cols = sorted({c for cols in extra.values() for c in cols})
    head = "".join(f"<th>{_esc(c)}</th>" for c in extra_cols)
    rows = []
    for run in runs:
        s = run.summary
        ratio = s.peak_rss_bytes / base.peak_rss_bytes if base.peak_rss_bytes else 0.0
        cells = "".join(f"<td>{_esc(extra.get(s.label, {}).get(c, ''))}</td>" for c in extra_cols)
        rows.append(
            f"<tr><td>{_esc(s.label)}</td><td class=n>{_esc(format_size(s.peak_rss_bytes))}</td>"
            f"<td class=n>{ratio:.2f}×</td><td class=n>{s.duration_s:.2f} s</td>"
            f"<td class=n>{_esc(format_size(s.mean_rss_bytes))}</td>{cells}</tr>"
        )
    return (
        "<h2>Comparison</h2><table><tr><th>run</th><th class=n>peak RSS</th>"
        f"<th class=n>peak vs first</th><th class=n>time</th><th class=n>mean RSS</th>{head}</tr>"
        + "".join(rows)
        + "</table>"
    )


def render_html(
    traces: Sequence[Trace],
    *,
    title: str | None = None,
    notes: Sequence[str] = (),
    extra_columns: dict[str, dict[str, str]] | None = None,
) -> str:
    """Return a complete, self-contained HTML report of ``traces`` (one, or several to compare).

    Args:
        traces: the runs; with several, the chart overlays them and a comparison
            table comes first.
        title: the page title (default: the first run's label).
        notes: paragraphs shown under the title (escaped).
        extra_columns: per run label, extra comparison cells (escaped).
    """
    if not traces:
        raise ValueError("render_html needs at least one trace")
    runs = [ReportRun(t, summarize(t)) for t in traces]
    page_title = title or f"memwarden report: {runs[0].summary.label}"
    from memwarden import __version__

    body = [f"<h1>{_esc(page_title)}</h1>"]
    for note in notes:
        body.append(f'<p class="sub">{_esc(note)}</p>')
    if len(runs) > 1:
        body.append(_comparison(runs, extra_columns or {}))
    body.append(f'<h2>Timeline</h2><div class="chart" id="chart">{render_chart_svg(runs)}</div>')
    for run in runs:
        s = run.summary
        body.append(f"<h2>{_esc(s.label)}</h2>")
        body.append(f'<p class="sub">command: <code>{_esc(" ".join(s.command))}</code>')
        if s.path:
            body.append(f" — trace: <code>{_esc(s.path)}</code>")
        body.append("</p>")
        body.append(_cards(s))
        body.append(_growth(s))
        body.append(_sites(s.peak_sites, "near the peak"))
        body.append(_sites(s.exit_sites, "at exit"))
        body.append(_operations(s))
        body.append(_events(s))
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body.append(
        f"<footer>memwarden {_esc(__version__)} — generated {_esc(stamp)} — "
        "trace format memwarden.trace/1</footer>"
    )
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        # No script, no remote resources: the CSP makes the promise checkable.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">"
        f"<title>{_esc(page_title)}</title><style>{_CSS}</style></head>"
        f"<body><main>{''.join(body)}</main></body></html>\n"
    )


def write_html(path: str, traces: Sequence[Trace], **kwargs: object) -> None:
    """Write :func:`render_html` of ``traces`` to ``path`` (UTF-8)."""
    from memwarden._files import write_output

    text = render_html(traces, **kwargs)  # type: ignore[arg-type]
    write_output(path, text)
