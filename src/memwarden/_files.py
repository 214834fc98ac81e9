"""Create and replace the files memwarden writes without following planted symlinks.

Every file memwarden writes goes through this module, with one of three policies:

- :func:`create_new` for files memwarden names itself (the default trace name, dumps,
  temporary files): created exclusively (``O_CREAT | O_EXCL | O_NOFOLLOW``), so a
  symlink or file planted at that name in a shared directory is never followed,
  truncated or overwritten.
- :func:`open_output` / :func:`write_output` for paths the user named (``-o``,
  ``--html``, ``--output``): an existing regular file is replaced (atomically for
  whole-file writes), a device or FIFO the user named (``/dev/stdout``) is written in
  place, and a symlink owned by someone else is refused, as the kernel's
  ``fs.protected_symlinks`` would in a sticky directory (and, as
  ``fs.protected_regular``, a regular file another user planted in a
  world-writable sticky directory such as ``/tmp``).
- :func:`safe_directory` / :func:`check_owned_file` for directories and files memwarden
  shares or reuses (caches, ``PROMETHEUS_MULTIPROC_DIR``): refused when they are
  symlinks, owned by another user, or writable by others without the sticky bit.

Refusals raise :class:`~memwarden.exceptions.UnsafePathError` (an ``OSError``) naming
the path and the reason; other ``OSError`` s (missing directory, permission, full
disk) pass through with their ``errno`` and ``filename`` so callers can word them.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from memwarden.exceptions import UnsafePathError

__all__ = [
    "check_owned_file",
    "create_new",
    "describe_os_error",
    "open_output",
    "safe_directory",
    "write_output",
]

# O_NOFOLLOW is POSIX; where it is missing (Windows) exclusive creation alone still
# refuses an existing name, symlink or not.
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def _euid() -> int:
    return os.geteuid() if hasattr(os, "geteuid") else -1


def create_new(path: str | os.PathLike[str], *, mode: int = 0o644, append: bool = False) -> int:
    """Create ``path`` exclusively and return a write-only descriptor.

    Never follows a symlink and never opens an existing file: a name planted in
    advance (by another user, in a shared directory) fails instead of being written.

    Args:
        path: the file to create.
        mode: permission bits (before the umask).
        append: open with ``O_APPEND`` (several writers appending whole lines).

    Raises:
        FileExistsError: something (a file, a symlink, a FIFO) already has that name.
        OSError: the directory is missing, not writable, the disk is full, ...
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
    if append:
        flags |= os.O_APPEND
    return os.open(path, flags, mode)


def _refuse_foreign_symlink(path: Path, st: os.stat_result) -> None:
    euid = _euid()
    if euid >= 0 and st.st_uid not in (euid, 0):
        raise UnsafePathError(
            f"{path}: refusing to write through a symlink owned by another user "
            f"(uid {st.st_uid}); remove it or name the target directly",
            path=str(path),
        )


def _refuse_foreign_in_sticky_dir(path: Path, st: os.stat_result) -> None:
    # As the kernel's fs.protected_regular: in a world-writable sticky directory (/tmp),
    # a file someone else created in advance is a trap, not the user's output.
    euid = _euid()
    if euid < 0 or st.st_uid in (euid, 0):
        return
    try:
        parent = path.parent.stat()
    except OSError:
        return
    if parent.st_mode & stat.S_ISVTX and parent.st_mode & stat.S_IWOTH:
        raise UnsafePathError(
            f"{path}: refusing to write a file owned by another user (uid {st.st_uid}) in "
            f"the shared directory {path.parent}; remove it or choose another name",
            path=str(path),
        )


def open_output(path: str | os.PathLike[str], *, mode: int = 0o644, append: bool = False) -> int:
    """Open a path the user named for writing, replacing a regular file's contents.

    A new name is created exclusively. An existing regular file is opened without
    following a symlink and truncated; a device or FIFO (``/dev/stdout``,
    ``/dev/full``) is opened as it is; a symlink is followed only when it belongs to
    the user or root.

    Raises:
        UnsafePathError: ``path`` is a symlink owned by another user, or a directory.
        OSError: as :func:`os.open` (missing directory, permission, ...).
    """
    p = Path(path)
    try:
        return create_new(p, mode=mode, append=append)
    except FileExistsError:
        pass
    st = os.lstat(p)
    flags = os.O_WRONLY | _CLOEXEC | (os.O_APPEND if append else 0)
    if stat.S_ISLNK(st.st_mode):
        _refuse_foreign_symlink(p, st)
        fd = os.open(p, flags)
    elif stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(f"{p}: is a directory, not a file", path=str(p))
    else:
        if stat.S_ISREG(st.st_mode):
            _refuse_foreign_in_sticky_dir(p, st)
        fd = os.open(p, flags | _NOFOLLOW)
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.ftruncate(fd, 0)
    except OSError:
        os.close(fd)
        raise
    return fd


def write_output(path: str | os.PathLike[str], data: bytes | str, *, mode: int = 0o644) -> None:
    """Write a whole file the user named (a report, a SARIF file, JSON results).

    A new or regular file is written to a temporary file created exclusively beside
    it and renamed over it (readers never see half a file; a symlink at ``path`` is
    replaced, not followed). A device or FIFO is written in place.

    Raises:
        UnsafePathError: as :func:`open_output`.
        OSError: the directory is missing or not writable, the disk is full, ...
    """
    p = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        st: os.stat_result | None = os.lstat(p)
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISREG(st.st_mode):
        _refuse_foreign_in_sticky_dir(p, st)
    if st is not None and stat.S_ISLNK(st.st_mode):
        _refuse_foreign_symlink(p, st)
        with contextlib.suppress(OSError):
            st = p.stat()
    if st is not None and not stat.S_ISREG(st.st_mode) and not stat.S_ISLNK(st.st_mode):
        fd = open_output(p, mode=mode)
        try:
            _write_all(fd, payload)
        finally:
            os.close(fd)
        return
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        # A stale temporary of ours (same pid, crashed) would block the exclusive create;
        # unlink removes a planted symlink itself, never its target.
        tmp.unlink()
    fd = create_new(tmp, mode=mode)
    try:
        try:
            _write_all(fd, payload)
        finally:
            os.close(fd)
        tmp.replace(p)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _write_all(fd: int, payload: bytes) -> None:
    view = memoryview(payload)
    while view:
        view = view[os.write(fd, view) :]


def safe_directory(
    path: str | os.PathLike[str], *, purpose: str, create: bool = False, mode: int = 0o700
) -> Path:
    """Check (or create) a directory memwarden keeps files in, and return it.

    Args:
        path: the directory.
        purpose: what it is for, named in errors (``"lint cache"``).
        create: create it (and missing parents) with ``mode`` when absent.
        mode: permission bits of a created directory.

    Raises:
        UnsafePathError: the path is a symlink, not a directory, owned by another
            user, or writable by group/others without the sticky bit.
        OSError: it cannot be created.
    """
    p = Path(path)
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        if not create:
            raise
        p.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # a racing creator is checked below
            p.mkdir(mode=mode)
        st = os.lstat(p)
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePathError(
            f"{purpose} {p}: is a symlink; refusing to follow it (remove it, or point "
            f"memwarden at the real directory)",
            path=str(p),
        )
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(f"{purpose} {p}: is not a directory", path=str(p))
    euid = _euid()
    if euid >= 0 and st.st_uid != euid:
        raise UnsafePathError(
            f"{purpose} {p}: owned by uid {st.st_uid}, not by this user (uid {euid}); "
            f"refusing to share it",
            path=str(p),
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
        raise UnsafePathError(
            f"{purpose} {p}: writable by other users (mode {stat.S_IMODE(st.st_mode):o}); "
            f"chmod go-w it",
            path=str(p),
        )
    return p


def check_owned_file(path: str | os.PathLike[str], *, purpose: str) -> Path:
    """Check that an existing file memwarden reuses is a regular file of this user.

    A missing file is fine (it will be created).

    Raises:
        UnsafePathError: it is a symlink, not a regular file, or owned by another user.
    """
    p = Path(path)
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return p
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePathError(f"{purpose} {p}: is a symlink; refusing to follow it", path=str(p))
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePathError(f"{purpose} {p}: is not a regular file", path=str(p))
    euid = _euid()
    if euid >= 0 and st.st_uid != euid:
        raise UnsafePathError(
            f"{purpose} {p}: owned by uid {st.st_uid}, not by this user (uid {euid})",
            path=str(p),
        )
    return p


def describe_os_error(exc: OSError, path: str | os.PathLike[str]) -> str:
    """A one-line reason for a failed write of ``path`` that blames the path, not a program.

    ``"cannot write /x/t.jsonl: directory /x does not exist"``.
    """
    p = Path(path)
    if isinstance(exc, UnsafePathError):
        return str(exc)
    import errno

    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOENT and not p.parent.is_dir():
        reason = f"directory {p.parent} does not exist"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        reason = f"permission denied ({p.parent} or the file is not writable)"
    elif exc.errno == errno.EROFS:
        reason = "read-only file system"
    elif exc.errno == errno.ENOSPC:
        reason = "no space left on device"
    elif exc.errno == errno.EEXIST:
        reason = "a file of that name already exists"
    return f"cannot write {p}: {reason}"
