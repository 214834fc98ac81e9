"""Type stubs of the C extension memwarden._sampler (see _sampler.c and memwarden.profiler)."""

from contextvars import ContextVar

MAX_FRAMES_LIMIT: int
STACK_NO_GIL: int
STACK_OVERFLOW: int
STACK_TRUNCATED: int

def start(
    interval_bytes: float,
    max_frames: int,
    max_stacks: int,
    max_live: int,
    max_frame_entries: int,
    tag_var: ContextVar[int] | None,
    /,
) -> None: ...
def stop() -> None: ...
def is_running() -> bool: ...
def clear() -> None: ...
def reset_peak() -> None: ...
def snapshot(
    kind: str, /
) -> tuple[
    list[tuple[str, str, int]],
    list[tuple[tuple[int, ...], int, int, int]],
    list[tuple[int, int, int, float]],
]: ...
def stats() -> dict[str, int | float]: ...
def _test_raw_alloc_nogil(count: int, size: int, keep: bool, /) -> list[int]: ...
def _test_raw_free(addresses: list[int], /) -> None: ...
