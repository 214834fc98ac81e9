"""The tracing owner: nested users keep their own peaks, frames are attributed, traces grouped."""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Callable, Iterator

import pytest

from memwarden import tracing
from memwarden.batch import AdaptiveBatchProcessor
from memwarden.budget import memory_budget
from memwarden.config import MemoryConfig
from memwarden.heap import HeapSession
from memwarden.leaks import _innermost, check_leaks
from memwarden.monitoring import MemoryMonitor, track
from memwarden.pytest_plugin._marks import Measurement

MIB = 1 << 20
BIG = 8 * MIB

Body = Callable[[], None]


@pytest.fixture(autouse=True)
def _no_tracing() -> Iterator[None]:
    if tracemalloc.is_tracing():
        pytest.skip(
            "the owner's start/stop is tested with tracing off (run without -X tracemalloc)"
        )
    yield
    assert not tracemalloc.is_tracing(), "a user left tracing on"


# Each outer user runs ``body`` inside its measurement and returns the peak it saw
# (above its start, or absolute where the user reports that: tracing starts at ~0).


def _outer_budget(body: Body) -> int:
    with memory_budget("1 GiB") as b:
        body()
    return b.peak_bytes


def _outer_heap(body: Body) -> int:
    with HeapSession(snapshots=False) as heap:
        body()
    return heap.peak_bytes


def _outer_batch(body: Body) -> int:
    def process(batch: list[int]) -> list[int]:
        body()
        return batch

    proc: AdaptiveBatchProcessor[int, int] = AdaptiveBatchProcessor(
        process, max_memory="1 GiB", governor=False, measure="heap", initial_batch=1
    )
    assert list(proc.run([1])) == [1]
    return proc.stats.peak_bytes


def _outer_leaks(body: Body) -> int:
    held: list[tracing.TraceUser] = []

    def fn() -> None:
        session = _innermost.get()
        if session is not None and session.user is not None and not held:
            held.append(session.user)
            body()  # the inner user once (the peak is reached then): rounds stay cheap
        else:
            _small()

    check_leaks(fn, warmup=0, rounds=4, calls_per_round=1)
    assert held
    return held[0].peak_bytes()  # folded at release: the check's own peak


def _outer_track(body: Body) -> int:
    mon = MemoryMonitor(MemoryConfig(max_memory_bytes=2**40))
    tr = track("outer", precise=True, monitor=mon)
    with tr:
        body()
    assert tr.last is not None
    return int(tr.last.python_heap_peak_bytes or 0)


def _outer_marker(body: Body) -> int:
    m = Measurement(want_leaks=False)
    m.start()
    body()
    m.stop()
    return m.peak_bytes


def _small() -> None:
    data = bytearray(MIB)
    del data


def _inner_budget() -> None:
    with memory_budget("1 GiB"):
        _small()


def _inner_heap() -> None:
    with HeapSession():
        _small()


def _inner_batch() -> None:
    proc: AdaptiveBatchProcessor[int, int] = AdaptiveBatchProcessor(
        lambda b: (_small(), b)[1], max_memory="1 GiB", governor=False, measure="heap"
    )
    assert list(proc.run(range(3))) == [0, 1, 2]


def _inner_leaks() -> None:
    check_leaks(_small, warmup=0, rounds=4, calls_per_round=1, nframes=4)


def _inner_track() -> None:
    mon = MemoryMonitor(MemoryConfig(max_memory_bytes=2**40))
    with track("inner", precise=True, monitor=mon):
        _small()


def _inner_marker() -> None:
    m = Measurement(want_leaks=True, limit_bytes=1)
    m.start()
    _small()
    m.stop()


OUTER = {
    "budget": _outer_budget,
    "heap": _outer_heap,
    "batch": _outer_batch,
    "leaks": _outer_leaks,
    "track": _outer_track,
    "marker": _outer_marker,
}
INNER = {
    "budget": _inner_budget,
    "heap": _inner_heap,
    "batch": _inner_batch,
    "leaks": _inner_leaks,
    "track": _inner_track,
    "marker": _inner_marker,
}


@pytest.mark.parametrize("inner", list(INNER))
@pytest.mark.parametrize("outer", list(OUTER))
def test_outer_peak_survives_an_inner_user(outer: str, inner: str) -> None:
    """An 8 MiB peak reached before an inner user (which resets the peak) stays the outer's."""

    def body() -> None:
        big = bytearray(BIG)
        del big
        INNER[inner]()

    peak = OUTER[outer](body)
    assert peak >= BIG, f"{outer} around {inner}: peak {peak} lost the 8 MiB before the inner user"


def test_each_user_sees_its_own_peak_since_its_own_start() -> None:
    """An inner user's peak excludes what the outer one saw before it started."""
    outer = tracing.acquire(1, name="outer")
    try:
        big = bytearray(BIG)
        del big
        inner = tracing.acquire(1, name="inner")
        small = bytearray(MIB)
        del small
        got = inner.release()
        # a few bytes of interpreter bookkeeping freed after the start level was read
        assert MIB - 1024 <= got.peak_bytes < 2 * MIB
        inner.reset_peak()  # released: a no-op
        outer_peak = outer.peak_bytes()
        assert outer_peak >= BIG - 4096  # less bookkeeping freed since its start (coverage)
    finally:
        outer.release()


def test_restart_for_more_frames_keeps_the_outer_figures() -> None:
    """A user asking for more frames restarts memwarden's session; totals stay continuous."""
    outer = tracing.acquire(1)
    kept = bytearray(2 * MIB)
    assert tracemalloc.get_traceback_limit() == 1
    inner = tracing.acquire(6)
    assert tracemalloc.get_traceback_limit() == 6  # restarted with the larger depth
    inner.release()
    assert tracemalloc.is_tracing()  # the outer still holds it
    assert outer.current_bytes() >= 2 * MIB  # the offset kept the blocks from before
    assert outer.peak_bytes() >= 2 * MIB
    outer.release()
    assert not tracemalloc.is_tracing()
    del kept


def test_a_session_started_outside_memwarden_is_never_stopped_or_restarted() -> None:
    """A user's own tracemalloc.start() keeps its depth and stays on after memwarden's users."""
    tracemalloc.start(2)
    try:
        user = tracing.acquire(10)
        assert not user.started
        assert tracemalloc.get_traceback_limit() == 2
        user.release()
        assert tracemalloc.is_tracing()
    finally:
        tracemalloc.stop()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_keeps_the_forking_threads_user() -> None:
    """After fork the child's open user still measures and releases tracing normally."""
    user = tracing.acquire(1)
    pid = os.fork()
    if pid == 0:  # the child: report through the exit code only
        code = 0
        try:
            data = bytearray(BIG)
            del data
            code = 0 if user.peak_bytes() >= BIG else 3
            user.release()
            code = code or (4 if tracemalloc.is_tracing() else 0)
        except BaseException:
            code = 5
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    user.release()
    assert os.waitstatus_to_exitcode(status) == 0


def test_frame_kinds() -> None:
    """memwarden, the runner, stdlib, installed libraries and user code are told apart."""
    assert tracing.frame_kind(tracing.__file__) == "memwarden"
    assert tracing.frame_kind(os.__file__) == "stdlib"
    assert tracing.frame_kind("<frozen importlib._bootstrap>") == "stdlib"
    assert tracing.frame_kind(pytest.__file__) == "runner"
    import numpy

    assert tracing.frame_kind(numpy.__file__) == "library"
    assert tracing.frame_kind(__file__) == "user"


def test_user_frame_skips_libraries_and_extra_prefixes() -> None:
    """The innermost user frame is found past numpy, stdlib and listed prefixes."""
    import numpy

    stack = [numpy.__file__, os.__file__, "/srv/app/vendor/lib.py", __file__, pytest.__file__]
    assert tracing.user_frame(stack) == 2
    assert tracing.user_frame(stack, libraries=("/srv/app/vendor/",)) == 3
    assert tracing.user_frame(stack, skip=frozenset({"stdlib"})) == 0  # numpy counts
    assert tracing.user_frame([os.__file__]) is None


def _allocate_here() -> list[bytearray]:
    return [bytearray(1000) for _ in range(50)]


def test_group_traces_and_by_site_charge_the_users_line() -> None:
    """Grouping by traceback and charging to sites finds this file's line with its bytes."""
    with tracing.acquire(4) as user:
        before = tracing.snapshot()
        kept = _allocate_here()
        after = tracing.snapshot()
        del user
    groups = tracing.group_traces(after, before)
    assert all(g.size_bytes > 0 for g in groups)
    sites = [s for s in tracing.by_site(groups) if s.filename == __file__]
    assert sites
    top = sites[0]
    assert top.size_bytes >= 50 * 1000
    assert top.count >= 50
    assert top.stack[0][0] == __file__  # the largest traceback, most recent first
    del kept


_LEAKED: list[list[str]] = []


def _leak_helper() -> None:
    _LEAKED.append([str(i) for i in range(200)])


def _leaky() -> None:
    _leak_helper()


def test_leak_reports_show_the_stack_behind_a_site() -> None:
    """A leak report lists the site's stack (its caller too), not only the innermost line."""
    report = check_leaks(_leaky, rounds=4, warmup=1, calls_per_round=8)
    _LEAKED.clear()
    assert report.leaked
    text = report.summary()
    helper_line = _leak_helper.__code__.co_firstlineno + 1
    caller_line = _leaky.__code__.co_firstlineno + 1
    assert f"at {__file__}:{helper_line}" in text
    assert f"at {__file__}:{caller_line}" in text
    assert tracing.PACKAGE_DIR not in text.split("Top allocation sites", 1)[1]
