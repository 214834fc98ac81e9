"""The safe-file helper: exclusive creation, no planted symlink followed, shared dirs checked."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from memwarden._files import (
    check_owned_file,
    create_new,
    describe_os_error,
    open_output,
    safe_directory,
    write_output,
)
from memwarden.exceptions import UnsafePathError

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
OTHER_UID = 54321


def test_create_new_refuses_a_planted_symlink(tmp_path: Path) -> None:
    """A symlink planted at the name is not followed: the victim file stays intact."""
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "out").symlink_to(victim)
    with pytest.raises(FileExistsError):
        create_new(tmp_path / "out")
    assert victim.read_text() == "precious"


def test_create_new_refuses_an_existing_file(tmp_path: Path) -> None:
    """An existing file is never truncated by a name memwarden picked itself."""
    (tmp_path / "out").write_text("keep")
    with pytest.raises(FileExistsError):
        create_new(tmp_path / "out")
    assert (tmp_path / "out").read_text() == "keep"


def test_create_new_writes_a_new_file(tmp_path: Path) -> None:
    """A new name is created with the requested mode."""
    fd = create_new(tmp_path / "new", mode=0o600)
    os.write(fd, b"x")
    os.close(fd)
    assert (tmp_path / "new").read_bytes() == b"x"
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) & 0o077 == 0


def test_open_output_truncates_a_regular_file(tmp_path: Path) -> None:
    """A user-named existing regular file is replaced."""
    (tmp_path / "o").write_text("old contents")
    fd = open_output(tmp_path / "o")
    os.write(fd, b"new")
    os.close(fd)
    assert (tmp_path / "o").read_text() == "new"


@needs_root
def test_open_output_refuses_a_foreign_symlink(tmp_path: Path) -> None:
    """A symlink owned by another user is refused, with the path named."""
    victim = tmp_path / "victim"
    victim.write_text("precious")
    link = tmp_path / "o"
    link.symlink_to(victim)
    os.lchown(link, OTHER_UID, OTHER_UID)
    with pytest.raises(UnsafePathError, match="symlink owned by another user"):
        open_output(link)
    with pytest.raises(UnsafePathError):
        write_output(link, "x")
    assert victim.read_text() == "precious"


def test_open_output_writes_a_device_in_place() -> None:
    """A device the user named (/dev/null) is opened, not replaced."""
    fd = open_output("/dev/null")
    os.write(fd, b"x")
    os.close(fd)
    assert stat.S_ISCHR(Path("/dev/null").stat().st_mode)


def test_write_output_replaces_a_symlink_instead_of_following_it(tmp_path: Path) -> None:
    """The atomic rename replaces the link itself; its target is untouched."""
    victim = tmp_path / "victim"
    victim.write_text("precious")
    link = tmp_path / "report.html"
    link.symlink_to(victim)
    write_output(link, "<html>")
    assert victim.read_text() == "precious"
    assert not link.is_symlink()
    assert link.read_text() == "<html>"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "victim"]


def test_write_output_missing_directory_is_described(tmp_path: Path) -> None:
    """A missing directory raises FileNotFoundError that describe_os_error words clearly."""
    target = tmp_path / "nope" / "r.html"
    with pytest.raises(FileNotFoundError) as info:
        write_output(target, "x")
    assert describe_os_error(info.value, target) == (
        f"cannot write {target}: directory {target.parent} does not exist"
    )


def test_safe_directory_refuses_a_symlink(tmp_path: Path) -> None:
    """A cache directory that is a symlink (a cloned repository can contain one) is refused."""
    (tmp_path / "real").mkdir()
    (tmp_path / "cache").symlink_to(tmp_path / "real")
    with pytest.raises(UnsafePathError, match=r"lint cache .* is a symlink"):
        safe_directory(tmp_path / "cache", purpose="lint cache")


def test_safe_directory_refuses_world_writable(tmp_path: Path) -> None:
    """A directory anyone can write to (no sticky bit) is refused; with the sticky bit it passes."""
    d = tmp_path / "shared"
    d.mkdir()
    d.chmod(0o777)
    with pytest.raises(UnsafePathError, match="writable by other users"):
        safe_directory(d, purpose="metrics directory")
    d.chmod(0o1777)
    assert safe_directory(d, purpose="metrics directory") == d


@needs_root
def test_safe_directory_refuses_another_users_directory(tmp_path: Path) -> None:
    """A shared directory owned by someone else is refused, naming both uids."""
    d = tmp_path / "metrics"
    d.mkdir()
    os.chown(d, OTHER_UID, OTHER_UID)
    with pytest.raises(UnsafePathError, match=f"owned by uid {OTHER_UID}"):
        safe_directory(d, purpose="metrics directory")


def test_safe_directory_creates_private(tmp_path: Path) -> None:
    """create=True makes the directory (and parents) with the private mode."""
    d = safe_directory(tmp_path / "a" / "b", purpose="cache", create=True)
    assert d.is_dir()
    assert stat.S_IMODE(d.stat().st_mode) & 0o077 == 0


def test_check_owned_file(tmp_path: Path) -> None:
    """A missing file passes; a symlink or a FIFO is refused."""
    assert check_owned_file(tmp_path / "db", purpose="cache") == tmp_path / "db"
    (tmp_path / "link").symlink_to(tmp_path / "db")
    with pytest.raises(UnsafePathError, match="symlink"):
        check_owned_file(tmp_path / "link", purpose="cache")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(UnsafePathError, match="not a regular file"):
        check_owned_file(tmp_path / "fifo", purpose="cache")


@needs_root
def test_a_foreign_file_planted_in_a_sticky_directory_is_refused(tmp_path: Path) -> None:
    """In a /tmp-like directory, a file another user created in advance is not written."""
    shared = tmp_path / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    planted = shared / "report.html"
    planted.write_text("trap")
    os.chown(planted, OTHER_UID, OTHER_UID)
    with pytest.raises(UnsafePathError, match="owned by another user"):
        open_output(planted)
    with pytest.raises(UnsafePathError, match="owned by another user"):
        write_output(planted, "data")
    assert planted.read_text() == "trap"
    mine = shared / "mine.html"
    write_output(mine, "ok")  # the user's own files there are fine
    assert mine.read_text() == "ok"
