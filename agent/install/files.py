"""The file pipeline: install a renewed certificate into a store file (PEM, DER, PKCS#12, JKS/JCEKS).

::

    request = InstallRequest.from_config(config, job_id="j-42", location=loc, key=key,
                                         cert_der=cert, chain_ders=chain, expected_old_fingerprint=old_fp)
    result = FileInstaller().install(request, data_dir=config.data_dir, on_step=report)
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
   (paths, owner, group, mode, SHA-256): :mod:`agent.install.reverter`.
3. ``write``: each file atomically (temporary file in its directory, fsync,
   rename), keeping owner, group and mode.
4. ``reload``: the reload action, if any (agent.reload).
5. ``verify``: every endpoint must present the new fingerprint and a chain
   that validates, within ``verify_timeout`` (handshakes are retried: reloads
   finish asynchronously): :func:`agent.install.pipeline.await_served`.

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

import logging
import os
import stat
import time
from pathlib import Path

from cryptography import x509

from agent.config import AgentConfig, Secret, VerifyEndpoint
from agent.errors import PasswordUnavailable, ReloadFailed, StoreWriteError
from agent.install.pipeline import (FAILED, ROLLED_BACK, VERIFIED, Installer, InstallResult, Judgement, OnStep,
                                    Step, StepBook, StepFailed, backup_dir, chain_roots_pem)
from agent.install.file_request import InstallRequest
from agent.install.reverter import FileState, load_backup, restore, save_backup
from agent.inventory import LocationKey
from agent.keys import PrivateKey, load_pem_private_key, same_public_key
from agent.probe import ProbeResult, validate_chain
from agent.scan.globs import covers_resolved
from agent.reload import run_reload
from agent.stores import NewEntry, ReadContext, StoreReadError, WriteTarget, reader_for, writer_for
from agent.stores.base import split_chain
from agent.stores.files import atomic_replace
from agent.stores.pem import pem_blocks

__all__ = ["InstallRequest", "FileInstaller"]

log = logging.getLogger(__name__)

_Abort = StepFailed


class _Endpoint:
    """A store's verify endpoint as a :class:`~agent.install.pipeline.VerifyTarget`.

    A served chain that lacks intermediates validates once the intermediates
    issued with the certificate are added: accepted (when the request's
    ``allow_incomplete_chain``), with a warning, because the service was
    configured that way (a certificate-only file) and refusing would only let
    the old certificate expire.
    """

    noun = "endpoint"

    def __init__(self, ep: VerifyEndpoint, req: InstallRequest) -> None:
        self.ep, self.req = ep, req
        self.host, self.port, self.sni = ep.host, ep.port, ep.sni

    def __str__(self) -> str:
        return str(self.ep)

    def judge(self, r: ProbeResult, want: str, roots: bytes | None) -> Judgement:
        if r.validated:
            return Judgement(True, "chain valid")
        invalid = Judgement(False, problem=r.validation_error)
        if r.fingerprint != want or not self.req.allow_incomplete_chain:
            return invalid
        inter, _ = split_chain(self.req.chain_ders)
        missing = [d for d in inter if d not in r.chain_ders]
        if not missing:
            return invalid
        if validate_chain(r.leaf_der, [*r.chain_ders, *missing], self.ep.sni or self.ep.host, roots):
            return invalid
        return Judgement(True, "the chain validates only with intermediate certificates the service does not send; "
                               "clients without them cannot validate it: configure the full chain (leaf + "
                               "intermediates)", warn=True)


class FileInstaller(Installer):
    """The file pipeline (see the module doc) for pem, der, pkcs12, jks and jceks locations."""

    def request(self, config: AgentConfig, *, job_id: str, location: LocationKey, key: PrivateKey, cert_der: bytes,
                chain_ders: tuple[bytes, ...] | list[bytes] = (), expected_old_fingerprint: str,
                ca_bundle: bytes | None = None) -> InstallRequest:
        return InstallRequest.from_config(config, job_id=job_id, location=location, key=key, cert_der=cert_der,
                                          chain_ders=chain_ders, expected_old_fingerprint=expected_old_fingerprint,
                                          ca_bundle=ca_bundle)

    def install(self, request: InstallRequest, data_dir: str | os.PathLike[str],
                on_step: OnStep | None = None) -> InstallResult:
        return _Run(request, Path(data_dir), on_step).run()


class _Run(StepBook):
    """One install: the steps, with the state rollback needs."""

    def __init__(self, req: InstallRequest, data_dir: Path, on_step: OnStep | None) -> None:
        self.req = req
        self.data_dir = data_dir
        self.on_step = on_step
        self.steps: list[Step] = []
        self.files: list[FileState] = []
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
        return self._result(state, reason, self.written)

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

        if not covers_resolved(req.store, loc.path):
            raise _Abort(f"{loc.path} resolves outside the store {req.store.name!r} (a symlinked directory or "
                         "'..' in the path); nothing was written")
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

    def _examine(self, path: str) -> FileState:
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
        return FileState(path, real, data, st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode))

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
        """Step 2 (agent/install/reverter.py)."""
        started = time.perf_counter()
        directory = backup_dir(self.data_dir, self.req.job_id)
        self._announce("backup", f"backing up {len(self.files)} file(s) to {directory}")
        try:
            save_backup(directory, self.req.job_id, self.req.location, self.old_fp, self.new_fp, self.files)
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
        self._verify_each(step, [_Endpoint(ep, self.req) for ep in endpoints], "endpoint", want,
                          self.req.verify_timeout, require_valid)

    def _roots_for(self, target: _Endpoint) -> bytes | None:  # type: ignore[override]
        ep = target.ep
        if self.req.ca_bundle is not None:
            return self.req.ca_bundle
        if ep.ca_file:
            try:
                with open(ep.ca_file, "rb") as f:
                    return f.read()
            except OSError as e:
                raise _Abort(f"the CA file {ep.ca_file} of endpoint {ep} cannot be read ({e.strerror or e})") from None
        return chain_roots_pem(self.req.chain_ders)

    def rollback(self, reason: str) -> InstallResult:
        """Step 6: restore, reload, verify the old certificate is served."""
        started = time.perf_counter()
        self._announce("rollback.restore", f"restoring {len(self.files)} file(s) from {self.backup}")
        try:
            restore(self.files)
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
                    ok, _ = self._await(_Endpoint(ep, self.req), self.new_fp, deadline, self.req.require_valid_chain,
                                        self.req.verify_timeout, quick=True)
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
        restored = load_backup(directory, self.files, self.old_fp, self.new_fp)
        if restored is not None:
            self.files = restored
            self.backup = directory


def _where(loc: LocationKey) -> str:
    return f"{loc.path}" + (f" [{loc.alias}]" if loc.alias else "")
