"""Fuzz the parsers that read outside input: parse_size, load_config and the trace reader.

Run with ``make fuzz`` (or ``python bench/fuzz.py --minutes 3``). Each target runs
hypothesis with fresh seeds in rounds until its share of the time budget is spent,
and checks the parser's contract, not just "no crash":

- ``parse_size``: returns an int in ``[0, MAX_SIZE_BYTES]`` or raises
  ``ConfigurationError``, within 50 ms whatever the input;
- ``load_config``: a ``pyproject.toml`` of random bytes or random TOML values and
  random ``MEMWARDEN_*`` variables give a ``MemoryConfig`` or a ``ConfigurationError``;
- ``read_trace``: a valid trace with random damage (bytes flipped, lines cut, hostile
  JSON spliced in, gzip'd) gives a ``Trace`` or a ``TraceFormatError``; its summary
  serializes as strict JSON and renders on a terminal without control characters.

Exit status 1 with the failing input when a contract breaks. Prints a one-line
result per target (examples tried, seconds, slowest call).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import logging
import os
import random
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
# MEMWARDEN_FUZZ_SRC fuzzes another checkout's sources (e.g. a merge candidate).
sys.path.insert(0, os.environ.get("MEMWARDEN_FUZZ_SRC", str(ROOT / "src")))

from memwarden._units import MAX_SIZE_BYTES, parse_size  # noqa: E402
from memwarden.config import MemoryConfig, load_config  # noqa: E402
from memwarden.exceptions import ConfigurationError, MemwardenWarning, TraceFormatError  # noqa: E402

SLOW_S = 0.05

# --------------------------------------------------------------------------- parse_size

_UNITS = ["", "b", "B", "k", "K", "kb", "KiB", "Mi", "MB", "g", "GiB", "T", "tib", "P", "PiB"]
_UNITS += ["bytes", "E", "EiB", "x", "%", " MiB", "\u00b5B"]
_NUMBER = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.from_regex(r"\A[+-]?[0-9]{0,30}(\.[0-9]{0,30})?([eE][+-]?[0-9]{1,8})?\Z"),
    st.text(alphabet="0123456789.eE+-_ \u0660\u0661\uff11\u00b2", max_size=40),
)
SIZE_TEXT = st.one_of(
    st.builds(
        lambda n, sp, u: f"{n}{sp}{u}",
        _NUMBER,
        st.sampled_from(["", " ", "\t"]),
        st.sampled_from(_UNITS),
    ),
    st.text(max_size=80),
)
SIZE_VALUE = st.one_of(
    SIZE_TEXT,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
)


def check_parse_size(value: object) -> float:
    started = time.perf_counter()
    try:
        got = parse_size(value, source="fuzz")  # type: ignore[arg-type]
    except ConfigurationError:
        got = None
    elapsed = time.perf_counter() - started
    if got is not None:
        assert isinstance(got, int), (value, got)
        assert not isinstance(got, bool), (value, got)
        assert 0 <= got <= MAX_SIZE_BYTES, (value, got)
    assert elapsed < SLOW_S, f"parse_size({value!r}) took {elapsed:.3f} s"
    return elapsed


# --------------------------------------------------------------------------- load_config

_KEYS = [
    "max_memory",
    "max_memory_bytes",
    "max_memory_mb",
    "warning_threshold",
    "critical_threshold",
    "pressure_threshold",
    "release_threshold",
    "hysteresis",
    "monitoring_interval_s",
    "monitoring_interval",
    "gc_interval_s",
    "history_size",
    "profile",
    "log_level",
    "leak_detection",
    "fail_fast",
    "graceful_degradation",
    "unknown_key",
]
_TOML_SCALAR = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(
        lambda f: (
            "nan"
            if f != f
            else ("inf" if f == float("inf") else "-inf" if f == float("-inf") else repr(f))
        )
    ),
    st.booleans().map(lambda b: "true" if b else "false"),
    SIZE_TEXT.map(json.dumps),
    st.sampled_from(
        [
            '"development"',
            '"testing"',
            '"production"',
            '"80%"',
            '"1e999999"',
            "[]",
            "{}",
            '"\\ud800"',
        ]
    ),
)
_TOML_DOC = st.one_of(
    st.dictionaries(st.sampled_from(_KEYS), _TOML_SCALAR, max_size=6).map(
        lambda d: ("[tool.memwarden]\n" + "".join(f"{k} = {v}\n" for k, v in d.items())).encode()
    ),
    st.binary(max_size=200),
    st.sampled_from(
        [
            b"tool = 5\n",
            b"[tool]\nmemwarden = 3\n",
            b"\xff\xfe[tool.memwarden]\n",
            b'[tool.memwarden]\nmax_memory = "1e999999"\n',
        ]
    ),
)
_ENV = st.dictionaries(
    st.sampled_from(_KEYS).map(lambda k: "MEMWARDEN_" + k.upper()),
    SIZE_TEXT.filter(lambda s: "\x00" not in s),
    max_size=4,
)


def check_load_config(doc: bytes, environ: dict[str, str], workdir: Path) -> float:
    path = workdir / "pyproject.toml"
    path.write_bytes(doc)
    started = time.perf_counter()
    try:
        got = load_config(environ=environ, pyproject=path)
    except ConfigurationError:
        got = None
    elapsed = time.perf_counter() - started
    if got is not None:
        assert isinstance(got, MemoryConfig)
        assert 0 < got.max_memory_bytes <= MAX_SIZE_BYTES
    assert elapsed < 1.0, f"load_config took {elapsed:.3f} s on {doc!r} {environ!r}"
    return elapsed


# --------------------------------------------------------------------------- read_trace

_HOSTILE = [
    b"[" * 50_000 + b"]" * 50_000,
    b'{"type": "sample", "t_s": NaN, "rss_bytes": 1}',
    b'{"type": "sample", "t_s": 1, "rss_bytes": ' + b"9" * 400 + b"}",
    b'{"type": "event", "t_s": 1, "kind": "\\ud800", "message": "\\u001b[2J"}',
    b'{"type": "end", "t_s": -5, "exit_code": 99999999999999999999, "reason": "x"}',
    b'{"type": "sites", "when": "peak", "t_s": 1, "sites": [{"file": 1}]}',
    b"\xff\xfe\x00garbage",
    b'{"type": 5}',
    b"null",
]


def _base_trace() -> bytes:
    lines = [
        json.dumps(
            {
                "format": "memwarden.trace/1",
                "command": ["p"],
                "interval_s": 0.1,
                "limit_bytes": 2**30,
                "label": "fuzz",
            }
        )
    ]
    for i in range(40):
        lines.append(
            json.dumps(
                {"type": "sample", "t_s": i * 0.1, "rss_bytes": 10**6 + i * 997, "processes": 1}
            )
        )
    lines.append(json.dumps({"type": "span", "name": "op", "start_s": 0.5, "duration_s": 0.2}))
    lines.append(
        json.dumps(
            {
                "type": "sites",
                "when": "exit",
                "t_s": 3.9,
                "traced_bytes": 10,
                "peak_traced_bytes": 10,
                "sites": [{"file": "a.py", "line": 1, "size_bytes": 10, "count": 1, "code": "x"}],
            }
        )
    )
    lines.append(json.dumps({"type": "event", "t_s": 1.0, "kind": "limit", "message": "m"}))
    lines.append(json.dumps({"type": "end", "t_s": 4.0, "exit_code": 0, "reason": "exited"}))
    return ("\n".join(lines) + "\n").encode()


BASE_TRACE = _base_trace()


@st.composite
def damaged_traces(draw: st.DrawFn) -> bytes:
    data = bytearray(BASE_TRACE)
    for _ in range(draw(st.integers(0, 4))):
        action = draw(st.sampled_from(["flip", "cut", "splice", "insert", "dup"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if action == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif action == "cut":
            del data[pos:]
        elif action == "splice":
            data[pos:pos] = b"\n" + draw(st.sampled_from(_HOSTILE)) + b"\n"
        elif action == "insert":
            data[pos:pos] = draw(st.binary(max_size=20))
        else:
            data += data[pos:]
    out = bytes(data)
    if draw(st.booleans()) and draw(st.integers(0, 4)) == 0:
        out = gzip.compress(out)
        if draw(st.booleans()):
            out = out[: draw(st.integers(0, len(out)))]
    return out


def check_trace(data: bytes, workdir: Path) -> float:
    from rich.console import Console

    from memwarden.report.summary import summarize
    from memwarden.report.terminal import render_terminal
    from memwarden.report.trace import read_trace

    path = workdir / "t.jsonl"
    path.write_bytes(data)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MemwardenWarning)
        try:
            trace = read_trace(path)
        except TraceFormatError:
            return time.perf_counter() - started
    summary = summarize(trace)
    json.dumps(summary.to_dict(), allow_nan=False)
    buf = io.StringIO()
    render_terminal(
        summary,
        Console(file=buf, width=100, color_system=None),
        spark=[s.rss_bytes for s in trace.samples],
    )
    text = buf.getvalue()
    bad = [c for c in text if (ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) <= 0x9F]
    assert not bad, f"control characters {bad!r} in the terminal report of {data[:200]!r}"
    assert summary.duration_s >= 0
    return time.perf_counter() - started


# --------------------------------------------------------------------------- driver


def run_target(name: str, body: Callable[[int], None], budget_s: float) -> int:
    deadline = time.monotonic() + budget_s
    rounds = 0
    while time.monotonic() < deadline:
        body(random.randrange(2**32))
        rounds += 1
    return rounds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="total time budget")
    parser.add_argument("--examples", type=int, default=300, help="examples per round")
    args = parser.parse_args()
    # Damaged traces are logged at WARNING by design; thousands of them are noise here.
    logging.getLogger("memwarden").addHandler(logging.NullHandler())
    logging.getLogger("memwarden").propagate = False
    share = args.minutes * 60 / 3
    common = settings(
        max_examples=args.examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    slowest: dict[str, float] = {"parse_size": 0.0, "load_config": 0.0, "read_trace": 0.0}
    tried: dict[str, int] = dict.fromkeys(slowest, 0)

    with tempfile.TemporaryDirectory(prefix="memwarden-fuzz-") as tmp:
        workdir = Path(tmp)
        os.chdir(workdir)

        def fuzz_size(s: int) -> None:
            @seed(s)
            @common
            @given(SIZE_VALUE)
            def t(value: object) -> None:
                slowest["parse_size"] = max(slowest["parse_size"], check_parse_size(value))
                tried["parse_size"] += 1

            t()

        def fuzz_config(s: int) -> None:
            @seed(s)
            @common
            @given(_TOML_DOC, _ENV)
            def t(doc: bytes, environ: dict[str, str]) -> None:
                elapsed = check_load_config(doc, environ, workdir)
                slowest["load_config"] = max(slowest["load_config"], elapsed)
                tried["load_config"] += 1

            t()

        def fuzz_trace(s: int) -> None:
            @seed(s)
            @common
            @given(damaged_traces())
            def t(data: bytes) -> None:
                slowest["read_trace"] = max(slowest["read_trace"], check_trace(data, workdir))
                tried["read_trace"] += 1

            t()

        failed = False
        for name, body in (
            ("parse_size", fuzz_size),
            ("load_config", fuzz_config),
            ("read_trace", fuzz_trace),
        ):
            started = time.monotonic()
            try:
                rounds = run_target(name, body, share)
            except Exception as exc:  # hypothesis re-raises the shrunk failing example
                print(f"{name}: FAILED: {type(exc).__name__}: {exc}"[:2000])
                failed = True
                continue
            print(
                f"{name}: clean, {tried[name]} examples in {rounds} rounds, "
                f"{time.monotonic() - started:.0f} s, slowest call {slowest[name] * 1000:.1f} ms"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
