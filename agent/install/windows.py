"""Install a renewed certificate into the Windows certificate store and rebind IIS / http.sys to it.

The same steps as the file pipeline (:mod:`agent.install.files`), with the same
:class:`~agent.install.pipeline.InstallResult` and step records, so the collector shows
them the same way, and the same verification (:func:`agent.install.pipeline.await_served`):

1. ``check``: the new certificate is for the key made on this host; the store
   still holds the certificate the registry expects at ``LocalMachine\\<store>``
   (thumbprint = the location's alias, SHA-256 = the expected old fingerprint;
   anything else was changed out of band and nothing is done); which http.sys
   bindings serve it; whether its key was exportable (the new one is made
   exportable only then).
2. ``backup``: the old certificate stays in the store (it *is* the backup); the
   bindings as they are (every setting) are written to
   ``<data_dir>/backups/<job id>/windows-bindings.json``.
3. ``write``: key + certificate + chain become a PFX in memory, protected by a
   random one-time password (never logged, never written), imported into the
   same store with the old friendly name (intermediates go to LocalMachine\\CA).
4. ``reload``: every http.sys binding (IP:port and SNI Hostname:port) that used
   the old thumbprint is pointed at the new one, keeping its other settings.
5. ``verify``: a TLS handshake with every rebound binding must show the new
   certificate, with a chain that validates for the binding's name.
6. ``cleanup`` (only after ``verify``, when ``remove_replaced`` is on and no
   binding uses it any more): the replaced certificate and its key are removed
   from the store: on purpose, and in the job's steps for the audit trail.

If the rebinding or the verification fails, ``rollback.restore`` points every
binding back at the old thumbprint (with its old store name) and removes the new
certificate (and its key), and ``rollback.verify`` checks the old certificate is
served again: ``rolled_back`` with the reason, or ``failed`` when that could not
be confirmed.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import PrivateFormat, pkcs12
from cryptography.x509.oid import NameOID

from agent.config import AgentConfig
from agent.errors import AgentError, InstallError
from agent.fsutil import atomic_write
from agent.install.pipeline import (FAILED, ROLLED_BACK, VERIFIED, Installer, InstallResult, Judgement, OnStep, Step,
                                    StepBook, StepFailed, backup_dir, chain_roots_pem)
from agent.inventory import LocationKey
from agent.keys import PrivateKey, same_public_key
from agent.probe import ProbeResult, validate_chain
from agent.stores.base import split_chain
from agent.windows.api import WindowsApi, default_api
from agent.windows.errors import RecordFormatError, WindowsStoreError
from agent.windows.records import STORE_LOCATION, StoreRecord, is_exportable, thumbprint_of
from agent.windows.sites import parse_sites
from agent.windows.sslcert import CCS, HOSTNAMEPORT, SslBinding, parse_sslcert
from agent.windows.settings import WindowsSettings

__all__ = ["WindowsInstallRequest", "WindowsInstaller", "install_windows", "BACKUP_FILE", "make_pfx"]

log = logging.getLogger(__name__)

BACKUP_FILE = "windows-bindings.json"


@dataclass(frozen=True)
class WindowsInstallRequest:
    """One install into ``location`` (store_type ``windows``, path ``LocalMachine\\<store>``, alias = old thumbprint)."""

    job_id: str
    location: LocationKey
    key: PrivateKey = field(repr=False, compare=False)
    cert_der: bytes = field(repr=False)
    chain_ders: tuple[bytes, ...] = field(default=(), repr=False)
    expected_old_fingerprint: str = ""
    settings: WindowsSettings = field(default_factory=WindowsSettings)
    ca_bundle: bytes | None = field(default=None, repr=False)
    require_valid_chain: bool = True
    probe_timeout: float = 3.0
    confirmations: int = 3
    settle: float = 0.3

    @property
    def new_fingerprint(self) -> str:
        return hashlib.sha256(self.cert_der).hexdigest()

    @property
    def store_name(self) -> str:
        location, _, name = self.location.path.partition("\\")
        if location != STORE_LOCATION or not name:
            raise InstallError(f"{self.location.path!r} is not a {STORE_LOCATION}\\<store> location")
        return name

    @classmethod
    def from_config(cls, config: AgentConfig, *, job_id: str, location: LocationKey, key: PrivateKey, cert_der: bytes,
                    chain_ders: tuple[bytes, ...] | list[bytes] = (), expected_old_fingerprint: str,
                    ca_bundle: bytes | None = None, **_ignored: Any) -> "WindowsInstallRequest":
        """The request for ``location`` with the agent's ``[windows]`` settings (file-store options do not apply)."""
        settings = config.windows
        req = cls(job_id=job_id, location=location, key=key, cert_der=cert_der, chain_ders=tuple(chain_ders),
                  expected_old_fingerprint=expected_old_fingerprint, settings=settings, ca_bundle=ca_bundle)
        store = req.store_name
        if store.lower() not in (s.lower() for s in settings.stores):
            raise InstallError(f"{location.path} is not one of the stores this agent reads ([windows] stores)")
        return req


def make_pfx(key: PrivateKey, cert_der: bytes, intermediates: list[bytes], password: str, name: str) -> bytes:
    """A PKCS#12 of ``key`` + certificate + intermediates, protected by ``password``.

    PBES1 3DES/SHA-1 with a SHA-1 MAC: the one PFX encryption every supported
    Windows version imports (AES-protected PFX needs Windows Server 2019 /
    Windows 10 1709 or later). The PFX exists only in memory, for one import,
    under a random one-time password.
    """
    enc = (PrivateFormat.PKCS12.encryption_builder().kdf_rounds(50000)
           .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC).hmac_hash(hashes.SHA1())
           .build(password.encode("utf-8")))
    cert = x509.load_der_x509_certificate(cert_der)
    cas = [x509.load_der_x509_certificate(d) for d in intermediates]
    return pkcs12.serialize_key_and_certificates(name.encode("utf-8") or None, key, cert, cas or None, enc)


@dataclass(frozen=True)
class _Check:
    """How one http.sys binding is checked by handshake (a :class:`~agent.install.pipeline.VerifyTarget`)."""

    binding: SslBinding
    host: str                        # where to connect
    port: int
    sni: str | None                  # what the client sends
    name: str                        # what the chain must name
    noun = "binding"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        via = f" (via {host}:{self.port}" + (f", SNI {self.sni}" if self.sni else "") + ")"
        return f"{self.binding.endpoint}{via}"

    def judge(self, r: ProbeResult, want: str, roots: bytes | None) -> Judgement:
        """The chain must validate for the binding's name (the site's host name, or the certificate's)."""
        invalid = "" if (r.validated and (self.sni or self.name == self.host)) else \
            validate_chain(r.leaf_der, r.chain_ders, self.name, roots)
        return Judgement(True, f"chain valid for {self.name}") if not invalid else Judgement(False, problem=invalid)


_Abort = StepFailed   # one exception for a failed step across the pipelines (StepBook raises it too)


def _names_of(cert_der: bytes) -> list[str]:
    cert = x509.load_der_x509_certificate(cert_der)
    names: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names += [n for n in san.get_values_for_type(x509.DNSName) if not n.startswith("*.")]
        names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        pass
    names += [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return names


class _Run(StepBook):
    def __init__(self, req: WindowsInstallRequest, data_dir: Path, on_step: OnStep | None, api: WindowsApi) -> None:
        self.req = req
        self.data_dir = data_dir
        self.on_step = on_step
        self.api = api
        self.settings = req.settings
        self.steps: list[Step] = []
        self.old_fp = (req.expected_old_fingerprint or "").lower().replace(":", "")
        self.new_fp = req.new_fingerprint
        self.old_thumb = (req.location.alias or "").upper()
        self.new_thumb = thumbprint_of(req.cert_der)
        self.store = ""
        self.targets: list[SslBinding] = []
        self.rebound: list[SslBinding] = []
        self.imported = False
        self.new_preexisting = False
        self.exportable = False
        self.friendly_name = ""
        self.old_record: StoreRecord | None = None
        self.records: list[StoreRecord] = []
        self.site_hosts: dict[tuple[str, int], str] = {}
        self.served: str | None = None
        self.verify_seconds: float | None = None
        self.reload_seconds: float | None = None
        self.backup: Path | None = None
        self.warnings: list[str] = []
        self.t0 = time.perf_counter()

    # ----------------------------------------------------------------- bookkeeping

    def result(self, state: str, reason: str) -> InstallResult:
        return self._result(state, reason, self.imported)

    @property
    def where(self) -> str:
        return f"{STORE_LOCATION}\\{self.store}"

    # ----------------------------------------------------------------- the pipeline

    def run(self) -> InstallResult:
        try:
            already = self.check()
            if already:
                return self.already_installed()
            self.make_backup()
            self.write()
        except _Abort as e:
            return self.result(FAILED, e.reason)
        except Exception as e:  # noqa: BLE001 - a bug must fail this install visibly, not the agent
            log.exception("install %s: unexpected error before rebinding", self.req.job_id)
            if self.imported:
                return self.rollback(f"unexpected error: {type(e).__name__} (see the agent log)")
            return self.result(FAILED, f"unexpected error ({type(e).__name__}; see the agent log); nothing was changed")
        try:
            self.rebind()
            self.verify("verify", self.new_fp, self.req.require_valid_chain)
        except _Abort as e:
            return self.rollback(e.reason)
        except BaseException as e:
            log.exception("install %s: unexpected error; rolling back", self.req.job_id)
            res = self.rollback(f"unexpected error: {type(e).__name__}")
            if not isinstance(e, Exception):
                raise
            return res
        self.cleanup()
        return self.result(VERIFIED, "")

    # step 1
    def check(self) -> bool:
        started = time.perf_counter()
        self._announce("check", f"checking {self.req.location.path} [{self.old_thumb}]")
        try:
            already = self._check()
        except _Abort as e:
            self.record("check", False, e.reason, started)
            raise
        if already:
            detail = f"{self.where} already holds {self.new_thumb} and the bindings use it"
        else:
            eps = ", ".join(b.endpoint for b in self.targets) or "none"
            detail = (f"{self.where} holds {self.old_thumb} ({self.old_fp}); key "
                      f"{'exportable' if self.exportable else 'not exportable'}; bindings using it: {eps}")
        self.record("check", True, detail, started)
        return already

    def _check(self) -> bool:
        req = self.req
        try:
            self.store = req.store_name
        except InstallError as e:
            raise _Abort(str(e)) from None
        try:
            cert = x509.load_der_x509_certificate(req.cert_der)
            [x509.load_der_x509_certificate(d) for d in req.chain_ders]
        except ValueError:
            raise _Abort("the new certificate or its chain cannot be parsed") from None
        if not same_public_key(req.key, cert):
            raise _Abort("the new certificate is not for the new key; nothing was changed")
        if not self.old_fp:
            raise _Abort("the install request names no expected old fingerprint")
        try:
            self.records = self.api.list_store(STORE_LOCATION, self.store)
            sslcerts = parse_sslcert(self.api.show_sslcert())
        except (WindowsStoreError, RecordFormatError) as e:
            raise _Abort(f"{e}; nothing was changed") from None
        if self.settings.iis:
            try:
                xml = self.api.list_iis_sites_xml()
                for site in parse_sites(xml) if xml else []:
                    for sb in site.bindings:
                        if sb.host and sb.protocol == "https":
                            self.site_hosts.setdefault((sb.ip, sb.port), sb.host)
            except (WindowsStoreError, RecordFormatError) as e:
                log.info("install %s: IIS sites not read (%s); checking bindings by certificate name", req.job_id, e)
        by_thumb = {r.thumbprint: r for r in self.records}
        old = by_thumb.get(self.old_thumb)
        self.new_preexisting = self.new_thumb in by_thumb
        if old is None:
            if self.new_preexisting and any(b.certificate_hash == self.new_thumb for b in sslcerts):
                self.targets = [b for b in sslcerts if b.certificate_hash == self.new_thumb]
                return True
            raise _Abort(f"changed out of band: {self.where} no longer holds {self.old_thumb}; nothing was changed")
        found = hashlib.sha256(old.der).hexdigest()
        if found != self.old_fp:
            raise _Abort(f"changed out of band: {self.where} [{self.old_thumb}] holds {found}, not {self.old_fp} as "
                         "the registry expects; nothing was changed")
        self.old_record = old
        self.exportable = bool(old.key is not None and is_exportable(old.key.export_policy))
        self.friendly_name = old.friendly_name
        self.targets = [b for b in sslcerts if b.certificate_hash == self.old_thumb and b.kind != CCS]
        return False

    # step 2
    def make_backup(self) -> None:
        started = time.perf_counter()
        directory = backup_dir(self.data_dir, self.req.job_id)
        self._announce("backup", f"recording {len(self.targets)} binding(s) in {directory}")
        doc = {"job_id": self.req.job_id, "store": self.where, "old_thumbprint": self.old_thumb,
               "old_fingerprint": self.old_fp, "new_thumbprint": self.new_thumb, "new_fingerprint": self.new_fp,
               "bindings": [b.to_json() for b in self.targets]}
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            atomic_write(directory / BACKUP_FILE, (json.dumps(doc, indent=2) + "\n").encode(), 0o600)
        except OSError as e:
            reason = f"cannot record the bindings in {directory}: {e.strerror or e}; nothing was changed"
            self.record("backup", False, reason, started)
            raise _Abort(reason) from None
        self.backup = directory
        self.record("backup", True, f"{self.old_thumb} stays in {self.where} until the new one is verified; "
                                    f"{len(self.targets)} binding(s) recorded in {directory / BACKUP_FILE}", started)

    # step 3
    def write(self) -> None:
        started = time.perf_counter()
        self._announce("write", f"importing {self.new_thumb} into {self.where}")
        if self.new_preexisting:
            self.record("write", True, f"{self.new_thumb} is already in {self.where} (an earlier attempt); "
                                       "not imported again", started)
            return
        inter, _roots = split_chain(self.req.chain_ders)
        password = secrets.token_urlsafe(32)        # one-time; lives only in this frame and the API call
        try:
            pfx = make_pfx(self.req.key, self.req.cert_der, inter, password, self.friendly_name)
            thumb = self.api.import_pfx(self.store, pfx, password, self.exportable, self.friendly_name)
        except WindowsStoreError as e:
            self.record("write", False, f"import into {self.where} failed: {e}", started)
            raise _Abort(f"import failed: {e}") from None
        finally:
            del password
        self.imported = True
        if thumb.upper() != self.new_thumb:
            self.record("write", False, f"the import reported {thumb}, not {self.new_thumb}", started)
            raise _Abort(f"the store reported {thumb} for the imported certificate, not {self.new_thumb}")
        self.record("write", True, f"imported {self.new_thumb} into {self.where} with its key "
                                   f"({'exportable' if self.exportable else 'not exportable'}"
                                   f"{', friendly name ' + repr(self.friendly_name) if self.friendly_name else ''}); "
                                   f"{len(inter)} intermediate(s) to {STORE_LOCATION}\\CA", started)

    # step 4
    def rebind(self) -> None:
        if not self.targets:
            return
        started = time.perf_counter()
        self._announce("reload", f"rebinding {len(self.targets)} http.sys binding(s) to {self.new_thumb}")
        for b in self.targets:
            try:
                self.api.update_sslcert(b, self.new_thumb, self.store)
            except WindowsStoreError as e:
                self.reload_seconds = time.perf_counter() - started
                done = ", ".join(x.endpoint for x in self.rebound) or "none"
                self.record("reload", False, f"rebinding {b.endpoint} failed: {e} (rebound before it: {done})",
                            started)
                raise _Abort(f"rebinding {b.endpoint} failed: {e}") from None
            self.rebound.append(b)
        self.reload_seconds = time.perf_counter() - started
        self.record("reload", True, f"rebound {', '.join(b.endpoint for b in self.rebound)} to {self.new_thumb} "
                                    f"in {self.where}", started)

    # step 5
    def checks(self, bindings: list[SslBinding]) -> list[_Check]:
        out = []
        names = _names_of(self.req.cert_der)
        for b in bindings:
            if b.kind == HOSTNAMEPORT:
                out.append(_Check(b, self.settings.verify_address, b.port, b.address, b.address))
                continue
            if b.address in ("0.0.0.0", ""):
                host = "127.0.0.1"
            elif b.address == "::":
                host = "::1"
            else:
                host = b.address
            ip_key = "*" if b.address in ("0.0.0.0", "::") else b.address
            name = self.site_hosts.get((ip_key, b.port)) or (names[0] if names else host)
            out.append(_Check(b, host, b.port, None, name))
        return out

    def _roots_for(self, target: _Check) -> bytes | None:  # type: ignore[override]
        return self.req.ca_bundle if self.req.ca_bundle is not None else chain_roots_pem(self.req.chain_ders)

    def verify(self, step: str, want: str, require_valid: bool, bindings: list[SslBinding] | None = None) -> None:
        checks = self.checks(self.targets if bindings is None else bindings)
        if not checks:
            if step == "verify":
                self.record(step, True, "no http.sys binding uses this certificate: nothing to check by handshake",
                            time.perf_counter())
            return
        self._verify_each(step, checks, "binding", want, self.settings.verify_timeout, require_valid)

    # step 6
    def cleanup(self) -> None:
        if not self.settings.remove_replaced or self.old_record is None:
            return
        started = time.perf_counter()
        self._announce("cleanup", f"removing the replaced {self.old_thumb} from {self.where}")
        try:
            still = [b.endpoint for b in parse_sslcert(self.api.show_sslcert()) if b.certificate_hash == self.old_thumb]
        except (WindowsStoreError, RecordFormatError) as e:
            self.record("cleanup", False, f"kept {self.old_thumb}: the bindings cannot be re-read ({e})", started)
            return
        if still:
            self.record("cleanup", False, f"kept {self.old_thumb} in {self.where}: still used by {', '.join(still)}",
                        started)
            return
        prov = self.old_record.key_prov_info
        shared = prov is not None and any(
            r.key_prov_info is not None and r.key_prov_info.container == prov.container
            and r.thumbprint not in (self.old_thumb, self.new_thumb) for r in self.records)
        try:
            self.api.delete(self.store, self.old_thumb, delete_key=prov is not None and not shared)
        except WindowsStoreError as e:
            self.record("cleanup", False, f"the replaced {self.old_thumb} could not be removed: {e}", started)
            return
        key_note = "and its key" if prov is not None and not shared else \
            ("(its key is kept: another certificate uses it)" if shared else "(it had no key)")
        self.record("cleanup", True, f"removed the replaced {self.old_thumb} {key_note} from {self.where}", started)

    # rollback
    def rollback(self, reason: str) -> InstallResult:
        started = time.perf_counter()
        self._announce("rollback.restore", f"pointing {len(self.rebound)} binding(s) back at {self.old_thumb}")
        problems = []
        for b in self.rebound:
            try:
                self.api.update_sslcert(b, self.old_thumb, b.store_name or "MY")
            except WindowsStoreError as e:
                problems.append(f"{b.endpoint}: {e}")
        removed = ""
        if self.imported and not self.new_preexisting:
            try:
                self.api.delete(self.store, self.new_thumb, delete_key=True)
                removed = f"; removed {self.new_thumb} and its key from {self.where}"
            except WindowsStoreError as e:
                problems.append(f"the new certificate {self.new_thumb} could not be removed: {e}")
        if problems:
            self.record("rollback.restore", False, "; ".join(problems), started)
            return self.result(FAILED, f"{reason}; ROLLBACK INCOMPLETE: {'; '.join(problems)} (the bindings as "
                                       f"they were are in {self.backup / BACKUP_FILE if self.backup else 'the log'})")
        restored = ", ".join(b.endpoint for b in self.rebound) or "no binding had been changed"
        self.record("rollback.restore", True, f"rebound {restored} to {self.old_thumb}{removed}", started)
        try:
            self.verify("rollback.verify", self.old_fp, require_valid=False, bindings=self.rebound)
        except _Abort as e:
            return self.result(FAILED, f"{reason}; restored the old bindings, but {e.reason}")
        return self.result(ROLLED_BACK, reason)

    def already_installed(self) -> InstallResult:
        try:
            self.verify("verify", self.new_fp, self.req.require_valid_chain)
        except _Abort as e:
            return self.result(FAILED, f"{e.reason} (the new certificate was already in place and the old one is "
                                       "gone: nothing to roll back to)")
        return self.result(VERIFIED, "")


class WindowsInstaller(Installer):
    """The Windows certificate store pipeline (see the module doc) for ``windows`` locations.

    ``api``: the Windows boundary (default: the real one, made at each install).
    """

    def __init__(self, api: WindowsApi | None = None) -> None:
        self.api = api

    def request(self, config: AgentConfig, *, job_id: str, location: LocationKey, key: PrivateKey, cert_der: bytes,
                chain_ders: tuple[bytes, ...] | list[bytes] = (), expected_old_fingerprint: str,
                ca_bundle: bytes | None = None) -> WindowsInstallRequest:
        return WindowsInstallRequest.from_config(
            config, job_id=job_id, location=location, key=key, cert_der=cert_der, chain_ders=chain_ders,
            expected_old_fingerprint=expected_old_fingerprint, ca_bundle=ca_bundle)

    def install(self, request: WindowsInstallRequest, data_dir: str | os.PathLike[str],
                on_step: OnStep | None = None) -> InstallResult:
        return install_windows(request, data_dir, on_step, api=self.api)


def install_windows(request: WindowsInstallRequest, data_dir: str | os.PathLike[str],
                    on_step: OnStep | None = None, api: WindowsApi | None = None) -> InstallResult:
    """Install ``request`` (see the module doc); never raises for a failed install: see ``result.state``."""
    try:
        the_api = api if api is not None else default_api()
    except AgentError as e:
        return InstallResult(FAILED, str(e), [], request.new_fingerprint, request.expected_old_fingerprint)
    return _Run(request, Path(data_dir), on_step, the_api).run()
