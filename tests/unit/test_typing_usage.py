"""The user-side typing contract: ``tests/typing/api_usage.py`` passes ``mypy --strict`` and runs.

Known defects of the public API's types are pinned as strict xfails below, each
with a small snippet of the code a user would write: when one is fixed its test
XPASSes, fails under ``xfail_strict``, and the snippet belongs in ``api_usage.py``.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
USAGE = ROOT / "tests" / "typing" / "api_usage.py"
MYPY_TIMEOUT_S = 300

needs_mypy = pytest.mark.skipif(
    importlib.util.find_spec("mypy") is None, reason="mypy is not installed"
)


def _mypy(*paths: Path) -> subprocess.CompletedProcess[str]:
    """Run ``mypy --strict`` from the repository root (its pyproject config applies)."""
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", *map(str, paths)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=MYPY_TIMEOUT_S,
        check=False,
    )


@needs_mypy
def test_usage_file_passes_mypy_strict() -> None:
    """``mypy --strict tests/typing/api_usage.py`` finds no error."""
    result = _mypy(USAGE.relative_to(ROOT))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success" in result.stdout


def test_usage_file_runs_as_a_script() -> None:
    """The usage file runs without error in a fresh interpreter (its assertions hold)."""
    result = subprocess.run(
        [sys.executable, str(USAGE)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_usage_file_is_not_collected_by_pytest() -> None:
    """The typing directory holds no ``test_*`` module, so pytest never imports it."""
    assert USAGE.is_file()
    assert not list(USAGE.parent.glob("test_*.py"))


# --------------------------------------------------------------------------- pinned defects

#: name -> (reason, snippet a user would write; must pass ``mypy --strict`` once fixed)
KNOWN_BUGS: dict[str, tuple[str, str]] = {}


# Defects that were fixed: their snippets must keep passing (regression tests).
FIXED_BUGS: dict[str, tuple[str, str]] = {
    "pipeline_output_follows_last_stage": (
        "stream.py Pipeline.add/run used Any, so a Pipeline's run() yielded Any whatever "
        "its stages returned",
        """
        from collections.abc import Iterator
        from typing import assert_type
        import memwarden

        pipe = memwarden.Pipeline(maxsize=2).add(str.upper).add(len)
        assert_type(pipe, memwarden.Pipeline[int])
        assert_type(pipe.run(["a"]), Iterator[int])
        """,
    ),
    "disposable_base_instances_are_typed": (
        "dispose.py DisposableBase.__new__ returns Any, so every subclass instance "
        "(Conn()) is Any to mypy: no attribute or argument checking at all",
        """
        from typing import assert_type
        import memwarden

        class Conn(memwarden.DisposableBase):
            def _dispose(self) -> None:
                pass

        assert_type(Conn(), Conn)
        """,
    ),
    "cache_lookups_are_typed": (
        "cache.py LRUCache.get/peek/pop and WeakCache.get are annotated -> Any: a "
        "MutableMapping[str, bytes] gives bytes | None, the concrete cache gives Any",
        """
        from typing import assert_type
        import memwarden

        lru: memwarden.LRUCache[str, bytes] = memwarden.LRUCache(8)
        assert_type(lru.get("k"), bytes | None)
        assert_type(lru.get("k", b""), bytes)
        assert_type(lru.peek("k"), bytes | None)
        assert_type(lru.pop("k", None), bytes | None)
        weak: memwarden.WeakCache[str, bytes] = memwarden.WeakCache()
        assert_type(weak.get("k"), bytes | None)
        """,
    ),
    "cached_method_is_typed": (
        "cache.py cached_method() returns Any: under --strict a decorated method is "
        "'untyped decorator makes function untyped', and its result is Any",
        """
        from typing import assert_type
        import memwarden

        class Repo:
            @memwarden.cached_method(maxsize=8)
            def load(self, key: str) -> bytes:
                return key.encode()

            @memwarden.cached_method
            def size(self, key: str) -> int:
                return len(key)

        assert_type(Repo().load("k"), bytes)
        assert_type(Repo().size("k"), int)
        """,
    ),
    "cached_keeps_the_signature": (
        "cache.py cached() overloads return Callable[..., R]: the decorated function's "
        "parameters are erased, so wrong arguments type-check",
        """
        import memwarden

        @memwarden.cached
        def square(n: int) -> int:
            return n * n

        @memwarden.cached(memwarden.LRUCache(16))
        def greet(name: str) -> str:
            return name

        square("four")  # type: ignore[arg-type]
        greet(1)  # type: ignore[arg-type]
        """,
    ),
    "track_async_is_a_coroutine": (
        "monitor.py track.__call__ overload types an async def as Callable[P, Awaitable[R]], "
        "so asyncio.run(tracked()) fails: it needs a Coroutine",
        """
        import asyncio
        import memwarden

        @memwarden.track("fetch")
        async def fetch(n: int) -> list[int]:
            return list(range(n))

        asyncio.run(fetch(3))
        """,
    ),
    "unknown_top_level_names_are_errors": (
        "memwarden/__init__.py defines module __getattr__ -> Any where type checkers see "
        "it, so a misspelt memwarden.rsss() type-checks as Any instead of attr-defined",
        """
        import memwarden

        memwarden.rsss()  # type: ignore[attr-defined]
        """,
    ),
}


@pytest.fixture(scope="module")
def known_bug_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Run mypy once over every snippet; return each snippet's error lines ('' if clean)."""
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed")
    folder = tmp_path_factory.mktemp("typing_snippets")
    paths = {}
    for name, (_reason, code) in {**KNOWN_BUGS, **FIXED_BUGS}.items():
        path = folder / f"snippet_{name}.py"
        path.write_text(textwrap.dedent(code).lstrip())
        paths[name] = path
    result = _mypy(*paths.values())
    output = result.stdout + result.stderr
    # Match on the file name: mypy's incremental cache may replay an unchanged
    # module's errors under the path it had in an earlier run.
    found = {
        name: "\n".join(line for line in output.splitlines() if f"{path.name}:" in line)
        for name, path in paths.items()
    }
    assert result.returncode in (0, 1), output  # 2: mypy itself failed
    assert (result.returncode == 1) == any(found.values()), output
    return found


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=reason))
        for name, (reason, _code) in KNOWN_BUGS.items()
    ],
)
def test_known_typing_defect(name: str, known_bug_results: dict[str, str]) -> None:
    """The user's snippet for this API passes ``mypy --strict`` (xfail while the defect stands)."""
    assert known_bug_results[name] == "", known_bug_results[name]


@pytest.mark.parametrize("name", sorted(FIXED_BUGS))
def test_fixed_typing_defect(name: str, known_bug_results: dict[str, str]) -> None:
    """A defect that was fixed stays fixed: the user's snippet passes ``mypy --strict``."""
    assert known_bug_results[name] == "", known_bug_results[name]


def test_monitor_is_callable_after_its_module_loaded() -> None:
    """``memwarden.monitor`` stays callable after ``memwarden.track`` loaded the submodule."""
    code = "import memwarden; memwarden.track; assert callable(memwarden.monitor)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


def test_snapshot_is_callable_after_its_module_loaded() -> None:
    """The twin case that works: ``memwarden.snapshot()`` after ``memwarden.MemoryDelta``."""
    code = "import memwarden; memwarden.MemoryDelta; assert memwarden.snapshot().rss_bytes > 0"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
