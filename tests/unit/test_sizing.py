"""sizeof: deep sizes with cycles, shared objects, containers, __slots__, numpy, bytes-likes."""

from __future__ import annotations

import array
import mmap
import sys
from pathlib import Path

import pytest

from memwarden.sizing import sizeof


class _Plain:
    def __init__(self, payload: object) -> None:
        self.payload = payload


class _Slotted:
    __slots__ = ("a", "b")

    def __init__(self, a: object, b: object) -> None:
        self.a = a
        self.b = b


def test_shallow_is_sys_getsizeof() -> None:
    """deep=False returns exactly sys.getsizeof for ordinary objects."""
    data = [b"x" * 1000, "y" * 500]
    assert sizeof(data, deep=False) == sys.getsizeof(data)


def test_deep_counts_the_elements_of_a_list() -> None:
    """A list's deep size is the list plus each distinct element."""
    a, b = b"a" * 1000, b"b" * 2000
    data = [a, b]
    assert sizeof(data) == sys.getsizeof(data) + sys.getsizeof(a) + sys.getsizeof(b)


def test_shared_objects_are_counted_once() -> None:
    """A list holding the same buffer 100 times counts the buffer once."""
    blob = b"z" * 10_000
    data = [blob] * 100
    assert sizeof(data) == sys.getsizeof(data) + sys.getsizeof(blob)


def test_cycles_terminate_and_count_each_object_once() -> None:
    """A self-referencing list and a two-object cycle are measured without looping."""
    loop: list[object] = []
    loop.append(loop)
    assert sizeof(loop) == sys.getsizeof(loop)
    a: dict[str, object] = {}
    b: dict[str, object] = {"a": a}
    a["b"] = b
    keys = sys.getsizeof("a") + sys.getsizeof("b")
    assert sizeof(a) == sys.getsizeof(a) + sys.getsizeof(b) + keys


def test_dict_keys_are_counted_even_for_string_keys() -> None:
    """String keys, which the garbage collector does not visit, are part of a dict's size."""
    key = "k" * 5000
    d = {key: None}
    assert sizeof(d) >= sys.getsizeof(d) + sys.getsizeof(key)


def test_instances_count_their_attributes_and_not_their_class() -> None:
    """An instance's size includes its attribute values but not its class object."""
    blob = bytearray(50_000)
    obj = _Plain(blob)
    size = sizeof(obj)
    assert size >= sys.getsizeof(obj) + sys.getsizeof(blob)
    assert size < sys.getsizeof(obj) + sys.getsizeof(blob) + sizeof(_Plain)


def test_slots_instances_count_slot_values() -> None:
    """A __slots__ instance's deep size includes both slot values."""
    a, b = b"q" * 3000, b"r" * 4000
    obj = _Slotted(a, b)
    assert sizeof(obj) == sys.getsizeof(obj) + sys.getsizeof(a) + sys.getsizeof(b)


def test_singletons_and_program_structure_are_not_counted() -> None:
    """None, True, functions, modules and classes inside a container add nothing."""
    data = [None, True, False, Ellipsis, sys, _Plain, test_shallow_is_sys_getsizeof]
    assert sizeof(data) == sys.getsizeof(data)
    assert sizeof(None) == sys.getsizeof(None)  # the root itself is always measured


def test_root_class_and_module_are_measured() -> None:
    """Asking for the size of a class or a module measures it rather than returning 0."""
    assert sizeof(_Plain) > sys.getsizeof(_Plain) // 2
    assert sizeof(_Plain) >= sys.getsizeof(_Plain)


def test_bytes_likes() -> None:
    """bytearray, array.array and memoryview count their buffers; mmap counts its length."""
    ba = bytearray(100_000)
    assert sizeof(ba) >= 100_000
    arr = array.array("d", range(10_000))
    assert sizeof(arr) >= 80_000
    view = memoryview(ba)
    assert sizeof(view) >= 100_000  # through the exporting object
    assert sizeof(view, deep=False) < 1000
    with mmap.mmap(-1, 1 << 20) as m:
        assert sizeof(m) >= 1 << 20
        assert sizeof(m, deep=False) >= 1 << 20
    assert sizeof(m) < 1000  # closed: nothing mapped any more


def test_numpy_arrays_views_and_object_arrays() -> None:
    """An owning array counts nbytes; a view counts its base once; object arrays their items."""
    np = pytest.importorskip("numpy")
    owner = np.zeros(250_000)  # 2 MB
    assert sizeof(owner) >= owner.nbytes
    view = owner[10:]
    assert sizeof(view, deep=False) < 1000
    assert sizeof(view) >= owner.nbytes
    both = [owner, view, owner[::2]]
    assert owner.nbytes <= sizeof(both) < 2 * owner.nbytes
    big = b"w" * 100_000
    objs = np.array([big, None], dtype=object)
    assert sizeof(objs) >= sys.getsizeof(big)


def test_broken_sizeof_does_not_stop_the_measurement() -> None:
    """An object whose __sizeof__ raises counts as 0; its neighbours are still counted."""

    class Broken:
        def __sizeof__(self) -> int:
            raise RuntimeError("no size")

    blob = b"b" * 5000
    data = [Broken(), blob]
    assert sizeof(data) >= sys.getsizeof(data) + sys.getsizeof(blob)


def test_deep_nesting_does_not_recurse() -> None:
    """A 100 000-deep nested list is measured without RecursionError (the walk is iterative)."""
    root: list[object] = []
    node = root
    for _ in range(100_000):
        child: list[object] = []
        node.append(child)
        node = child
    assert sizeof(root) >= 100_000 * sys.getsizeof([])


def test_agrees_with_pympler_within_a_margin() -> None:
    """On plain containers the deep size is within 15% of pympler.asizeof (which pads to 8)."""
    asizeof = pytest.importorskip("pympler.asizeof").asizeof
    data = {f"key{i}": [i * 1000, f"value{i}", (i, float(i))] for i in range(2000)}
    ours, theirs = sizeof(data), asizeof(data)
    assert 0.85 * theirs <= ours <= 1.15 * theirs


def test_importing_sizing_and_cache_imports_no_numpy() -> None:
    """sizeof recognises numpy arrays by type name, so importing it never imports numpy."""
    import subprocess

    code = (
        "import sys, memwarden.sizing, memwarden.cache;"
        "memwarden.sizing.sizeof([1, {'a': b'x'}]);"
        "print(sorted(m for m in ('numpy', 'psutil', 'pympler') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_numpy_subclasses_and_memmaps(tmp_path: Path) -> None:
    """ndarray subclasses are handled like arrays: a memmap counts the mapping behind it."""
    np = pytest.importorskip("numpy")

    class Tagged(np.ndarray):  # type: ignore[misc]
        pass

    owner = np.zeros(100_000)
    tagged = owner.view(Tagged)
    assert sizeof(tagged) >= owner.nbytes
    path = tmp_path / "data.bin"
    mm = np.memmap(path, dtype="float64", mode="w+", shape=(131_072,))  # 1 MiB
    try:
        assert sizeof(mm, deep=False) < 10_000
        assert sizeof(mm) >= 1 << 20
    finally:
        del mm
