"""The error tree: builtin bases for easy adoption, and errors that survive pickling."""

from __future__ import annotations

import pickle

import pytest

from memwarden import exceptions as ex
from memwarden.exceptions import DisposalError

CASES = [
    ex.ConfigurationError("bad value", value="abc", source="environment"),
    ex.MemoryBudgetExceededError(
        "over budget", peak_bytes=150, limit_bytes=100, top_sites=[("a.py:3", 120)]
    ),
    ex.PressureTimeoutError("still under pressure", waited_s=2.5, level=2),
    ex.PoolExhaustedError("no buffer"),
    ex.RegistryFullError("65536 resources tracked"),
    ex.DisposedError("used after dispose"),
    ex.ItemTooLargeError("too large", size_bytes=10, max_bytes=5),
    ex.TraceFormatError("bad line", path="t.jsonl", line=7),
    ex.CommandError("failed", exit_code=3),
]


@pytest.mark.parametrize("err", CASES, ids=lambda e: type(e).__name__)
def test_errors_round_trip_through_pickle(err: ex.MemwardenError) -> None:
    """Every error unpickles with its message and attributes (as across multiprocessing)."""
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err)
    assert str(back) == str(err)
    assert back.args == err.args
    assert vars(back) == vars(err)


def test_line_too_long_round_trips() -> None:
    """LineTooLongError (raised by iter_lines) also survives pickling with its fields."""
    import io

    from memwarden.stream import iter_lines

    with pytest.raises(ex.LineTooLongError) as info:
        list(iter_lines(io.BytesIO(b"x" * 5000 + b"\n"), max_line_bytes=1024))
    back = pickle.loads(pickle.dumps(info.value))
    assert type(back) is ex.LineTooLongError
    assert vars(back) == vars(info.value)


def test_the_whole_tree_lives_in_exceptions() -> None:
    """Errors and warnings raised elsewhere are the ones defined here (re-exported there)."""
    from memwarden import dispose

    assert dispose.DisposalError is ex.DisposalError
    assert dispose.MaxListenersExceededWarning is ex.MaxListenersExceededWarning
    assert issubclass(ex.MaxListenersExceededWarning, ex.MemwardenWarning)
    assert issubclass(ex.DisposalError, ex.MemwardenError)
    assert issubclass(ex.RegistryFullError, ex.MemwardenError)
    assert not issubclass(ex.RegistryFullError, ex.PoolExhaustedError)
    for name in ex.__all__:
        assert getattr(ex, name).__module__ == "memwarden.exceptions", name


def test_disposal_error_round_trips() -> None:
    """A DisposalError carrying several failures pickles with all of them."""
    err = DisposalError("2 disposers failed", [ValueError("a"), KeyError("b")])
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is DisposalError
    assert [repr(e) for e in back.exceptions] == [repr(e) for e in err.exceptions]


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (ex.ConfigurationError, ValueError),
        (ex.MemoryBudgetExceededError, MemoryError),
        (ex.PressureTimeoutError, TimeoutError),
        (ex.DisposedError, RuntimeError),
        (ex.TraceFormatError, ValueError),
        (ex.ItemTooLargeError, ValueError),
        (ex.LineTooLongError, ValueError),
        (ex.UndisposedResourceWarning, ResourceWarning),
    ],
)
def test_errors_subclass_the_builtin_callers_already_catch(
    cls: type[BaseException], builtin: type[BaseException]
) -> None:
    """Adopting memwarden needs no new except clauses: each error is also the builtin."""
    assert issubclass(cls, builtin)


def _over_budget() -> None:
    raise ex.MemoryBudgetExceededError(
        "over budget in a worker", peak_bytes=300, limit_bytes=200, top_sites=[("w.py:9", 250)]
    )


def test_error_raised_in_a_worker_process_arrives_whole() -> None:
    """A budget error raised in a real worker process reaches the parent with its figures."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1) as pool:
        future = pool.submit(_over_budget)
        with pytest.raises(ex.MemoryBudgetExceededError) as info:
            future.result(timeout=60)
    assert info.value.peak_bytes == 300
    assert info.value.limit_bytes == 200
    assert info.value.top_sites == [("w.py:9", 250)]
