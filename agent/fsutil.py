"""Crash-safe file writes: a file is replaced whole or not at all.

:func:`atomic_write` is what the agent uses for every file it must not leave
half written (its identity, the sync state, a job's key, the stores it
installs into); :func:`fsync_dir` makes a rename in a directory survive a
crash. The agent never imports the collector, so these are its own.
"""
from __future__ import annotations

import os
import secrets
import stat
from typing import Union

StrPath = Union[str, "os.PathLike[str]"]

TEMP_SUFFIX = ".certfleet-tmp"

__all__ = ["OwnerError", "TEMP_SUFFIX", "TempFileError", "atomic_write", "fsync_dir"]


class TempFileError(OSError):
    """The temporary file beside the target could not be created (nothing was written)."""


class OwnerError(PermissionError):
    """The new file could not be given the owner and group of ``like`` (``uid``, ``gid``)."""

    uid: int = -1
    gid: int = -1


def fsync_dir(path: StrPath) -> None:
    """fsync a directory so a rename in it survives a crash (best effort)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(
    path: StrPath,
    data: bytes,
    mode: int,
    *,
    like: StrPath | os.stat_result | tuple[int, int, int] | None = None,
) -> None:
    """Replace ``path`` with ``data``: readers see the old content or the new, never a part.

    A temporary file is created (``O_EXCL``) in the same directory with the
    final mode from the start, so it is never more open than the file it
    becomes; it is written, fsynced and renamed over ``path``, then the
    directory is fsynced. ``path`` itself is replaced (a symbolic link too).

    ``like`` gives the owner, group and mode to keep instead of the process's
    and ``mode``: an existing file, a stat result, or ``(uid, gid, mode)``. A
    ``like`` file that does not exist is ignored. While owner and group are
    not yet set, the temporary file is readable by its creator only.

    Raises :class:`OSError`: :class:`TempFileError` when the temporary file
    cannot be created, :class:`OwnerError` when the owner and group of
    ``like`` cannot be set (the process is neither root nor their owner).
    The temporary file is never left behind.
    """
    keep = _owner_and_mode(like)
    if keep is not None:
        mode = keep[2]
    directory = os.path.dirname(os.fspath(path)) or "."
    fd, tmp = _create_temp(directory, os.path.basename(os.fspath(path)), mode if keep is None else mode & 0o700)
    try:
        with os.fdopen(fd, "wb") as f:
            if keep is not None and hasattr(os, "fchown"):
                st = os.fstat(f.fileno())
                if (st.st_uid, st.st_gid) != keep[:2]:
                    try:
                        os.fchown(f.fileno(), keep[0], keep[1])
                    except PermissionError as e:
                        err = OwnerError(e.errno, e.strerror)
                        err.uid, err.gid = keep[0], keep[1]
                        raise err from None
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), mode)   # exact, whatever the umask (and after fchown, which clears set-id bits)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(directory)


def _owner_and_mode(like: StrPath | os.stat_result | tuple[int, int, int] | None) -> tuple[int, int, int] | None:
    if like is None:
        return None
    if isinstance(like, tuple) and not isinstance(like, os.stat_result):
        return like
    if not isinstance(like, os.stat_result):
        try:
            like = os.stat(like)
        except FileNotFoundError:
            return None
    return (like.st_uid, like.st_gid, stat.S_IMODE(like.st_mode))


def _create_temp(directory: str, name: str, mode: int) -> tuple[int, str]:
    """A new file ``.<name>.<random>.certfleet-tmp`` in ``directory``, opened for writing, created with ``mode``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    flags |= getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = os.path.join(directory, f".{name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
        try:
            return os.open(tmp, flags, mode), tmp
        except FileExistsError:
            continue
        except OSError as e:
            raise TempFileError(e.errno, e.strerror, tmp) from None
    raise TempFileError(f"no free temporary file name in {directory}")
