"""IncrementalEngine: change detection, dependencies, persistence, bounds, concurrent processes."""

from __future__ import annotations

import gc
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from memwarden.exceptions import ConfigurationError
from memwarden.incremental import DB_NAME, PICKLE_CODEC, IncrementalEngine

OLD_NS = 1_600_000_000 * 10**9  # a modification time far in the past: outside the racy window


def count_lines(key: str, data: bytes) -> dict[str, object]:
    """A picklable compute step: the file's name and line count."""
    return {"name": Path(key).name, "lines": data.count(b"\n")}


class Counting:
    """Wraps count_lines and records which keys were computed (inline runs only)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, key: str, data: bytes) -> dict[str, object]:
        self.calls.append(Path(key).name)
        return count_lines(key, data)


def write(path: Path, text: str, *, old: bool = True) -> str:
    path.write_text(text)
    if old:
        os.utime(path, ns=(OLD_NS, OLD_NS))
    return str(path)


@pytest.fixture
def files(tmp_path: Path) -> list[str]:
    src = tmp_path / "src"
    src.mkdir()
    return [write(src / f"f{i}.txt", "x\n" * (i + 1)) for i in range(5)]


def test_second_run_reuses_every_result(files: list[str]) -> None:
    """A run over unchanged files computes nothing and returns the same results."""
    compute = Counting()
    engine = IncrementalEngine(compute, jobs=1)
    first = engine.run(files)
    assert sorted(compute.calls) == [f"f{i}.txt" for i in range(5)]
    assert first.results[files[2]] == {"name": "f2.txt", "lines": 3}
    compute.calls.clear()
    second = engine.run(files)
    assert compute.calls == []
    assert second.results == first.results
    assert second.reused == 5
    assert engine.stats.stat_hits == 5


def test_only_changed_inputs_are_recomputed(files: list[str]) -> None:
    """Changing one file recomputes that file only; a touched but identical file is re-hashed."""
    compute = Counting()
    engine = IncrementalEngine(compute, jobs=1)
    engine.run(files)
    compute.calls.clear()
    write(Path(files[1]), "changed\n" * 9)
    os.utime(files[3], ns=(OLD_NS + 10**9, OLD_NS + 10**9))  # touched, same content
    report = engine.run(files)
    assert compute.calls == ["f1.txt"]
    assert report.computed == [files[1]]
    assert report.results[files[1]] == {"name": "f1.txt", "lines": 9}
    assert engine.stats.hash_hits == 1


def test_racy_same_size_change_is_caught_by_the_digest(tmp_path: Path) -> None:
    """A same-size rewrite that keeps mtime, just after recording, is still recomputed."""
    path = tmp_path / "racy.txt"
    path.write_text("aaaa\n")
    compute = Counting()
    engine = IncrementalEngine(compute, jobs=1)
    engine.run([str(path)])
    st = path.stat()
    path.write_text("bb\nb\n")  # same size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime
    report = engine.run([str(path)])
    assert report.results[str(path)] == {"name": "racy.txt", "lines": 2}
    assert compute.calls == ["racy.txt", "racy.txt"]


def test_results_persist_across_engines(tmp_path: Path, files: list[str]) -> None:
    """A new engine on the same cache_dir reuses results computed by an earlier one."""
    cache = tmp_path / "cache"
    with IncrementalEngine(Counting(), cache_dir=cache, jobs=1) as first:
        expected = first.run(files).results
    assert (cache / DB_NAME).is_file()
    assert (cache / ".gitignore").read_text().strip().endswith("*")
    compute = Counting()
    with IncrementalEngine(compute, cache_dir=cache, jobs=1) as second:
        report = second.run(files)
    assert compute.calls == []
    assert report.results == expected


def test_cache_of_another_fingerprint_is_ignored(tmp_path: Path, files: list[str]) -> None:
    """Rows written under another fingerprint (version, configuration) are never reused."""
    cache = tmp_path / "cache"
    with IncrementalEngine(Counting(), cache_dir=cache, fingerprint="v1", jobs=1) as old:
        old.run(files)
    compute = Counting()
    with IncrementalEngine(compute, cache_dir=cache, fingerprint="v2", jobs=1) as new:
        new.run(files)
    assert len(compute.calls) == 5
    again = Counting()
    with IncrementalEngine(again, cache_dir=cache, fingerprint="v1", jobs=1) as old_again:
        old_again.run(files)
    assert again.calls == []  # both fingerprints' rows coexist


def test_corrupt_cache_file_is_ignored_and_rebuilt(tmp_path: Path, files: list[str]) -> None:
    """A cache file that is not a database is discarded; the run computes and persists again."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / DB_NAME).write_bytes(b"this is not sqlite" * 100)
    compute = Counting()
    with IncrementalEngine(compute, cache_dir=cache, jobs=1) as engine:
        report = engine.run(files)
    assert len(compute.calls) == 5
    assert report.results[files[0]] == {"name": "f0.txt", "lines": 1}
    again = Counting()
    with IncrementalEngine(again, cache_dir=cache, jobs=1) as engine:
        engine.run(files)
    assert again.calls == []


def test_undecodable_row_is_recomputed(tmp_path: Path, files: list[str]) -> None:
    """A row whose value the codec cannot decode is treated as absent, not trusted."""
    cache = tmp_path / "cache"
    with IncrementalEngine(Counting(), cache_dir=cache, jobs=1) as engine:
        engine.run(files)
    with sqlite3.connect(cache / DB_NAME) as conn:
        conn.execute("UPDATE results SET value = ? WHERE key = ?", (b"\xff{not json", files[0]))
    conn.close()
    compute = Counting()
    with IncrementalEngine(compute, cache_dir=cache, jobs=1) as engine:
        report = engine.run(files)
    assert compute.calls == ["f0.txt"]
    assert report.results[files[0]] == {"name": "f0.txt", "lines": 1}


def test_dependents_are_recomputed_transitively(tmp_path: Path) -> None:
    """When c changes, b (depends on c) and a (depends on b) are recomputed; d is not."""
    paths = {name: write(tmp_path / f"{name}.txt", f"{name}\n") for name in "abcd"}
    deps = {"a.txt": [paths["b"]], "b.txt": [paths["c"]]}
    compute = Counting()
    engine = IncrementalEngine(
        compute, depends_on=lambda key, data, result: deps.get(Path(key).name, []), jobs=1
    )
    engine.run(paths.values())
    compute.calls.clear()
    write(Path(paths["c"]), "c changed\n")
    engine.run(paths.values())
    assert sorted(compute.calls) == ["a.txt", "b.txt", "c.txt"]


def test_dependency_outside_the_run_is_checked(tmp_path: Path) -> None:
    """A dependency that is not itself an input still triggers a recompute when it changes."""
    header = write(tmp_path / "header.h", "v1\n")
    main = write(tmp_path / "main.c", "#include header\n")
    compute = Counting()
    engine = IncrementalEngine(compute, depends_on=lambda k, d, r: [header], jobs=1)
    engine.run([main])
    engine.run([main])
    assert compute.calls == ["main.c"]
    write(Path(header), "v2 longer\n")
    engine.run([main])
    assert compute.calls == ["main.c", "main.c"]


def test_memory_cache_is_bounded_by_bytes(tmp_path: Path) -> None:
    """The in-memory results stay under max_memory_bytes; evicted ones come back from disk."""
    paths = [write(tmp_path / f"big{i}.txt", "y" * 2000) for i in range(20)]
    big = lambda key, data: data.decode()  # noqa: E731 - a 2 kB result per input
    compute_calls: list[str] = []

    def compute(key: str, data: bytes) -> str:
        compute_calls.append(key)
        return big(key, data)

    engine = IncrementalEngine(compute, cache_dir=tmp_path / "c", max_memory_bytes="10 KiB", jobs=1)
    report = engine.run(paths)
    assert len(report.results) == 20
    assert engine.memory_bytes <= 10 * 1024
    assert engine.stats.evictions > 0
    assert len(engine) < 20
    compute_calls.clear()
    again = engine.run(paths)
    assert compute_calls == []  # reloaded from sqlite, not recomputed
    assert again.results == report.results


def test_missing_input_is_reported_then_picked_up(tmp_path: Path) -> None:
    """A missing file is listed in errors (not results); once created it is computed."""
    path = tmp_path / "later.txt"
    engine = IncrementalEngine(Counting(), jobs=1)
    report = engine.run([str(path)])
    assert str(path) in report.errors
    assert report.results == {}
    with pytest.raises(OSError, match=r"later\.txt"):
        engine.get(path)
    path.write_text("now\n")
    assert engine.get(path) == {"name": "later.txt", "lines": 1}


def test_invalidate_forces_recompute(files: list[str], tmp_path: Path) -> None:
    """invalidate(key) recomputes one input; invalidate() recomputes all, also from disk."""
    compute = Counting()
    engine = IncrementalEngine(compute, cache_dir=tmp_path / "c", jobs=1)
    engine.run(files)
    engine.invalidate(files[0])
    compute.calls.clear()
    engine.run(files)
    assert compute.calls == ["f0.txt"]
    engine.invalidate()
    compute.calls.clear()
    engine.run(files)
    assert len(compute.calls) == 5


def test_process_pool_gives_the_same_results(tmp_path: Path) -> None:
    """With jobs=2 and enough inputs the work runs on a process pool with identical results."""
    paths = [write(tmp_path / f"p{i}.txt", "z\n" * i) for i in range(40)]
    inline = IncrementalEngine(count_lines, jobs=1).run(paths)
    pooled = IncrementalEngine(count_lines, jobs=2).run(paths)
    assert pooled.results == inline.results
    assert sorted(pooled.computed) == sorted(paths)


def test_pickle_codec_round_trips_any_picklable(tmp_path: Path, files: list[str]) -> None:
    """PICKLE_CODEC persists non-JSON results (tuples, sets) exactly."""

    def compute(key: str, data: bytes) -> tuple[str, frozenset[int]]:
        return Path(key).name, frozenset({len(data)})

    with IncrementalEngine(compute, cache_dir=tmp_path / "c", codec=PICKLE_CODEC, jobs=1) as e:
        first = e.run(files).results
    with IncrementalEngine(compute, cache_dir=tmp_path / "c", codec=PICKLE_CODEC, jobs=1) as e:
        second = e.run(files)
    assert second.results == first
    assert second.computed == []


def test_bad_arguments_raise_configuration_errors() -> None:
    """A zero jobs count and a negative or unparsable memory bound are rejected by name."""
    with pytest.raises(ConfigurationError, match="jobs=0"):
        IncrementalEngine(count_lines, jobs=0)
    with pytest.raises(ConfigurationError, match="max_memory_bytes"):
        IncrementalEngine(count_lines, max_memory_bytes=-1)
    with pytest.raises(ConfigurationError):
        IncrementalEngine(count_lines, max_memory_bytes="lots")


_WORKER = textwrap.dedent(
    """
    import sys, json
    from pathlib import Path
    sys.path.insert(0, sys.argv[3])
    from memwarden.incremental import IncrementalEngine
    from tests.unit.test_incremental import count_lines
    files = sorted(str(p) for p in Path(sys.argv[1]).glob("*.txt"))
    me = int(sys.argv[4])
    for round_ in range(6):
        if round_ == 3:  # every process rewrites some files half-way
            for p in files[me::4][:5]:
                Path(p).write_text("w\\n" * (me + round_))
        with IncrementalEngine(count_lines, cache_dir=sys.argv[2], jobs=1) as engine:
            report = engine.run(files)
            assert len(report.results) + len(report.errors) == len(files), report.errors
    print("ok")
    """
)


@pytest.mark.slow
def test_concurrent_processes_share_a_cache_without_corruption(tmp_path: Path) -> None:
    """Four real processes reading and writing one cache leave it consistent and reusable."""
    data = tmp_path / "data"
    data.mkdir()
    for i in range(60):
        write(data / f"c{i:02}.txt", "q\n" * (i % 7))
    cache = tmp_path / "cache"
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": str(Path(root) / "src")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(data), str(cache), root, str(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for n in range(4)
    ]
    try:
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert out.strip() == "ok"
    with sqlite3.connect(cache / DB_NAME) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    paths = sorted(str(p) for p in data.glob("*.txt"))
    compute = Counting()
    with IncrementalEngine(compute, cache_dir=cache, jobs=1) as engine:
        report = engine.run(paths)
    truth = {p: count_lines(p, Path(p).read_bytes()) for p in paths}
    # Whatever the interleaving, what the cache gives is right for the files as they are now
    # (a row persisted from content that was rewritten since fails its digest check).
    assert report.results == truth
    assert len(compute.calls) < len(paths)  # most rows were reused
    compute.calls.clear()
    with IncrementalEngine(compute, cache_dir=cache, jobs=1) as engine:
        assert engine.run(paths).results == truth
    assert compute.calls == []


class EngineAgainstTruth(RuleBasedStateMachine):
    """Random edits (same-size, same-mtime, deletions) never make the engine serve stale results."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="mw-engine-"))
        self.paths = [str(self.dir / f"in{i}.txt") for i in range(4)]
        self.cache = self.dir / "cache"
        self.engine = IncrementalEngine(count_lines, cache_dir=self.cache, jobs=1)

    @rule(i=st.integers(0, 3), lines=st.integers(0, 5), keep_stat=st.booleans())
    def edit(self, i: int, lines: int, keep_stat: bool) -> None:
        path = Path(self.paths[i])
        old = path.stat() if path.exists() else None
        path.write_text("ab\n" * lines + "c" * (5 - lines) * 3)  # the same size every time
        if keep_stat and old is not None:
            os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns))

    @rule(i=st.integers(0, 3))
    def delete(self, i: int) -> None:
        Path(self.paths[i]).unlink(missing_ok=True)

    @rule()
    def reopen(self) -> None:
        """A new process: a fresh engine on the same cache directory."""
        self.engine.close()
        self.engine = IncrementalEngine(count_lines, cache_dir=self.cache, jobs=1)

    @invariant()
    def results_match_the_files(self) -> None:
        report = self.engine.run(self.paths)
        for key in self.paths:
            if Path(key).exists():
                assert report.results[key] == count_lines(key, Path(key).read_bytes())
            else:
                assert key in report.errors

    def teardown(self) -> None:
        self.engine.close()
        shutil.rmtree(self.dir, ignore_errors=True)


EngineAgainstTruth.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_engine_never_serves_stale_results = EngineAgainstTruth.TestCase


def test_shrink_drops_least_recently_used_results(tmp_path: Path) -> None:
    """shrink(0.5) releases about half the in-memory bytes, oldest first; results stay correct."""
    paths = [write(tmp_path / f"s{i}.txt", "s\n" * 50) for i in range(10)]
    engine = IncrementalEngine(count_lines, cache_dir=tmp_path / "c", jobs=1, register=False)
    engine.run(paths)
    before = engine.memory_bytes
    released = engine.shrink(0.5)
    assert 0 < released <= before
    assert engine.memory_bytes == before - released
    assert engine.memory_bytes <= before / 2
    assert len(engine) < 10
    assert engine.run(paths).computed == []  # evicted results come back from sqlite
    with pytest.raises(ValueError, match="fraction") as info:
        engine.shrink(2.0)
    assert not isinstance(info.value, ConfigurationError)  # plain, as caches' and pools'


def test_governor_none_registers_nothing_and_a_given_governor_is_used() -> None:
    """governor=None leaves the governor alone; governor=g registers with g only."""
    from memwarden import pressure

    pressure._reset_default_for_tests()
    try:
        mine = pressure.Governor()
        quiet = IncrementalEngine(count_lines, jobs=1, governor=None, name="quiet-engine")
        local = IncrementalEngine(count_lines, jobs=1, governor=mine, name="local-engine")
        assert "quiet-engine" not in [r.name for r in pressure.governor().relievers()]
        assert "local-engine" not in [r.name for r in pressure.governor().relievers()]
        assert "local-engine" in [r.name for r in mine.relievers()]
        with pytest.raises(TypeError, match="governor="):
            IncrementalEngine(count_lines, jobs=1, governor="yes")  # type: ignore[arg-type]
        quiet.close()
        local.close()
    finally:
        pressure._reset_default_for_tests()


def test_engine_registers_with_the_governor_weakly() -> None:
    """A registered engine is relieved by the governor and its registration ends on close()."""
    from memwarden import pressure

    pressure._reset_default_for_tests()
    try:
        engine = IncrementalEngine(count_lines, jobs=1, name="test-engine")
        names = [r.name for r in pressure.governor().relievers()]
        assert "test-engine" in names
        engine.close()
        assert "test-engine" not in [r.name for r in pressure.governor().relievers()]
        dropped = IncrementalEngine(count_lines, jobs=1, name="dropped-engine")
        (registration,) = [r for r in pressure.governor().relievers() if r.name == "dropped-engine"]
        del dropped
        gc.collect()
        assert not registration.alive  # the governor did not keep the engine alive
    finally:
        pressure._reset_default_for_tests()


def test_rows_of_deleted_files_are_pruned(tmp_path: Path) -> None:
    """A large run deletes cached rows of files that no longer exist, keeping the cache bounded."""
    data = tmp_path / "d"
    data.mkdir()
    paths = [write(data / f"r{i:03}.txt", "r\n") for i in range(520)]
    cache = tmp_path / "c"
    with IncrementalEngine(count_lines, cache_dir=cache, jobs=1) as engine:
        engine.run(paths)
    for path in paths[:30]:
        Path(path).unlink()
    survivors = paths[30:] + [write(data / f"n{i}.txt", "n\n") for i in range(20)]
    with IncrementalEngine(count_lines, cache_dir=cache, jobs=1) as engine:
        engine.run(survivors)  # > 500 inputs: the bulk load finds the orphans
    with sqlite3.connect(cache / DB_NAME) as conn:
        keys = {key for (key,) in conn.execute("SELECT key FROM results")}
    conn.close()
    assert keys == set(survivors)


def test_unusable_cache_directory_degrades_to_memory(tmp_path: Path, files: list[str]) -> None:
    """A cache_dir that is a file (or unwritable) logs a warning and the engine still computes."""
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    engine = IncrementalEngine(count_lines, cache_dir=not_a_dir / "cache", jobs=1)
    report = engine.run(files)
    assert len(report.results) == 5
    assert engine.run(files).computed == []  # the in-memory state still works
