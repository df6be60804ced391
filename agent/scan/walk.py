"""Walk a store's globs: the candidate files, with their stat results, and the directories that could not be read.

Symbolic links
    Followed when the store's ``follow_symlinks`` is true (the default), else
    skipped. A directory link that leads back to one of its ancestors is a
    ``symlink_loop`` problem and is not entered; a directory reached twice by
    other links is walked once. A glob that matches nothing, or whose base
    directory does not exist, is not a problem (a fleet-wide config may name
    services a host does not run).

Results come in batches (a generator round trip per file would cost more than the
stat): each item is ``(path, literal, stat result or OSError)`` or a
:class:`~agent.inventory.ScanProblem` for a directory.
"""
from __future__ import annotations

import errno
import logging
import os
import stat
from typing import Iterator, Union

from agent.config import StoreConfig
from agent.inventory import ScanProblem
from agent.scan.globs import Excludes, GlobPattern, GlobState

log = logging.getLogger(__name__)

__all__ = ["Candidate", "StatOrError", "candidates", "dir_problem"]

StatOrError = Union[os.stat_result, OSError]
Candidate = Union[tuple[str, bool, StatOrError], ScanProblem]
_BATCH = 512          # walk results handed over per batch
_SCANDIR_FD = os.scandir in os.supports_fd and os.stat in os.supports_dir_fd
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


def candidates(store: StoreConfig, globs: tuple[GlobPattern, ...], excludes: Excludes) -> Iterator[list[Candidate]]:
    """Batches of ``(path, literal, stat result or OSError)`` for paths matching the store's globs,
    and walk problems (batches spare a generator round trip per file)."""
    for g in globs:
        if g.literal:
            if not excludes(os.path.basename(g.base), g.base):
                try:
                    st: StatOrError = os.stat(g.base) if store.follow_symlinks else os.lstat(g.base)
                except OSError as e:
                    st = e
                yield [(g.base, True, st)]
        else:
            yield from _walk(store, g, excludes)


def _walk(store: StoreConfig, g: GlobPattern, excludes: Excludes) -> Iterator[list[Candidate]]:
    follow = store.follow_symlinks
    guess = store.type
    has_excludes = excludes.active
    try:
        st = os.stat(g.base)
    except FileNotFoundError:
        log.debug("store %r: %s does not exist; nothing matches %s", store.name, g.base, g.pattern)
        return
    except OSError as e:
        yield [dir_problem(guess, g.base, e)]
        return
    if not stat.S_ISDIR(st.st_mode):
        log.debug("store %r: %s is not a directory; nothing matches %s", store.name, g.base, g.pattern)
        return
    visited: set[tuple[int, int]] = {(st.st_dev, st.st_ino)}
    # stack of (directory, matching state, ancestors' (dev, ino))
    stack: list[tuple[str, GlobState, frozenset[tuple[int, int]]]] = [
        (g.base, g.start(), frozenset(visited))
    ]
    sep = os.sep
    while stack:
        dirpath, state, ancestors = stack.pop()
        prefix = dirpath if dirpath.endswith(sep) else dirpath + sep
        dfd = -1
        try:
            if _SCANDIR_FD:
                # Entries of a directory opened by descriptor are stat'ed relative to it
                # (fstatat), which spares the kernel the walk down the whole path.
                dfd = os.open(dirpath, _DIR_FLAGS)
                it = os.scandir(dfd)
            else:
                it = os.scandir(dirpath)
        except FileNotFoundError:
            if dfd >= 0:
                os.close(dfd)
            continue                  # removed while we walked
        except OSError as e:
            if dfd >= 0:
                os.close(dfd)
            yield [dir_problem(guess, dirpath, e)]
            continue
        matches_file = state.fast_match
        subdirs = []
        batch: list[Candidate] = []
        append = batch.append
        try:
            with it:
                for entry in it:
                    name = entry.name
                    try:
                        is_dir = entry.is_dir(follow_symlinks=follow)
                    except OSError:
                        is_dir = False       # a looping link: reported as a file below
                    if is_dir:
                        subdirs.append(entry)
                    elif matches_file(name):
                        if not follow and entry.is_symlink():
                            continue
                        path = prefix + name
                        if has_excludes and excludes(name, path):
                            continue
                        try:
                            fst: StatOrError = entry.stat(follow_symlinks=follow)
                        except OSError as e:
                            fst = e
                        append((path, False, fst))
                        if len(batch) >= _BATCH:
                            yield batch
                            batch = []
                            append = batch.append
                for entry in subdirs:
                    name = entry.name
                    nxt = g.step(state, name)
                    if nxt is None:
                        continue
                    path = prefix + name
                    if excludes(name, path):
                        continue
                    try:
                        est = entry.stat(follow_symlinks=follow)
                    except OSError as e:
                        append(dir_problem(guess, path, e))
                        continue
                    ident = (est.st_dev, est.st_ino)
                    if ident in ancestors:
                        append(ScanProblem(
                            guess, path, "", "symlink_loop",
                            f"this directory link leads back to {os.path.realpath(path)}, one of its "
                            "parent directories; not entered",
                        ))
                        continue
                    if ident in visited:
                        log.debug("store %r: %s was already walked through another link", store.name, path)
                        continue
                    visited.add(ident)
                    stack.append((path, nxt, ancestors | {ident}))
        finally:
            if dfd >= 0:
                os.close(dfd)
        if batch:
            yield batch

def dir_problem(guess: str, path: str, e: OSError) -> ScanProblem:
    if e.errno == errno.ELOOP:
        return ScanProblem(guess, path, "", "symlink_loop", "this directory is a symbolic link loop")
    why = "permission denied" if isinstance(e, PermissionError) else (e.strerror or type(e).__name__)
    return ScanProblem(guess, path, "", "unreadable", f"the directory cannot be read ({why})")
