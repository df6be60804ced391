"""Install a renewed certificate at one location: check, back up, write, reload, verify, roll back.

::

    request = InstallRequest.from_config(config, job_id="j-42", location=loc, key=key,
                                         cert_der=cert, chain_ders=chain, expected_old_fingerprint=old_fp)
    result = install(request, data_dir=config.data_dir, on_step=report)
    result.state        # "verified", "rolled_back" or "failed"

The steps (each recorded in ``result.steps`` with its duration, and announced
to ``on_step(step, detail)`` when it starts):

1. ``check``: the new certificate belongs to the new key; the store's password
   can be read; every file involved is writable (the file and its directory);
   the location still holds ``expected_old_fingerprint`` (re-read from disk
   now: a different certificate means it was changed out of band, and nothing
   is written); a separate key file still holds the old certificate's key; the
   new content is rendered and read back before anything is touched.
2. ``backup``: a copy of each file into ``<data_dir>/backups/<job id>/``
   (directory 0700, files 0600: they hold private keys) with ``backup.json``
   (paths, owner, group, mode, SHA-256).
3. ``write``: each file atomically (temporary file in its directory, fsync,
   rename), keeping owner, group and mode.
4. ``reload``: the reload action, if any (agent.reload).
5. ``verify``: every endpoint must present the new fingerprint and a chain
   that validates, within ``verify_timeout`` (handshakes are retried: reloads
   finish asynchronously).

If anything fails after the write began, the backup is restored (``rollback.restore``),
the service reloaded again (``rollback.reload``) and the endpoints must serve
the old fingerprint again (``rollback.verify``): the result is ``rolled_back``
with the reason, or ``failed`` when the rollback could not be confirmed.

Installing a certificate that is already in place is harmless: when the
endpoints already serve it, the result is ``verified`` without a write or a
reload; otherwise the reload and verification run again (and a failure rolls
back to this job's earlier backup, when there is one).

Results and step details never contain a secret: messages name files,
fingerprints and exit codes only.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from agent.config import DEFAULT_VERIFY_TIMEOUT, AgentConfig, ReloadAction, Secret, StoreConfig, VerifyEndpoint
from agent.errors import InstallError, PasswordUnavailable, ProbeError, ReloadFailed, StoreWriteError
from agent.inventory import LocationKey
from agent.keys import PrivateKey, load_pem_private_key, same_public_key
from agent.probe import ProbeResult, probe, validate_chain
from agent.reload import run_reload
from agent.stores import NewEntry, ReadContext, StoreReadError, WriteTarget, reader_for, writer_for
from agent.stores.base import split_chain
from agent.stores.files import atomic_replace, find_key_file
from agent.stores.pem import pem_blocks

__all__ = [
    "InstallRequest", "InstallResult", "Step", "install", "VERIFIED", "ROLLED_BACK", "FAILED", "STEPS",
    "backup_dir",
]

log = logging.getLogger(__name__)

VERIFIED = "verified"
ROLLED_BACK = "rolled_back"
FAILED = "failed"

STEPS = ("check", "backup", "write", "reload", "verify", "rollback.restore", "rollback.reload", "rollback.verify")
BACKUP_META = "backup.json"

OnStep = Callable[[str, str], None]


@dataclass(frozen=True)
class InstallRequest:
    """Everything one install needs. Build it with :meth:`from_config` where a config is at hand.

    ``location`` is where the old certificate was found (its file, for PEM the
    certificate file; ``chain_index`` 0). ``key_file``/``chain_file``: PEM and
    DER only, the files holding the key (when not the certificate file) and a
    separate chain. ``chain_ders``: the issuer chain, issuer first, root last
    when known. ``ca_bundle``: PEM roots for validating what endpoints serve
    (default: the endpoint's ``ca_file``, else the self-signed root at the end
    of ``chain_ders``, else the system trust store). ``key_password``: a
    JKS/JCEKS entry password when it differs from the store password.
    """

    job_id: str
    location: LocationKey
    store: StoreConfig
    key: PrivateKey = field(repr=False, compare=False)
    cert_der: bytes = field(repr=False)
    chain_ders: tuple[bytes, ...] = field(default=(), repr=False)
    expected_old_fingerprint: str = ""
    key_file: str | None = None
    chain_file: str | None = None
    reload: ReloadAction | None = None
    verify: tuple[VerifyEndpoint, ...] = ()
    verify_timeout: float = DEFAULT_VERIFY_TIMEOUT      # seconds, for all endpoints together
    probe_timeout: float = 3.0                          # seconds, one handshake
    ca_bundle: bytes | None = field(default=None, repr=False)
    require_valid_chain: bool = True
    allow_incomplete_chain: bool = True   # a served chain that lacks only intermediates we know: verified, warned
    key_password: Secret | None = field(default=None, repr=False)
    confirmations: int = 3          # handshakes in a row that must agree ...
    settle: float = 0.3             # ... over at least this many seconds (nginx keeps old workers ~0.1 s)

    def __post_init__(self) -> None:
        for name in ("key_file", "chain_file"):           # accept os.PathLike
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                object.__setattr__(self, name, os.fspath(value))
        if not isinstance(self.chain_ders, tuple):
            object.__setattr__(self, "chain_ders", tuple(self.chain_ders))
        if not isinstance(self.verify, tuple):
            object.__setattr__(self, "verify", tuple(self.verify))

    @property
    def new_fingerprint(self) -> str:
        return hashlib.sha256(self.cert_der).hexdigest()

    @classmethod
    def from_config(
        cls,
        config: AgentConfig,
        *,
        job_id: str,
        location: LocationKey,
        key: PrivateKey,
        cert_der: bytes,
        chain_ders: tuple[bytes, ...] | list[bytes] = (),
        expected_old_fingerprint: str,
        store_name: str | None = None,
        reload: str | None | bool = True,
        key_file: str | None = None,
        chain_file: str | None = None,
        ca_bundle: bytes | None = None,
    ) -> "InstallRequest":
        """A request using the agent's configuration for the store of ``location``.

        The store is ``store_name`` or the first store whose paths cover the
        location. ``reload``: True uses the store's configured action, a name
        picks another action (it must be defined in this agent's config:
        :class:`~agent.errors.ReloadNotAllowed` otherwise), False/None runs
        none. The endpoints and verify timeout are the store's. For PEM and DER
        locations without a key in the certificate file, ``key_file`` is found
        with :func:`~agent.stores.files.find_key_file` when not given.
        Raises :class:`~agent.errors.AgentError` subclasses with a clear message.
        """
        if location.store_type == "windows":   # the Windows certificate store: agent/windows/install.py
            from agent.windows.install import WindowsInstallRequest
            return WindowsInstallRequest.from_config(  # type: ignore[return-value]
                config, job_id=job_id, location=location, key=key, cert_der=cert_der, chain_ders=chain_ders,
                expected_old_fingerprint=expected_old_fingerprint, ca_bundle=ca_bundle)
        store = _store_for(config, location, store_name)
        action: ReloadAction | None = None
        if reload is True:
            action = config.reload_action(store.reload) if store.reload else None
        elif isinstance(reload, str):
            action = config.reload_action(reload)
        if location.store_type in ("pem", "der") and key_file is None:
            key_file = _locate_key_file(location, store)
        return cls(
            job_id=job_id, location=location, store=store, key=key, cert_der=cert_der,
            chain_ders=tuple(chain_ders), expected_old_fingerprint=expected_old_fingerprint, key_file=key_file,
            chain_file=chain_file, reload=action, verify=store.verify, verify_timeout=store.verify_timeout,
            ca_bundle=ca_bundle,
        )


@dataclass(frozen=True)
class Step:
    """One step of an install: its name (see :data:`STEPS`), whether it succeeded, what happened, how long."""

    step: str
    ok: bool
    detail: str
    seconds: float

    def __iter__(self) -> Iterator[Any]:        # (step, ok, detail, seconds) unpacking
        return iter((self.step, self.ok, self.detail, self.seconds))


@dataclass
class InstallResult:
    """The outcome of :func:`install`. ``reason`` is "" when verified and safe to show a user."""

    state: str                          # VERIFIED, ROLLED_BACK or FAILED
    reason: str
    steps: list[Step]
    new_fingerprint: str
    old_fingerprint: str
    served_fingerprint: str | None = None    # what the (last checked) endpoint served at the end
    reload_seconds: float | None = None      # the install's reload (not the rollback's)
    verify_seconds: float | None = None
    seconds: float = 0.0
    written: bool = False                    # the new content was written (and, when verified, stays)
    backup_dir: str | None = None
    warnings: list[str] = field(default_factory=list)   # verified, but worth telling (incomplete served chain)

    @property
    def ok(self) -> bool:
        return self.state == VERIFIED

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (for job reports)."""
        return {
            "state": self.state, "reason": self.reason, "new_fingerprint": self.new_fingerprint,
            "old_fingerprint": self.old_fingerprint, "served_fingerprint": self.served_fingerprint,
            "reload_seconds": self.reload_seconds, "verify_seconds": self.verify_seconds,
            "seconds": round(self.seconds, 3), "written": self.written, "backup_dir": self.backup_dir,
            "warnings": list(self.warnings),
            "steps": [{"step": s.step, "ok": s.ok, "detail": s.detail, "seconds": round(s.seconds, 3)}
                      for s in self.steps],
        }


class StepFailed(Exception):
    """A step of an install pipeline failed; ``reason`` says why (the pipelines turn it into rollback)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_Abort = StepFailed


@dataclass
class _FileState:
    path: str                 # as named (may be a symbolic link)
    real: str                 # what is written
    data: bytes = field(repr=False)
    uid: int = 0
    gid: int = 0
    mode: int = 0o600


def backup_dir(data_dir: str | os.PathLike[str], job_id: str) -> Path:
    """Where :func:`install` keeps the backup for ``job_id``."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", job_id)[:128].lstrip(".") or "job"
    return Path(data_dir) / "backups" / safe


class StepBook:
    """The bookkeeping every install pipeline shares (files here, the Windows store in
    agent/windows/install.py): steps announced to the caller, logged, and kept for the result."""

    req: Any
    on_step: OnStep | None
    steps: list[Step]
    t0: float
    new_fp: str
    old_fp: str
    served: str | None
    reload_seconds: float | None
    verify_seconds: float | None
    backup: Path | None

    def _announce(self, step: str, detail: str) -> None:
        if self.on_step is not None:
            try:
                self.on_step(step, detail)
            except Exception:  # noqa: BLE001 - a progress reporter must not break an install
                log.exception("install progress callback failed")

    def record(self, step: str, ok: bool, detail: str, started: float) -> None:
        self.steps.append(Step(step, ok, detail, time.perf_counter() - started))
        log.info("install %s %s: %s %s", self.req.job_id, step, "ok" if ok else "FAILED", detail)

    def _await(self, target: Any, want: str, deadline: float, require_valid: bool) -> tuple[bool, str]:
        raise NotImplementedError

    def _verify_each(self, step: str, targets: Sequence[Any], noun: str, want: str, timeout: float,
                     require_valid: bool) -> None:
        """Every target serves ``want`` before one shared deadline (``_await`` probes one); the first
        that does not fails the step and aborts the install."""
        started = time.perf_counter()
        self._announce(step, f"waiting for {len(targets)} {noun}(s) to serve {want[:16]}...")
        deadline = started + timeout
        details = []
        for target in targets:
            ok, detail = self._await(target, want, deadline, require_valid)
            details.append(detail)
            if not ok:
                if step == "verify":
                    self.verify_seconds = time.perf_counter() - started
                self.record(step, False, detail, started)
                raise _Abort(detail)
        if step == "verify":
            self.verify_seconds = time.perf_counter() - started
        self.record(step, True, "; ".join(details), started)

    def _result(self, state: str, reason: str, written: bool, warnings: Sequence[str] = ()) -> InstallResult:
        return InstallResult(
            state=state, reason=reason, steps=self.steps, new_fingerprint=self.new_fp, old_fingerprint=self.old_fp,
            served_fingerprint=self.served, reload_seconds=self.reload_seconds, verify_seconds=self.verify_seconds,
            seconds=time.perf_counter() - self.t0, written=written and state == VERIFIED,
            backup_dir=str(self.backup) if self.backup else None, warnings=list(warnings),
        )


class _Run(StepBook):
    """One install: the steps, with the state rollback needs."""

    def __init__(self, req: InstallRequest, data_dir: Path, on_step: OnStep | None) -> None:
        self.req = req
        self.data_dir = data_dir
        self.on_step = on_step
        self.steps: list[Step] = []
        self.files: list[_FileState] = []
        self.rendered: dict[str, bytes] = {}
        self.written = False
        self.reload_seconds: float | None = None
        self.verify_seconds: float | None = None
        self.served: str | None = None
        self.backup: Path | None = None
        self.warnings: list[str] = []
        self.old_fp = (req.expected_old_fingerprint or "").lower().replace(":", "")
        self.new_fp = req.new_fingerprint
        self.t0 = time.perf_counter()

    # ----------------------------------------------------------------- bookkeeping

    def result(self, state: str, reason: str) -> InstallResult:
        return self._result(state, reason, self.written, self.warnings)

    # ----------------------------------------------------------------- the pipeline

    def run(self) -> InstallResult:
        try:
            already = self.check()
            if not already:
                self.make_backup()
        except _Abort as e:
            return self.result(FAILED, e.reason)
        except Exception as e:  # noqa: BLE001 - a bug must fail this install visibly, not the agent
            log.exception("install %s: unexpected error before writing", self.req.job_id)
            return self.result(FAILED, f"unexpected error before writing ({type(e).__name__}; see the agent "
                                       "log); nothing was written")
        if already:
            return self.already_installed()
        try:
            self.write()
            self.reload("reload")
            self.verify_endpoints("verify", self.new_fp, self.req.require_valid_chain)
        except _Abort as e:
            if not self.written:
                return self.result(FAILED, e.reason)
            return self.rollback(e.reason)
        except BaseException as e:  # an unexpected error (or an interrupt) after writing: put things back
            if self.written:
                log.exception("install %s: unexpected error; rolling back", self.req.job_id)
                res = self.rollback(f"unexpected error: {type(e).__name__}")
                if not isinstance(e, Exception):
                    raise
                return res
            raise
        return self.result(VERIFIED, "")

    def check(self) -> bool:
        """Step 1. True when the new certificate is already in place."""
        req, started = self.req, time.perf_counter()
        self._announce("check", f"checking {_where(req.location)}")
        try:
            already = self._check()
        except _Abort as e:
            self.record("check", False, e.reason, started)
            raise
        detail = "the new certificate is already in place" if already else \
            f"{_where(req.location)} holds {self.old_fp}; {len(self.files)} file(s) writable"
        self.record("check", True, detail, started)
        return already

    def _check(self) -> bool:
        req = self.req
        loc = req.location
        from cryptography import x509

        try:
            cert = x509.load_der_x509_certificate(req.cert_der)
            [x509.load_der_x509_certificate(d) for d in req.chain_ders]
        except ValueError:
            raise _Abort("the new certificate or its chain cannot be parsed") from None
        if not same_public_key(req.key, cert):
            raise _Abort("the new certificate is not for the new key; nothing was written")
        if not self.old_fp:
            raise _Abort("the install request names no expected old fingerprint")
        try:
            password = req.store.read_password()
        except PasswordUnavailable as e:
            raise _Abort(str(e)) from None
        self.target = WriteTarget(loc, req.key_file, req.chain_file, password, req.key_password)
        try:
            writer = writer_for(loc.store_type)
            paths = writer.files(self.target)
        except StoreWriteError as e:
            raise _Abort(str(e)) from None

        for p in paths:
            self.files.append(self._examine(p))
        current = {f.path: f.data for f in self.files}

        found = self._fingerprint_at(loc.path, current[loc.path], password)
        if found == self.new_fp:
            return True
        if found is None:
            raise _Abort(f"changed out of band: {_where(loc)} no longer holds a certificate; nothing was written")
        if found != self.old_fp:
            raise _Abort(f"changed out of band: {_where(loc)} holds {found}, not {self.old_fp} as the registry "
                         "expects; nothing was written")
        if req.key_file and req.key_file != loc.path:
            self._check_key_file(current[req.key_file], password)
        try:
            self.rendered = writer.render(self.target, current, NewEntry(req.key, req.cert_der, req.chain_ders))
        except StoreWriteError as e:
            raise _Abort(f"{e}; nothing was written") from None
        # Read the new content back before anything is touched.
        back = self._fingerprint_at(loc.path, self.rendered[loc.path], password)
        if back != self.new_fp:
            raise _Abort(f"the rewritten {_where(loc)} does not read back as the new certificate; nothing was written")
        return False

    def _examine(self, path: str) -> _FileState:
        real = os.path.realpath(path)
        directory = os.path.dirname(real)
        try:
            st = os.stat(real)
            with open(real, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise _Abort(f"changed out of band: {path} does not exist any more; nothing was written") from None
        except OSError as e:
            raise _Abort(f"{path} cannot be read ({e.strerror or e}); nothing was written") from None
        if not stat.S_ISREG(st.st_mode):
            raise _Abort(f"{path} is not a regular file; nothing was written")
        if not os.access(real, os.W_OK):
            raise _Abort(f"{path} is not writable by the agent; nothing was written")
        if not os.access(directory, os.W_OK | os.X_OK):
            raise _Abort(f"the directory {directory} is not writable by the agent (files are replaced by "
                         "renaming a new file over them); nothing was written")
        return _FileState(path, real, data, st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode))

    def _fingerprint_at(self, path: str, data: bytes, password: Secret | None) -> str | None:
        loc = self.req.location
        ctx = ReadContext(password=lambda: password)
        try:
            entries = reader_for(loc.store_type).read(path, data, ctx)
        except StoreReadError as e:
            raise _Abort(f"{path} cannot be read as a {loc.store_type} store: {e}; nothing was written") from None
        for e in entries:
            if e.key.alias == loc.alias and e.key.chain_index == loc.chain_index:
                return e.fingerprint
        return None

    def _check_key_file(self, data: bytes, password: Secret | None) -> None:
        """A separate key file must still hold the old certificate's key (when it can be opened)."""
        from cryptography import x509

        req = self.req
        old_der = None
        ctx = ReadContext(password=lambda: password)
        for e in reader_for(req.location.store_type).read(req.location.path, self.files[0].data, ctx):
            if e.key.alias == req.location.alias and e.key.chain_index == req.location.chain_index:
                old_der = e.der
        keys = [b for b in pem_blocks(data) if b.is_key]
        if not keys:
            raise _Abort(f"changed out of band: the key file {req.key_file} holds no private key; nothing was written")
        if old_der is None:
            return
        old_cert = x509.load_der_x509_certificate(old_der)
        for b in keys:
            if b.encrypted and password is None:
                raise _Abort(f"the key in {req.key_file} is encrypted and the store {req.store.name!r} has no "
                             "password configured; certfleet will not write the new key unencrypted; nothing "
                             "was written")
            try:
                key = load_pem_private_key(b.raw, password.reveal() if (b.encrypted and password) else None)
            except (ValueError, TypeError):
                raise _Abort(f"the key in {req.key_file} cannot be opened with the store's password; "
                             "nothing was written") from None
            if same_public_key(key, old_cert):
                return
        raise _Abort(f"changed out of band: the key file {req.key_file} does not hold the key of the certificate "
                     f"at {_where(req.location)}; nothing was written")

    def make_backup(self) -> None:
        """Step 2."""
        started = time.perf_counter()
        directory = backup_dir(self.data_dir, self.req.job_id)
        self._announce("backup", f"backing up {len(self.files)} file(s) to {directory}")
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(directory, 0o700)
            meta: dict[str, Any] = {
                "job_id": self.req.job_id,
                "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
                "location": {"store_type": self.req.location.store_type, "path": self.req.location.path,
                             "alias": self.req.location.alias, "chain_index": self.req.location.chain_index},
                "old_fingerprint": self.old_fp, "new_fingerprint": self.new_fp, "files": [],
            }
            for i, f in enumerate(self.files):
                name = f"{i}-{os.path.basename(f.real)}"
                atomic_replace(str(directory / name), f.data, (os.getuid(), os.getgid(), 0o600)
                               if hasattr(os, "getuid") else None)
                meta["files"].append({
                    "path": f.path, "real_path": f.real, "backup": name, "size": len(f.data),
                    "sha256": hashlib.sha256(f.data).hexdigest(), "uid": f.uid, "gid": f.gid,
                    "mode": f"{f.mode:04o}",
                })
            atomic_replace(str(directory / BACKUP_META), (json.dumps(meta, indent=2) + "\n").encode(),
                           (os.getuid(), os.getgid(), 0o600) if hasattr(os, "getuid") else None)
        except (OSError, StoreWriteError) as e:
            reason = f"cannot back up to {directory}: {getattr(e, 'strerror', None) or e}; nothing was written"
            self.record("backup", False, reason, started)
            raise _Abort(reason) from None
        self.backup = directory
        self.record("backup", True, f"{len(self.files)} file(s) copied to {directory}", started)

    def write(self) -> None:
        """Step 3."""
        started = time.perf_counter()
        self._announce("write", f"writing {', '.join(f.path for f in self.files)}")
        try:
            for f in self.files:
                self.written = True
                atomic_replace(f.real, self.rendered[f.path], (f.uid, f.gid, f.mode))
        except StoreWriteError as e:
            self.record("write", False, str(e), started)
            raise _Abort(f"write failed: {e}") from None
        self.record("write", True, f"{len(self.files)} file(s) written", started)

    def reload(self, step: str) -> None:
        """Step 4 (and rollback.reload)."""
        action = self.req.reload
        if action is None:
            return
        started = time.perf_counter()
        self._announce(step, f"running reload action {action.name!r}")
        try:
            outcome = run_reload(action)
        except ReloadFailed as e:
            if step == "reload":
                self.reload_seconds = time.perf_counter() - started
            self.record(step, False, f"{action.name}: {e}", started)
            raise _Abort(f"reload failed: {e}") from None
        if step == "reload":
            self.reload_seconds = outcome.seconds
        self.record(step, True, f"{action.name}: exit 0 in {outcome.seconds:.3f} s", started)

    def verify_endpoints(self, step: str, want: str, require_valid: bool) -> None:
        """Step 5 (and rollback.verify): every endpoint serves ``want``."""
        endpoints = self.req.verify
        if not endpoints:
            return
        self._verify_each(step, endpoints, "endpoint", want, self.req.verify_timeout, require_valid)

    def _roots_for(self, ep: VerifyEndpoint) -> bytes | None:
        if self.req.ca_bundle is not None:
            return self.req.ca_bundle
        if ep.ca_file:
            try:
                with open(ep.ca_file, "rb") as f:
                    return f.read()
            except OSError as e:
                raise _Abort(f"the CA file {ep.ca_file} of endpoint {ep} cannot be read ({e.strerror or e})") from None
        _, roots = split_chain(self.req.chain_ders)
        if roots:
            from cryptography import x509
            from cryptography.hazmat.primitives.serialization import Encoding

            return b"".join(x509.load_der_x509_certificate(r).public_bytes(Encoding.PEM) for r in roots)
        return None

    def _judge(self, r: ProbeResult, ep: VerifyEndpoint, want: str, roots: bytes | None) -> tuple[bool, str]:
        """Whether what ``r`` shows is acceptable, and a note when it is only with help.

        A served chain that lacks intermediates validates once the intermediates
        issued with the certificate are added: accepted (when
        ``allow_incomplete_chain``), with a warning, because the service was
        configured that way (a certificate-only file) and refusing would only let
        the old certificate expire.
        """
        if r.validated:
            return True, ""
        if r.fingerprint != want or not self.req.allow_incomplete_chain:
            return False, ""
        inter, _ = split_chain(self.req.chain_ders)
        missing = [d for d in inter if d not in r.chain_ders]
        if not missing:
            return False, ""
        if validate_chain(r.leaf_der, [*r.chain_ders, *missing], ep.sni or ep.host, roots):
            return False, ""
        return True, ("the chain validates only with intermediate certificates the service does not send; "
                      "clients without them cannot validate it: configure the full chain (leaf + intermediates)")

    def _await(self, ep: VerifyEndpoint, want: str, deadline: float, require_valid: bool,
               quick: bool = False) -> tuple[bool, str]:
        """Handshake until ``want`` has been served steadily: ``confirmations`` handshakes in a row over at
        least ``settle`` seconds (a reloading server keeps old workers serving the old certificate for a
        moment: nginx waits 100 ms before it stops them), or until the deadline. ``quick``: give up at the
        first handshake that does not show ``want``."""
        roots = self._roots_for(ep)
        delay = 0.03
        last: ProbeResult | None = None
        error: str = ""
        attempts = agreeing = 0
        streak_start = 0.0
        needed = max(1, self.req.confirmations)
        while True:
            attempts += 1
            remaining = deadline - time.perf_counter()
            try:
                last = probe(ep.host, ep.port, ep.sni, timeout=max(0.2, min(self.req.probe_timeout, remaining)),
                             ca_bundle=roots)
                error = ""
                self.served = last.fingerprint
                valid, note = self._judge(last, ep, want, roots)
                if last.fingerprint == want and (valid or not require_valid):
                    now = time.perf_counter()
                    if agreeing == 0:
                        streak_start = now
                    agreeing += 1
                    if agreeing >= needed and now - streak_start >= self.req.settle:
                        if not valid:
                            note = f"chain not checked ({last.validation_error})"
                        elif note:
                            warning = f"endpoint {ep}: {note}"
                            if warning not in self.warnings:
                                self.warnings.append(warning)
                        return True, f"{ep} serves {want} ({last.protocol}, {note or 'chain valid'}, " \
                                     f"{attempts} handshake(s))"
                    if now >= deadline:
                        return False, (f"endpoint {ep} served {want} only since {now - streak_start:.2f} s when the "
                                       f"verify timeout ({self.req.verify_timeout:g} s) ran out")
                    time.sleep(min(max(self.req.settle / max(needed - 1, 1), 0.02), 0.1, deadline - now))
                    continue
                agreeing = 0
            except ProbeError as e:
                error = str(e)
                agreeing = 0
            if quick:
                break
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            time.sleep(min(delay, remaining))
            delay = min(delay * 1.5, 0.25)
        if error and last is None:
            return False, f"endpoint {ep} cannot be reached: {error}"
        if error:
            return False, f"endpoint {ep} stopped answering: {error}"
        assert last is not None
        if last.fingerprint == want:
            return False, f"endpoint {ep} serves {want} but its chain does not validate: {last.validation_error}"
        if last.fingerprint == self.old_fp:
            return False, f"endpoint {ep} still serves {self.old_fp}"
        return False, f"endpoint {ep} serves {last.fingerprint}, not {want}"

    def rollback(self, reason: str) -> InstallResult:
        """Step 6: restore, reload, verify the old certificate is served."""
        started = time.perf_counter()
        self._announce("rollback.restore", f"restoring {len(self.files)} file(s) from {self.backup}")
        try:
            for f in self.files:
                atomic_replace(f.real, f.data, (f.uid, f.gid, f.mode))
        except StoreWriteError as e:
            self.record("rollback.restore", False, str(e), started)
            return self.result(FAILED, f"{reason}; ROLLBACK FAILED: {e} (the backup is in {self.backup})")
        self.record("rollback.restore", True, f"{len(self.files)} file(s) restored", started)
        notes = []
        try:
            self.reload("rollback.reload")
        except _Abort as e:
            notes.append(f"the reload after the restore failed too ({e.reason})")
        try:
            self.verify_endpoints("rollback.verify", self.old_fp, require_valid=False)
        except _Abort as e:
            return self.result(FAILED, f"{reason}; restored the old files, but {e.reason}")
        return self.result(ROLLED_BACK, "; ".join([reason, *notes]))

    def already_installed(self) -> InstallResult:
        """The new certificate is in place already (a repeated command, or a retry after a crash)."""
        if self.req.verify:
            started = time.perf_counter()
            served = []
            deadline = started + min(self.req.verify_timeout, self.req.settle + 2 * self.req.probe_timeout)
            for ep in self.req.verify:
                try:
                    ok, _ = self._await(ep, self.new_fp, deadline, self.req.require_valid_chain, quick=True)
                except _Abort:
                    ok = False
                if not ok:
                    break
                served.append(str(ep))
            else:
                self.record("verify", True, f"already served by {', '.join(served)}; nothing written", started)
                return self.result(VERIFIED, "")
        self._load_earlier_backup()
        try:
            self.reload("reload")
            self.verify_endpoints("verify", self.new_fp, self.req.require_valid_chain)
        except _Abort as e:
            if self.backup is None:
                return self.result(FAILED, f"{e.reason} (the new certificate was already in place; no backup of "
                                           "this job to roll back to)")
            self.written = True
            return self.rollback(e.reason)
        return self.result(VERIFIED, "")

    def _load_earlier_backup(self) -> None:
        """This job's backup from an earlier attempt, if it matches the files involved."""
        directory = backup_dir(self.data_dir, self.req.job_id)
        try:
            meta = json.loads((directory / BACKUP_META).read_text("utf-8"))
            by_real = {m["real_path"]: m for m in meta["files"]}
            restored = []
            for f in self.files:
                m = by_real[f.real]
                data = (directory / m["backup"]).read_bytes()
                if hashlib.sha256(data).hexdigest() != m["sha256"]:
                    return
                restored.append(_FileState(f.path, f.real, data, int(m["uid"]), int(m["gid"]), int(m["mode"], 8)))
        except (OSError, ValueError, KeyError, TypeError):
            return
        if meta.get("old_fingerprint") != self.old_fp or meta.get("new_fingerprint") != self.new_fp:
            return
        self.files = restored
        self.backup = directory


def install(request: InstallRequest, data_dir: str | os.PathLike[str], on_step: OnStep | None = None) -> InstallResult:
    """Install ``request`` (see the module doc); never raises for a failed install: see ``result.state``."""
    if request.location.store_type == "windows":   # WindowsInstallRequest: import, rebind IIS/http.sys, verify
        from agent.windows.install import install_windows
        return install_windows(request, data_dir, on_step)  # type: ignore[arg-type]
    return _Run(request, Path(data_dir), on_step).run()


# --------------------------------------------------------------------------- helpers

def _where(loc: LocationKey) -> str:
    return f"{loc.path}" + (f" [{loc.alias}]" if loc.alias else "")


def _store_for(config: AgentConfig, location: LocationKey, store_name: str | None) -> StoreConfig:
    if store_name is not None:
        try:
            return config.store(store_name)
        except KeyError:
            raise InstallError(f"there is no store called {store_name!r} in this agent's configuration") from None
    store = config.store_for(location.path)
    if store is None:
        raise InstallError(f"{location.path} is not in any store of this agent's configuration")
    return store


def _locate_key_file(location: LocationKey, store: StoreConfig) -> str | None:
    """None when the certificate file holds the key itself; else the key file beside it; InstallError if none."""
    try:
        with open(location.path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise InstallError(f"{location.path} cannot be read ({e.strerror or e})") from None
    if location.store_type == "pem" and any(b.is_key for b in pem_blocks(data)):
        return None
    try:
        password = store.read_password()
    except PasswordUnavailable:
        password = None
    ctx = ReadContext(password=lambda: password)
    try:
        entries = reader_for(location.store_type).read(location.path, data, ctx)
    except StoreReadError as e:
        raise InstallError(f"{location.path} cannot be read: {e}") from None
    old = next((e.der for e in entries if e.key.alias == location.alias
                and e.key.chain_index == location.chain_index), None)
    if old is None:
        raise InstallError(f"{location.path} holds no certificate at the requested location")
    found = find_key_file(location.path, old, None, password)
    if found is None:
        raise InstallError(
            f"no file beside {location.path} holds the key of its certificate; name the key file in the request"
        )
    return None if found == os.path.abspath(location.path) else found
