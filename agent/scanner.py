"""Walk the configured stores and read every certificate file.

``Scanner(config).scan()`` yields one :class:`FileScan` per file (and per
directory that could not be walked). Bad input never stops a scan: it becomes
a :class:`~agent.inventory.ScanProblem` on the file's FileScan.

Globs
    ``*``, ``?`` and ``[...]`` match within one path component (``*`` also
    matches names starting with a dot); a component that is exactly ``**``
    matches any number of directories. Each glob is walked from its longest
    directory prefix without wildcards. A glob that matches nothing, or whose
    base directory does not exist, is not a problem (a fleet-wide config may
    name services a host does not run). A path without wildcards that does not
    exist is a ``vanished`` problem: someone named that file explicitly.
    A file matched by several globs or stores is read once, for the first.

Excludes
    A pattern without a directory separator matches file and directory names
    (``dhparam.pem``, ``*.bak``); others match whole paths (``**/old/**``,
    ``/etc/nginx/archive``). Matching directories are not entered.

Symbolic links
    Followed when the store's ``follow_symlinks`` is true (the default), else
    skipped. A directory link that leads back to one of its ancestors is a
    ``symlink_loop`` problem and is not entered; a directory reached twice by
    other links is walked once. A file link that loops is ``symlink_loop``; a
    dangling one is ``vanished``. In trust stores (agent/discovery/trust.py)
    a file reached under several names (/etc/ssl/certs: ``Name.pem`` and its
    hash link ``5a4d6896.0``) is read once, under its readable name.

Roles
    Entries of trust stores get role TRUST_ANCHOR (see agent/discovery/trust.py);
    a JVM's ``cacerts`` opens with the JDK's default password when its store
    configures none.

Rescans
    A file whose stat signature (device, inode, size, mtime_ns, ctime_ns) is
    unchanged since the previous scan by this Scanner is not read again: it is
    yielded with ``reused=True`` and the entries/problems found last time. To
    save memory the cached entries keep ``der=b""`` (the fingerprint and every
    other field are kept); use :meth:`Scanner.read_file` or ``scan(force=True)``
    when the DER is needed. ctime is part of the signature so that a chmod or
    chown (which FoundCert reports) is noticed. Results that depended on the
    store's password are read again when the password changes.
"""
from __future__ import annotations

import errno
import fnmatch
import hashlib
import hmac
import logging
import os
import re
import stat
import time
from dataclasses import dataclass, replace
from typing import Callable, Iterator, Union

from agent.config import AgentConfig, Secret, StoreConfig
from agent.discovery.trust import TrustStores, default_password, entry_role, is_hash_link_name
from agent.errors import AgentError, PasswordUnavailable
from agent.inventory import TRUST_ANCHOR, FoundCert, ScanProblem
from agent.stores import ReadContext, StoreReadError, reader_for, type_from_name

try:  # POSIX only
    import grp
    import pwd
except ImportError:  # pragma: no cover - Windows
    grp = pwd = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

__all__ = ["Scanner", "FileScan", "ScanCounters", "Signature", "compile_glob", "GlobPattern"]

Signature = tuple[int, int, int, int, int]   # st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_S_ISREG = stat.S_ISREG
_stat_result = os.stat_result
_StatOrError = Union[os.stat_result, OSError]
_Candidate = Union[tuple[str, bool, _StatOrError], ScanProblem]
_BATCH = 512          # walk results handed over per batch
_SCANDIR_FD = os.scandir in os.supports_fd and os.stat in os.supports_dir_fd
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


@dataclass(slots=True)
class FileScan:
    """What one scan found in one file (or the problem with one directory).

    When ``reused`` is True the ``entries`` and ``problems`` lists are the
    scanner's cached ones: treat them as read-only.
    """

    path: str
    store_name: str
    store_type: str                 # detected type (pem, der, pkcs12, jks, jceks) or the configured one
    reused: bool                    # True: unchanged since the last scan, entries come from memory (der=b"")
    entries: list[FoundCert]
    problems: list[ScanProblem]
    signature: Signature | None = None   # None for directories and files that could not be stat'ed


@dataclass
class ScanCounters:
    """Figures for the current (or last) scan."""

    stores_scanned: int = 0
    files_seen: int = 0
    files_read: int = 0
    files_reused: int = 0
    certificates: int = 0
    problems: int = 0
    started_at: float = 0.0         # time.time()
    duration: float = 0.0           # seconds, set when the scan has finished


# --------------------------------------------------------------------------- globs

_WILD = re.compile(r"[*?\[]")
_Matcher = Union[str, Callable[[str], object]]


def _part(component: str) -> _Matcher | None:
    """None for ``**``; the name for literal components; else a compiled matcher."""
    if component == "**":
        return None
    if not _WILD.search(component):
        return component
    return re.compile(fnmatch.translate(component)).match


class GlobPattern:
    """One ``paths`` glob, compiled for a walk that prunes as it goes."""

    __slots__ = ("pattern", "base", "parts", "literal", "_states")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        norm = os.path.normpath(pattern)
        comps = norm.split(os.sep)
        first = next((i for i, c in enumerate(comps) if _WILD.search(c)), None)
        self.literal = first is None
        if first is None:
            self.base = norm
            self.parts: tuple[_Matcher | None, ...] = ()
        else:
            base = os.sep.join(comps[:first]) or os.sep
            if base.endswith(":"):       # "C:" on Windows
                base += os.sep
            self.base = base
            self.parts = tuple(_part(c) for c in comps[first:])
        self._states: dict[frozenset[int], _State] = {}

    def start(self) -> "_State":
        """The matching state at the base directory."""
        return self.state(self._closure({0}))

    def state(self, indices: frozenset[int]) -> "_State":
        s = self._states.get(indices)
        if s is None:
            s = self._states[indices] = _State(self, indices)
        return s

    def _closure(self, indices: set[int]) -> frozenset[int]:
        out = set(indices)
        todo = list(indices)
        while todo:
            i = todo.pop()
            if i < len(self.parts) and self.parts[i] is None and i + 1 not in out:
                out.add(i + 1)
                todo.append(i + 1)
        return frozenset(out)

    def step(self, state: "_State", name: str) -> "_State | None":
        """The state after entering directory ``name``; None when nothing below can match."""
        nxt: set[int] = set()
        parts = self.parts
        for i in state.indices:
            if i >= len(parts):
                continue
            p = parts[i]
            if p is None:
                nxt.add(i)
            elif p == name if p.__class__ is str else p(name):  # type: ignore[operator]
                nxt.add(i + 1)
        if not nxt:
            return None
        closed = self._closure(nxt)
        if all(i >= len(parts) for i in closed):
            return None
        return self.state(closed)


class _State:
    """Which glob components may match next; precomputed tests for file names."""

    __slots__ = ("indices", "all_files", "tests", "fast_match")

    def __init__(self, glob: GlobPattern, indices: frozenset[int]) -> None:
        n = len(glob.parts)
        self.indices = indices
        self.all_files = False
        tests: list[_Matcher] = []
        for i in indices:
            if i >= n:
                continue
            p = glob.parts[i]
            ends = n in glob._closure({i + 1})
            if p is None and ends:
                self.all_files = True
            elif p is not None and ends:
                tests.append(p)
        self.tests = tuple(tests)
        # The cheapest callable answering "does a file called name match here?"
        self.fast_match: Callable[[str], object] = self.matches_file
        if self.all_files:
            self.fast_match = _always
        elif not tests:
            self.fast_match = _never
        elif len(tests) == 1:
            t = tests[0]
            self.fast_match = t.__eq__ if t.__class__ is str else t  # type: ignore[assignment,union-attr]

    def matches_file(self, name: str) -> bool:
        if self.all_files:
            return True
        for t in self.tests:
            if t.__class__ is str:
                if t == name:
                    return True
            elif t(name):  # type: ignore[operator]
                return True
        return False


def _always(name: str) -> bool:
    return True


def _never(name: str) -> bool:
    return False


def compile_glob(pattern: str) -> GlobPattern:
    """Compile one ``paths`` glob (absolute, ``**`` = any depth)."""
    return GlobPattern(pattern)


def _glob_regex(pattern: str) -> str:
    """A regex for a whole-path glob: ``**`` crosses directories, ``*`` does not."""
    seps = "/" if os.sep == "/" else "/\\"
    sep = "/" if os.sep == "/" else r"[\\/]"
    not_sep = "[^/]" if os.sep == "/" else r"[^\\/]"
    out = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**", i):
            j = i + 2
            if j < n and pattern[j] in seps:
                out.append(f"(?:.*{sep})?")
                i = j + 1
            else:
                out.append(".*")
                i = j
            continue
        if c == "*":
            out.append(f"{not_sep}*")
        elif c == "?":
            out.append(not_sep)
        elif c == "[":
            k = pattern.find("]", i + 2)
            if k < 0:
                out.append(r"\[")
            else:
                body = pattern[i + 1:k]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = k
        elif c in seps:
            out.append(sep)
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


class _Excludes:
    __slots__ = ("name", "path", "active")

    def __init__(self, patterns: tuple[str, ...]) -> None:
        self.active = bool(patterns)
        names = [fnmatch.translate(p) for p in patterns if "/" not in p and os.sep not in p]
        paths = [_glob_regex(p) for p in patterns if "/" in p or os.sep in p]
        self.name = re.compile("|".join(names)).fullmatch if names else None
        self.path = re.compile("|".join(f"(?:{p})" for p in paths)).fullmatch if paths else None

    def __call__(self, name: str, path: str) -> bool:
        return bool((self.name is not None and self.name(name)) or (self.path is not None and self.path(path)))


# --------------------------------------------------------------------------- the scanner

@dataclass(slots=True)
class _Cached:
    signature: Signature
    store_name: str
    store_type: str
    entries: list[FoundCert]
    problems: list[ScanProblem]
    password_token: bytes | None     # set when the result depended on the store's password


class _StorePassword:
    """The store's password, read at most once per scan, and a token to notice changes."""

    __slots__ = ("store", "salt", "used", "_value", "_error", "_loaded", "_token")

    def __init__(self, store: StoreConfig, salt: bytes) -> None:
        self.store = store
        self.salt = salt
        self.used = False
        self._loaded = False
        self._value: Secret | None = None
        self._error: PasswordUnavailable | None = None
        self._token: bytes | None = None

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            try:
                self._value = self.store.read_password()
            except PasswordUnavailable as e:
                self._error = e

    def get(self) -> Secret | None:
        """The password (or None); raises PasswordUnavailable. Marks the file as password-dependent."""
        self.used = True
        self._load()
        if self._error is not None:
            raise self._error
        return self._value

    def token(self) -> bytes:
        """A keyed hash of the current password (or of why there is none); never the password."""
        if self._token is None:
            self._token = self._make_token()
        return self._token

    def _make_token(self) -> bytes:
        self._load()
        if self._error is not None:
            material = f"unavailable\0{self._error.reason}\0{self._error.message}".encode()
        elif self._value is None:
            material = b"none"
        else:
            material = b"pw\0" + self._value.reveal().encode("utf-8")
        return hmac.new(self.salt, material, hashlib.sha256).digest()


class Scanner:
    """Reads the stores of one :class:`AgentConfig`, remembering files between scans."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.counters = ScanCounters()
        self._cache: dict[str, _Cached] = {}
        self._salt = os.urandom(16)
        self._users: dict[int, str] = {}
        self._groups: dict[int, str] = {}
        self._globs = {s.name: tuple(GlobPattern(p) for p in s.paths) for s in config.stores}
        self._excludes = {s.name: _Excludes(s.exclude) for s in config.stores}
        self._labels = {s.name: config.labels_for(s) for s in config.stores}
        # Trust stores (agent/discovery/trust.py): their entries get role TRUST_ANCHOR, and a file
        # reached through several links (/etc/ssl/certs: a name and a hash link per certificate) is read once.
        self._trust = TrustStores(config.discovery.trust_store_paths)
        self._may_trust = {s.name: self._trust.store_may_hold_trust(s) for s in config.stores}

    # ----------------------------------------------------------------- public

    def scan(self, force: bool = False) -> Iterator[FileScan]:
        """Scan every store; yield one FileScan per file (and per unwalkable directory).

        ``force=True`` reads every file again instead of reusing unchanged ones.
        The cache of unchanged files is replaced when the iteration completes.
        """
        c = self.counters = ScanCounters(started_at=time.time())
        t0 = time.perf_counter()
        seen: set[str] = set()
        seen_add = seen.add
        trust_files: set[tuple[int, int]] = set()     # (st_dev, st_ino) of trust store files read in this scan
        fresh: dict[str, _Cached] = {}
        cache_get = self._cache.get
        completed = False
        # Hot-path tallies kept in locals and added to the counters at the end.
        n_seen = n_reused = n_certs = n_problems = 0
        try:
            for store in self.config.stores:
                c.stores_scanned += 1
                name = store.name
                pw = _StorePassword(store, self._salt)
                may_trust = self._may_trust[name]
                for batch in self._candidates(store):
                    if may_trust:
                        batch = _names_before_hash_links(batch)
                    for item in batch:
                        if item.__class__ is ScanProblem:
                            n_problems += 1
                            yield FileScan(item.path, name, item.store_type, False, [], [item])  # type: ignore[union-attr]
                            continue
                        path, literal, st = item  # type: ignore[misc]
                        if path in seen:
                            continue
                        seen_add(path)
                        if (may_trust and st.__class__ is _stat_result
                                and self._trust.file_role(store, path) == TRUST_ANCHOR):
                            ident = (st.st_dev, st.st_ino)
                            if ident in trust_files:
                                continue      # the same trust store file under another name (a hash link)
                            trust_files.add(ident)
                        n_seen += 1
                        if not force and st.__class__ is _stat_result:
                            cached = cache_get(path)
                            if (
                                cached is not None and cached.store_name == name
                                and cached.signature == (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
                                                         st.st_ctime_ns)
                                and (cached.password_token is None or cached.password_token == pw.token())
                            ):
                                fresh[path] = cached
                                n_reused += 1
                                n_certs += len(cached.entries)
                                n_problems += len(cached.problems)
                                yield FileScan(path, name, cached.store_type, True, cached.entries,
                                               cached.problems, cached.signature)
                                continue
                        fs = self._scan_file(path, store, pw, literal, fresh, st)
                        if fs is None:
                            continue
                        n_certs += len(fs.entries)
                        n_problems += len(fs.problems)
                        yield fs
            completed = True
        finally:
            if completed:
                self._cache = fresh
            else:
                self._cache.update(fresh)
            c.files_seen += n_seen
            c.files_reused += n_reused
            c.certificates += n_certs
            c.problems += n_problems
            c.duration = time.perf_counter() - t0
            log.debug(
                "scan %s: %d stores, %d files (%d read, %d reused), %d certificates, %d problems in %.3fs",
                "complete" if completed else "interrupted", c.stores_scanned, c.files_seen, c.files_read,
                c.files_reused, c.certificates, c.problems, c.duration,
            )

    def read_file(self, path: str, store_name: str | None = None) -> FileScan:
        """Read one file now (never from memory), with full DER in its entries.

        The store is ``store_name``, else the store that last yielded the file,
        else the first store with a glob matching ``path``. Raises AgentError
        when no configured store covers the path.
        """
        path = os.path.normpath(os.path.abspath(path))
        store = None
        if store_name is None:
            cached = self._cache.get(path)
            store_name = cached.store_name if cached else None
        if store_name is not None:
            try:
                store = self.config.store(store_name)
            except KeyError:
                raise AgentError(f"there is no store called {store_name!r}") from None
        else:
            store = next((s for s in self.config.stores if self._covers(s, path)), None)
        if store is None:
            raise AgentError(f"{path} is not in any configured store")
        fresh: dict[str, _Cached] = {}
        fs = self._scan_file(path, store, _StorePassword(store, self._salt), True, fresh, None)
        self._cache.update(fresh)
        assert fs is not None
        return fs

    # ----------------------------------------------------------------- walking

    def _covers(self, store: StoreConfig, path: str) -> bool:
        excludes = self._excludes[store.name]
        if excludes(os.path.basename(path), path):
            return False
        for g in self._globs[store.name]:
            if g.literal:
                if g.base == path:
                    return True
                continue
            try:
                rel = os.path.relpath(path, g.base)
            except ValueError:       # another drive (Windows)
                continue
            if rel == os.pardir or rel.startswith(os.pardir + os.sep):
                continue
            state: _State | None = g.start()
            names = rel.split(os.sep)
            for d in names[:-1]:
                state = g.step(state, d) if state is not None else None
            if state is not None and state.matches_file(names[-1]):
                return True
        return False

    def _candidates(self, store: StoreConfig) -> Iterator[list[_Candidate]]:
        """Batches of ``(path, literal, stat result or OSError)`` for paths matching the store's globs,
        and walk problems (batches spare a generator round trip per file)."""
        excludes = self._excludes[store.name]
        for g in self._globs[store.name]:
            if g.literal:
                if not excludes(os.path.basename(g.base), g.base):
                    try:
                        st: _StatOrError = os.stat(g.base) if store.follow_symlinks else os.lstat(g.base)
                    except OSError as e:
                        st = e
                    yield [(g.base, True, st)]
            else:
                yield from self._walk(store, g, excludes)

    def _walk(self, store: StoreConfig, g: GlobPattern, excludes: _Excludes) -> Iterator[list[_Candidate]]:
        follow = store.follow_symlinks
        guess = store.type
        has_excludes = excludes.active
        try:
            st = os.stat(g.base)
        except FileNotFoundError:
            log.debug("store %r: %s does not exist; nothing matches %s", store.name, g.base, g.pattern)
            return
        except OSError as e:
            yield [self._dir_problem(guess, g.base, e)]
            return
        if not stat.S_ISDIR(st.st_mode):
            log.debug("store %r: %s is not a directory; nothing matches %s", store.name, g.base, g.pattern)
            return
        visited: set[tuple[int, int]] = {(st.st_dev, st.st_ino)}
        # stack of (directory, matching state, ancestors' (dev, ino))
        stack: list[tuple[str, _State, frozenset[tuple[int, int]]]] = [
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
                yield [self._dir_problem(guess, dirpath, e)]
                continue
            matches_file = state.fast_match
            subdirs = []
            batch: list[_Candidate] = []
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
                                fst: _StatOrError = entry.stat(follow_symlinks=follow)
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
                            append(self._dir_problem(guess, path, e))
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

    @staticmethod
    def _dir_problem(guess: str, path: str, e: OSError) -> ScanProblem:
        if e.errno == errno.ELOOP:
            return ScanProblem(guess, path, "", "symlink_loop", "this directory is a symbolic link loop")
        why = "permission denied" if isinstance(e, PermissionError) else (e.strerror or type(e).__name__)
        return ScanProblem(guess, path, "", "unreadable", f"the directory cannot be read ({why})")

    # ----------------------------------------------------------------- reading

    def _scan_file(
        self, path: str, store: StoreConfig, pw: _StorePassword, literal: bool, fresh: dict[str, _Cached],
        st: _StatOrError | None,
    ) -> FileScan | None:
        """Read one file (its stat result, or the error stat'ing it, may come from the walk)."""
        c = self.counters
        stype = store.type
        guess = stype if stype != "auto" else (type_from_name(path) or "auto")
        follow = store.follow_symlinks
        if st is None:
            try:
                st = os.stat(path) if follow else os.lstat(path)
            except OSError as e:
                st = e
        if isinstance(st, OSError):
            return FileScan(path, store.name, guess, False, [], [self._stat_problem(guess, path, st, literal)])
        mode = st.st_mode
        if not _S_ISREG(mode):
            if stat.S_ISLNK(mode):
                log.debug("store %r: %s is a symbolic link and follow_symlinks is false", store.name, path)
                if not literal:
                    return None
                msg = "a symbolic link, and the store's follow_symlinks is false"
            elif stat.S_ISDIR(mode):
                if not literal:
                    return None
                msg = f"a directory, not a file; use a glob such as {os.path.join(path, '**')}"
            else:
                if not literal:
                    log.debug("store %r: %s is not a regular file; skipped", store.name, path)
                    return None
                msg = "not a regular file"
            return FileScan(path, store.name, guess, False, [], [ScanProblem(guess, path, "", "unsupported", msg)])

        sig: Signature = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        limit = self.config.max_file_size
        if st.st_size > limit:
            return self._remember(fresh, path, store, sig, guess, [], [ScanProblem(
                guess, path, "", "too_large",
                f"the file is {_size(st.st_size)}, larger than max_file_size ({_size(limit)}); not read",
            )], None)
        if st.st_size == 0:
            return self._remember(fresh, path, store, sig, guess, [], [
                ScanProblem(guess, path, "", "empty", "the file is empty")], None)

        # Read.
        try:
            fd = os.open(path, _OPEN_FLAGS if follow else _OPEN_FLAGS | _NOFOLLOW)
        except OSError as e:
            return FileScan(path, store.name, guess, False, [], [self._stat_problem(guess, path, e, literal)])
        try:
            fst = os.fstat(fd)
            if not _S_ISREG(fst.st_mode):
                return FileScan(path, store.name, guess, False, [], [ScanProblem(
                    guess, path, "", "vanished", "the file was replaced by something else during the scan")])
            size = fst.st_size
            if size > limit:
                data = b""
            else:
                data = os.read(fd, size + 1)
                if len(data) < size:
                    chunks = [data]
                    total = len(data)
                    while total <= limit:
                        more = os.read(fd, max(size + 1 - total, 65536))
                        if not more:
                            break
                        chunks.append(more)
                        total += len(more)
                    data = b"".join(chunks)
        except OSError as e:
            why = "permission denied" if isinstance(e, PermissionError) else (e.strerror or type(e).__name__)
            return FileScan(path, store.name, guess, False, [], [ScanProblem(
                guess, path, "", "unreadable", f"the file cannot be read ({why})")])
        finally:
            os.close(fd)
        c.files_read += 1
        sig = (fst.st_dev, fst.st_ino, fst.st_size, fst.st_mtime_ns, fst.st_ctime_ns)
        if len(data) > limit or size > limit:
            return self._remember(fresh, path, store, sig, guess, [], [ScanProblem(
                guess, path, "", "too_large",
                f"the file is larger than max_file_size ({_size(limit)}); not read")], None)
        if not data or data.isspace():
            why = "the file is empty" if not data else "the file holds only blank space"
            problem = ScanProblem(guess, path, "", "empty", why)
            return self._remember(fresh, path, store, sig, guess, [], [problem], None)

        getter = pw.get
        if not store.has_password_source and self._may_trust[store.name]:
            default = default_password(path)          # JVM cacerts: the JDK's default; never logged
            if default is not None:
                getter = lambda: default  # noqa: E731
        ctx = ReadContext(self._owner(fst.st_uid), self._group(fst.st_gid), fst.st_mode & 0o7777,
                          fst.st_mtime, self._labels[store.name], getter)
        pw.used = False
        try:
            entries = reader_for(stype).read(path, data, ctx)
            problems = ctx.problems
        except StoreReadError as e:
            entries = []
            problems = ctx.problems + [ScanProblem(e.store_type or guess, path, e.alias, e.reason, e.message)]
        except Exception:  # noqa: BLE001 - a reader bug must not stop the scan
            log.exception("store %r: reading %s failed unexpectedly", store.name, path)
            entries = []
            problems = ctx.problems + [ScanProblem(
                guess, path, "", "corrupt", "the file could not be read (unexpected error; see the agent log)")]
        if entries and self._may_trust[store.name]:
            file_role = self._trust.file_role(store, path)
            if file_role is not None:
                explicit = store.role is not None
                entries = [replace(e, role=entry_role(e, file_role, explicit)) for e in entries]
        found_type = entries[0].key.store_type if entries else (problems[-1].store_type if problems else guess)
        token = pw.token() if pw.used else None
        return self._remember(fresh, path, store, sig, found_type, entries, problems, token)

    @staticmethod
    def _remember(
        fresh: dict[str, _Cached], path: str, store: StoreConfig, sig: Signature, stype: str,
        entries: list[FoundCert], problems: list[ScanProblem], token: bytes | None,
    ) -> FileScan:
        fresh[path] = _Cached(sig, store.name, stype, [_strip(e) for e in entries], problems, token)
        return FileScan(path, store.name, stype, False, entries, list(problems), sig)

    @staticmethod
    def _stat_problem(guess: str, path: str, e: OSError, literal: bool) -> ScanProblem:
        if e.errno == errno.ELOOP:
            return ScanProblem(guess, path, "", "symlink_loop",
                               "a symbolic link loop (it never reaches a file)")
        if isinstance(e, FileNotFoundError):
            if os.path.islink(path):
                target = _readlink(path)
                return ScanProblem(guess, path, "", "vanished",
                                   f"a dangling symbolic link (its target {target} does not exist)")
            if literal:
                return ScanProblem(guess, path, "", "vanished", "the configured file does not exist")
            return ScanProblem(guess, path, "", "vanished", "the file disappeared during the scan")
        if isinstance(e, PermissionError):
            return ScanProblem(guess, path, "", "unreadable", "the file cannot be read (permission denied)")
        return ScanProblem(guess, path, "", "unreadable",
                           f"the file cannot be read ({e.strerror or type(e).__name__})")

    def _owner(self, uid: int) -> str:
        name = self._users.get(uid)
        if name is None:
            name = str(uid)
            if pwd is not None:
                try:
                    name = pwd.getpwuid(uid).pw_name
                except KeyError:
                    pass
            self._users[uid] = name
        return name

    def _group(self, gid: int) -> str:
        name = self._groups.get(gid)
        if name is None:
            name = str(gid)
            if grp is not None:
                try:
                    name = grp.getgrgid(gid).gr_name
                except KeyError:
                    pass
            self._groups[gid] = name
        return name


def _strip(e: FoundCert) -> FoundCert:
    return FoundCert(e.key, b"", e.fingerprint, e.has_private_key, e.key_encrypted, e.key_match,
                     e.entry_type, e.file_owner, e.file_group, e.file_mode, e.file_mtime, e.labels, e.role)


def _names_before_hash_links(batch: list[_Candidate]) -> list[_Candidate]:
    """The batch with OpenSSL hash links (``5a4d6896.0``) last, so a trust store file keeps its real name."""
    return sorted(batch, key=lambda item: item.__class__ is not ScanProblem
                  and is_hash_link_name(os.path.basename(item[0])))  # type: ignore[index]


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def _size(n: int) -> str:
    for unit, div in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n} bytes"
