"""An internal CA for private PKI: a root and an intermediate that sign service certificates.

This is **not** the collector's identity CA (:mod:`collector.pki`, which signs
agent and admin certificates); it is a separate hierarchy per configured
issuer, kept in ``<data_dir>/issuers/<name>/``::

    root.key           root private key, PKCS#8 PEM, mode 0600   (generated mode only)
    root.pem           root certificate                         (generated mode only)
    intermediate.key   intermediate private key, 0600            (generated mode only)
    intermediate.pem   intermediate certificate                 (generated mode only)
    state.sqlite3      the issued-serial log, revocations and the CRL number

Two ways to get the hierarchy:

- **generated** (default): on first use the collector makes a root (10 years)
  and an intermediate (5 years) with EC P-384 keys (``ca_key_type = "rsa"``:
  RSA 4096/3072). The files are written atomically, keys ``0600``, under a
  lock so two collectors sharing the directory never make two hierarchies.
- **imported**: ``root_cert``, ``intermediate_cert`` and ``intermediate_key``
  name PEM files made elsewhere (the root key stays offline). The
  intermediate file may hold further intermediates after the issuing one,
  in order towards the root. The chain is checked at start-up.

Leaf certificates take their subject (CN) and SANs from the request's
:class:`~collector.domain.templates.SubjectNames`, never from the CSR; key usage and
extended key usage come from the template; each gets a random 128-bit serial,
subject and authority key identifiers and, with ``crl_url`` configured, a CRL
distribution point. The validity is the template's, clamped so it never
outlasts the issuing certificate or anything above it. :meth:`InternalCA.issue`
returns the complete chain: the intermediate(s) in ``chain_ders`` and the
root in ``root_der``.

Config (``[issuers.<name>]``, ``type = "internal_ca"``)::

    common_name = "Example internal"   # generated mode: "<cn> Root CA", "<cn> Intermediate CA"
    ca_key_type = "ec"                 # generated mode: "ec" (P-384) or "rsa"
    root_validity = "3650d"            # generated mode
    intermediate_validity = "1825d"    # generated mode
    root_cert = "/etc/pki/root.pem"    # imported mode: all three together
    intermediate_cert = "/etc/pki/intermediate.pem"
    intermediate_key = "/etc/pki/intermediate.key"   # must be mode 0600
    crl_validity = "7d"                # nextUpdate of produced CRLs
    crl_url = ""                       # put into leaves as CRL distribution point
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from collector.domain.templates import SubjectNames, Template, TemplateConfigError
from collector.errors import IssuerError
from collector.issuers.base import Issued, RevocationReason, prepare_request, utc
from collector.issuers.ca_files import (
    CLOCK_SKEW, INTERMEDIATE_CERT_FILE, Hierarchy, aki, create_hierarchy, dir_lock, load_generated,
    load_imported, new_hierarchy, random_serial, sha256_hex, sign_with,
)
from collector.issuers.settings import check_keys, config_duration, config_path

if TYPE_CHECKING:   # the shared state is handed in by the composition root; only its type is named here
    from collector.issuers.ca_registry import SharedCAState

STATE_FILE = "state.sqlite3"
MIN_LEAF_LIFETIME = dt.timedelta(minutes=1)
DEFAULT_ROOT_VALIDITY = dt.timedelta(days=3650)
DEFAULT_INTERMEDIATE_VALIDITY = dt.timedelta(days=1825)
DEFAULT_CRL_VALIDITY = dt.timedelta(days=7)

CONFIG_KEYS = {
    "type", "common_name", "ca_key_type", "root_validity", "intermediate_validity",
    "root_cert", "intermediate_cert", "intermediate_key", "crl_validity", "crl_url",
}


class InternalCA:
    """A private root + intermediate; implements :class:`Issuer` and the optional abilities
    :class:`SupportsCRL`, :class:`SupportsRoot` and :class:`KnowsIssued`."""

    applies_template_profile = True

    def __init__(
        self,
        name: str,
        directory: Path,
        *,
        root_cert: Path | None = None,
        intermediate_cert: Path | None = None,
        intermediate_key: Path | None = None,
        common_name: str | None = None,
        ca_key_type: str = "ec",
        root_validity: dt.timedelta = DEFAULT_ROOT_VALIDITY,
        intermediate_validity: dt.timedelta = DEFAULT_INTERMEDIATE_VALIDITY,
        crl_validity: dt.timedelta = DEFAULT_CRL_VALIDITY,
        crl_url: str | None = None,
        shared: "SharedCAState | None" = None,
    ) -> None:
        self.name = name
        self.directory = Path(directory)
        self.common_name = common_name or f"certfleet {name}"
        if ca_key_type not in ("ec", "rsa"):
            raise TemplateConfigError(f"issuer {name!r}: ca_key_type must be \"ec\" or \"rsa\"")
        self.ca_key_type = ca_key_type
        self.root_validity = root_validity
        self.intermediate_validity = intermediate_validity
        self.crl_validity = crl_validity
        self.crl_url = crl_url or None
        self._lock = threading.Lock()
        self._hierarchy: Hierarchy | None = None
        self._schema_ready = False
        self.shared = shared
        self.origin = ""
        imported = [root_cert, intermediate_cert, intermediate_key]
        self._imported_paths = imported
        self.imported = any(p is not None for p in imported)
        if self.imported and not all(p is not None for p in imported):
            raise TemplateConfigError(
                f"issuer {name!r}: importing a CA needs root_cert, intermediate_cert and intermediate_key together"
            )
        if shared is not None:
            pass    # the registry holds the hierarchy: read (or made) on first use, see hierarchy()
        elif self.imported:
            self._hierarchy = load_imported(Path(root_cert), Path(intermediate_cert), Path(intermediate_key))  # type: ignore[arg-type]
        elif (self.directory / INTERMEDIATE_CERT_FILE).exists():
            # Fail at start-up, not at the first renewal, when the files are broken.
            self._hierarchy = load_generated(self.directory)

    def __repr__(self) -> str:
        mode = "imported" if self.imported else "generated"
        return f"InternalCA(name={self.name!r}, {mode}, directory={str(self.directory)!r})"

    # -- configuration --------------------------------------------------------

    @classmethod
    def from_config(cls, name: str, cfg: Mapping[str, Any], data_dir: Path, base_dir: Path | None = None,
                    shared: "SharedCAState | None" = None) -> "InternalCA":
        check_keys(name, cfg, CONFIG_KEYS)
        base = Path(base_dir) if base_dir is not None else Path(data_dir)
        return cls(
            name,
            Path(data_dir) / "issuers" / name,
            root_cert=config_path(cfg, "root_cert", base),
            intermediate_cert=config_path(cfg, "intermediate_cert", base),
            intermediate_key=config_path(cfg, "intermediate_key", base),
            common_name=cfg.get("common_name") or None,
            ca_key_type=str(cfg.get("ca_key_type", "ec")),
            root_validity=config_duration(name, cfg, "root_validity", DEFAULT_ROOT_VALIDITY),
            intermediate_validity=config_duration(name, cfg, "intermediate_validity", DEFAULT_INTERMEDIATE_VALIDITY),
            crl_validity=config_duration(name, cfg, "crl_validity", DEFAULT_CRL_VALIDITY),
            crl_url=str(cfg.get("crl_url") or "") or None,
            shared=shared,
        )

    # -- the hierarchy ----------------------------------------------------------

    def hierarchy(self, now: dt.datetime) -> Hierarchy:
        """The root and intermediate(s), made on first use in generated mode."""
        if self._hierarchy is not None:
            return self._hierarchy
        if self.shared is not None:
            with self._lock:
                if self._hierarchy is None:
                    self._hierarchy, self.origin = self.shared.load_or_create(
                        self._load_imported if self.imported else None,
                        lambda make_key=None: new_hierarchy(self.common_name, self.ca_key_type, self.root_validity,
                                                            self.intermediate_validity, utc(now), make_key=make_key),
                        utc(now))
            return self._hierarchy
        with self._lock, dir_lock(self.directory):
            if self._hierarchy is None:
                if (self.directory / INTERMEDIATE_CERT_FILE).exists():
                    self._hierarchy = load_generated(self.directory)
                else:
                    self._hierarchy = create_hierarchy(
                        self.name, self.directory, self.common_name, self.ca_key_type, self.root_validity,
                        self.intermediate_validity, utc(now))
        return self._hierarchy

    def _load_imported(self) -> Hierarchy:
        root_cert, intermediate_cert, intermediate_key = self._imported_paths
        return load_imported(Path(root_cert), Path(intermediate_cert), Path(intermediate_key))  # type: ignore[arg-type]

    def root_der(self, now: dt.datetime) -> bytes:
        """The root certificate (DER): the trust anchor to distribute to clients."""
        return self.hierarchy(now).root.public_bytes(serialization.Encoding.DER)

    # -- issuing ----------------------------------------------------------------

    def issue(self, csr_der: bytes, template: Template, names: SubjectNames, now: dt.datetime) -> Issued:
        csr = prepare_request(self.name, csr_der, template, names)
        now = utc(now)
        h = self.hierarchy(now)
        ceiling = h.expires
        not_before = max(now - CLOCK_SKEW, h.issuing.not_valid_before_utc)
        not_after = min(now + template.validity, ceiling)
        if not_after - now < MIN_LEAF_LIFETIME:
            raise IssuerError(
                f"the issuing CA of {self.name!r} expires on {ceiling.isoformat()}: renew or re-import the "
                "intermediate before issuing"
            )
        public_key = csr.public_key()
        subject = x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, names.common_name)] if names.common_name else []
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(h.issuing.subject)
            .public_key(public_key)  # type: ignore[arg-type]  # checked by csr_matches_template
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(template.key_usage_extension(), critical=True)
            # An empty subject makes the SAN extension critical (RFC 5280 4.2.1.6).
            .add_extension(names.san_extension(), critical=not names.common_name)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)  # type: ignore[arg-type]
            .add_extension(aki(h.issuing), critical=False)
        )
        if template.extended_key_usage:
            builder = builder.add_extension(x509.ExtendedKeyUsage(template.extended_key_usage_oids()), critical=False)
        if self.crl_url:
            builder = builder.add_extension(
                x509.CRLDistributionPoints([x509.DistributionPoint(
                    full_name=[x509.UniformResourceIdentifier(self.crl_url)], relative_name=None,
                    reasons=None, crl_issuer=None,
                )]),
                critical=False,
            )
        if self.shared is not None:
            for _ in range(5):
                serial = random_serial()
                der = sign_with(builder.serial_number(serial), h.key).public_bytes(serialization.Encoding.DER)
                if self.shared.record_issued(format(serial, "x"), sha256_hex(der), not_after, names.all(),
                                             template.name, now):
                    break
            else:  # pragma: no cover - 5 collisions of 128 random bits
                raise IssuerError(f"issuer {self.name!r}: could not draw an unused serial number")
        else:
            serial, der = self._issue_file_mode(builder, h, not_after, names, template, now)
        return Issued(
            certificate_der=der,
            chain_ders=tuple(c.public_bytes(serialization.Encoding.DER) for c in h.intermediates),
            root_der=h.root.public_bytes(serialization.Encoding.DER),
            not_after=not_after,
            serial=format(serial, "x"),
        )

    def _issue_file_mode(self, builder: x509.CertificateBuilder, h: Hierarchy, not_after: dt.datetime,
                         names: SubjectNames, template: Template, now: dt.datetime) -> tuple[int, bytes]:
        with self._state() as db:
            for _ in range(5):
                serial = random_serial()
                der = sign_with(builder.serial_number(serial), h.key).public_bytes(serialization.Encoding.DER)
                try:
                    db.execute(
                        "INSERT INTO issued (serial, fingerprint, not_after, names, template, issued_at)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (format(serial, "x"), sha256_hex(der), not_after.isoformat(),
                         json.dumps(names.all()), template.name, now.isoformat()),
                    )
                except sqlite3.IntegrityError:  # a serial seen before: draw again
                    continue
                return serial, der
        raise IssuerError(f"issuer {self.name!r}: could not draw an unused serial number")  # pragma: no cover

    # -- revocation -------------------------------------------------------------

    def revoke(self, certificate_der: bytes, reason: RevocationReason, now: dt.datetime) -> None:
        """Record a revocation; it shows in the next :meth:`crl_der`.

        ``certificateHold`` can be lifted later with ``removeFromCRL``; any
        other reason is permanent (a later ``keyCompromise`` still replaces a
        milder reason). Repeating a revocation changes nothing.
        """
        reason = RevocationReason.parse(reason)
        now = utc(now)
        h = self.hierarchy(now)
        try:
            cert = x509.load_der_x509_certificate(bytes(certificate_der))
        except ValueError:
            raise IssuerError("not a DER X.509 certificate") from None
        if not _issued_by(cert, h):
            raise IssuerError(
                f"the certificate (issuer {cert.issuer.rfc4514_string()}, serial {cert.serial_number:x}) "
                f"was not issued by {self.name!r}; revoke it at the CA that issued it"
            )
        serial = format(cert.serial_number, "x")

        def decide(current: int | None) -> tuple[str, int]:
            return revocation_action(serial, current, reason)

        if self.shared is not None:
            if self.shared.store.revise(self.name, serial, decide, now, cert.not_valid_after_utc) != "none":
                self.published_crl(now)     # regenerated on each revocation: every collector serves it
            return
        with self._state() as db:
            row = db.execute("SELECT reason FROM revoked WHERE serial = ?", (serial,)).fetchone()
            action, code = decide(None if row is None else int(row[0]))
            if action == "delete":
                db.execute("DELETE FROM revoked WHERE serial = ?", (serial,))
            elif action == "insert":
                db.execute(
                    "INSERT INTO revoked (serial, reason, revoked_at, not_after) VALUES (?, ?, ?, ?)",
                    (serial, code, now.isoformat(), cert.not_valid_after_utc.isoformat()),
                )
            elif action == "update":
                db.execute("UPDATE revoked SET reason = ?, revoked_at = ? WHERE serial = ?",
                           (code, now.isoformat(), serial))
            elif action == "reason":
                db.execute("UPDATE revoked SET reason = ? WHERE serial = ?", (code, serial))

    def issued(self, certificate_der: bytes, now: dt.datetime) -> bool:
        """Whether the issuing CA signed ``certificate_der`` (:class:`KnowsIssued`)."""
        try:
            cert = x509.load_der_x509_certificate(bytes(certificate_der))
        except ValueError:
            return False
        if self.shared is not None:
            if self._hierarchy is None and not self.shared.exists():
                return False    # nothing made yet, so nothing issued (and asking makes nothing)
        elif self._hierarchy is None and not (self.directory / INTERMEDIATE_CERT_FILE).exists():
            return False    # nothing made yet, so nothing issued (and asking makes nothing)
        return _issued_by(cert, self.hierarchy(utc(now)))

    def revocations(self) -> list[tuple[str, RevocationReason, dt.datetime]]:
        """``(serial hex, reason, revoked at)`` of every recorded revocation."""
        if self.shared is not None:
            return [(r.serial, RevocationReason(r.reason), r.revoked_at)
                    for r in self.shared.store.revocations(self.name)]
        with self._state() as db:
            rows = db.execute("SELECT serial, reason, revoked_at FROM revoked ORDER BY revoked_at").fetchall()
        return [(s, RevocationReason(r), dt.datetime.fromisoformat(t)) for s, r, t in rows]

    def crl_der(self, now: dt.datetime) -> bytes:
        """A CRL signed by the issuing CA, listing revoked certificates that have not expired
        (with the registry's state: the current one, identical on every collector)."""
        now = utc(now)
        if self.shared is not None:
            return self.published_crl(now, reuse=True)
        with self._state() as db:
            db.execute("UPDATE meta SET value = value + 1 WHERE key = 'crl_number'")
            number = int(db.execute("SELECT value FROM meta WHERE key = 'crl_number'").fetchone()[0])
            rows = db.execute(
                "SELECT serial, reason, revoked_at FROM revoked WHERE not_after >= ?", (now.isoformat(),)
            ).fetchall()
        return self._sign_crl(now, number, [(s, r, dt.datetime.fromisoformat(t)) for s, r, t in rows])[0]

    def published_crl(self, now: dt.datetime, reuse: bool = False) -> bytes:
        """The registry's current CRL: a new one unless ``reuse`` and the kept one lists every
        revocation and is not past the first half of its validity (so it is renewed well before
        ``nextUpdate``)."""
        assert self.shared is not None
        now = utc(now)
        self.hierarchy(now)

        def fresh(row: Any) -> bool:
            return row.revision == row.current_revision and now < row.next_update - self.crl_validity / 2

        return self.shared.store.make_crl(
            self.name, now, lambda number, rows: self._sign_crl(now, number, [
                (r.serial, r.reason, r.revoked_at) for r in rows]),
            fresh if reuse else None)

    def _sign_crl(self, now: dt.datetime, number: int,
                  rows: list[tuple[str, int, dt.datetime]]) -> tuple[bytes, dt.datetime]:
        h = self.hierarchy(now)
        next_update = max(min(now + self.crl_validity, h.issuing.not_valid_after_utc), now + dt.timedelta(minutes=1))
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(h.issuing.subject)
            .last_update(now)
            .next_update(next_update)
            .add_extension(x509.CRLNumber(number), critical=False)
            .add_extension(aki(h.issuing), critical=False)
        )
        for serial, reason, revoked_at in rows:
            entry = x509.RevokedCertificateBuilder().serial_number(int(serial, 16)).revocation_date(revoked_at)
            if reason != RevocationReason.unspecified:
                entry = entry.add_extension(x509.CRLReason(RevocationReason(reason).to_x509()), critical=False)
            builder = builder.add_revoked_certificate(entry.build())
        crl = sign_with(builder, h.key)
        return crl.public_bytes(serialization.Encoding.DER), next_update

    # -- state ------------------------------------------------------------------

    @contextlib.contextmanager
    def _state(self) -> Iterator[sqlite3.Connection]:
        """One transaction on the state database (made on first use)."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        db = sqlite3.connect(self.directory / STATE_FILE, timeout=30, isolation_level=None)
        try:
            if not self._schema_ready:      # once per process: idempotent, but a write transaction
                db.executescript(_SCHEMA)   # runs outside the transaction below
                self._schema_ready = True
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        finally:
            db.close()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS issued (
    serial TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, not_after TEXT NOT NULL,
    names TEXT NOT NULL, template TEXT NOT NULL, issued_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS revoked (
    serial TEXT PRIMARY KEY, reason INTEGER NOT NULL, revoked_at TEXT NOT NULL, not_after TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('crl_number', 0);
"""


def revocation_action(serial: str, current: int | None, reason: RevocationReason) -> tuple[str, int]:
    """What a revocation does to the recorded one (pure): ``(action, reason code)``, the action one
    of ``insert``, ``update`` (reason and time), ``reason`` (reason only), ``delete``, ``none``.

    ``certificateHold`` can be lifted later with ``removeFromCRL``; any other reason is permanent
    (a later ``keyCompromise`` still replaces a milder reason); repeating changes nothing."""
    hold, kc = RevocationReason.certificate_hold, RevocationReason.key_compromise
    if reason is RevocationReason.remove_from_crl:
        if current is None:
            raise IssuerError(f"serial {serial} is not revoked: there is no hold to remove")
        if current != hold:
            raise IssuerError(f"serial {serial} is revoked for {RevocationReason(current).rfc_name}, which is "
                              "permanent; only a certificateHold can be removed")
        return "delete", current
    if current is None:
        return "insert", int(reason)
    if current == hold and reason is not hold:
        return "update", int(reason)
    if reason is kc and current != kc:
        return "reason", int(reason)
    if reason is hold and current != hold:
        raise IssuerError(f"serial {serial} is already revoked permanently; it cannot be put on hold")
    return "none", current


def _issued_by(cert: x509.Certificate, h: Hierarchy) -> bool:
    try:
        if cert.issuer != h.issuing.subject:
            return False
        cert.verify_directly_issued_by(h.issuing)
    except Exception:  # noqa: BLE001 - wrong issuer, bad signature, unsupported key
        return False
    return True
