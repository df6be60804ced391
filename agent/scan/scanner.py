"""Walk the configured stores and read every certificate file.

``Scanner(config).scan()`` yields one :class:`FileScan` per file (and per
directory that could not be walked). Bad input never stops a scan: it becomes
a :class:`~agent.inventory.ScanProblem` on the file's FileScan.

Globs and excludes (agent/scan/globs.py), the walk and directory links (agent/scan/walk.py)
    A glob that matches nothing, or whose base directory does not exist, is not a
    problem (a fleet-wide config may name services a host does not run). A path
    without wildcards that does not exist is a ``vanished`` problem: someone named
    that file explicitly. A file matched by several globs or stores is read once,
    for the first.

Symbolic links
    A file link that loops is ``symlink_loop``; a dangling one is ``vanished``. In trust stores (agent/scan/trust.py)
    a file reached under several names (/etc/ssl/certs: ``Name.pem`` and its
    hash link ``5a4d6896.0``) is read once, under its readable name.

Roles
    Entries of trust stores get role TRUST_ANCHOR (see agent/scan/trust.py);
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
import hashlib
import hmac
import logging
import os
import stat
import time
from dataclasses import dataclass, replace
from typing import Iterator

from agent.config import AgentConfig, Secret, StoreConfig
from agent.errors import AgentError, PasswordUnavailable
from agent.inventory import TRUST_ANCHOR, FoundCert, ScanProblem
from agent.scan.globs import Excludes, GlobPattern, compile_glob, covers
from agent.scan.trust import TrustStores, default_password, entry_role, is_hash_link_name
from agent.scan.walk import Candidate, StatOrError, candidates
from agent.scan.filescan import STREAM_SIZE, FileScan, Signature, pem_without_keys, read_in_parts
from agent.stores import ReadContext, StoreReadError, reader_for, type_from_name

try:  # POSIX only
    import grp
    import pwd
except ImportError:  # pragma: no cover - Windows
    grp = pwd = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

__all__ = ["Scanner", "FileScan", "ScanCounters", "Signature", "compile_glob", "GlobPattern"]



_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_S_ISREG = stat.S_ISREG
_stat_result = os.stat_result


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
        self._excludes = {s.name: Excludes(s.exclude) for s in config.stores}
        self._labels = {s.name: config.labels_for(s) for s in config.stores}
        # Trust stores (agent/scan/trust.py): their entries get role TRUST_ANCHOR, and a file
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
                for batch in candidates(store, self._globs[name], self._excludes[name]):
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
                        if fs.__class__ is not FileScan:      # a large PEM file, read in parts
                            for part in fs:                   # type: ignore[union-attr]
                                n_certs += len(part.entries)
                                n_problems += len(part.problems)
                                yield part
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
            store = next((s for s in self.config.stores
                          if covers(self._globs[s.name], self._excludes[s.name], path)), None)
        if store is None:
            raise AgentError(f"{path} is not in any configured store")
        fresh: dict[str, _Cached] = {}
        fs = self._scan_file(path, store, _StorePassword(store, self._salt), True, fresh, None)
        self._cache.update(fresh)
        assert fs is not None
        return fs

    # ----------------------------------------------------------------- reading

    def _scan_file(
        self, path: str, store: StoreConfig, pw: _StorePassword, literal: bool, fresh: dict[str, _Cached],
        st: StatOrError | None,
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
            stream_fd = None
            if size > limit:
                data = b""
            elif size > STREAM_SIZE and stype in ("pem", "auto") and pem_without_keys(fd):
                stream_fd = os.dup(fd)         # read in parts below, after this descriptor is closed
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
        if stream_fd is not None:
            ctx = ReadContext(self._owner(fst.st_uid), self._group(fst.st_gid), fst.st_mode & 0o7777,
                              fst.st_mtime, self._labels[store.name])
            return read_in_parts(path, store.name, stream_fd, ctx, sig, self.config.max_file_size,
                                 lambda entries: self._with_roles(store, path, entries))
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
        entries = self._with_roles(store, path, entries)
        found_type = entries[0].key.store_type if entries else (problems[-1].store_type if problems else guess)
        token = pw.token() if pw.used else None
        return self._remember(fresh, path, store, sig, found_type, entries, problems, token)

    def _with_roles(self, store: StoreConfig, path: str, entries: list[FoundCert]) -> list[FoundCert]:
        """``entries`` with their role in a trust store (agent/scan/trust.py)."""
        if entries and self._may_trust[store.name]:
            file_role = self._trust.file_role(store, path)
            if file_role is not None:
                explicit = store.role is not None
                entries = [replace(e, role=entry_role(e, file_role, explicit)) for e in entries]
        return entries

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


def _names_before_hash_links(batch: list[Candidate]) -> list[Candidate]:
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
