"""The agent's enrolled identity on disk: its key, its client certificate, the
collector CA and where the collector is.

Layout of ``<data_dir>/identity/`` (see :func:`identity_dir`)::

    agent.key       the agent's private key, PKCS#8 PEM, mode 0600; made here,
                    never sent anywhere
    agent.pem       the agent's client certificate (then any intermediates)
    ca.pem          the collector CA: the only trust anchor for the collector
    collector.json  {"agent_id", "endpoint", "enrolled_at", "renewed_at",
                     "ca_fingerprint_sha256"}

Crash-safe renewal
------------------
A key and its certificate must change together, but two files cannot be
renamed in one atomic step. :func:`save_identity` therefore

1. writes ``agent.key.new`` and ``agent.pem.new`` (each atomically: temp file,
   fsync, rename), keeping ``agent.key``/``agent.pem`` untouched;
2. writes ``ca.pem`` and ``collector.json`` (atomically);
3. renames ``agent.key.new`` -> ``agent.key``, then ``agent.pem.new`` ->
   ``agent.pem``.

:func:`load_identity` picks the first consistent pair among
(``agent.key.new``, ``agent.pem.new``), (``agent.key``, ``agent.pem.new``) and
(``agent.key``, ``agent.pem``): the key must parse, belong to the certificate,
and the certificate must name the agent id in ``collector.json``. Whatever
moment a crash hits, one of those pairs is whole:

- before step 1 completes: only the old pair is consistent (a lone or stale
  ``.new`` file does not match) and the agent keeps its old identity;
- between steps 1 and 3: the ``.new`` pair is complete and is used;
- between the two renames of step 3: the new key already sits in
  ``agent.key`` and pairs with ``agent.pem.new``.

When a ``.new`` pair is chosen, loading finishes the renames (best effort), so
the directory converges to the plain layout. The old identity stays valid at
the collector until the new one is stored, so a renewal interrupted anywhere
can simply be retried.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Union

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from agent.errors import IdentityError
from agent.fsutil import atomic_write, fsync_dir
from agent.keys import same_public_key

if TYPE_CHECKING:  # pragma: no cover
    import grpc

KEY_FILE = "agent.key"
CERT_FILE = "agent.pem"
CA_FILE = "ca.pem"
META_FILE = "collector.json"
NEW_SUFFIX = ".new"
AGENT_URI_PREFIX = "certfleet:agent:"

RENEW_FRACTION = 2 / 3
RENEW_MIN_REMAINING = dt.timedelta(days=7)

NOT_ENROLLED = (
    "this agent is not enrolled: run certfleet-agent enroll --collector HOST:PORT "
    "--token TOKEN --ca-fingerprint SHA256"
)

PrivateKey = Union[ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey]

KEY_KINDS = ("ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096")


@dataclass(frozen=True)
class AgentIdentity:
    """An enrolled identity as loaded from disk.

    ``key_pem``, ``cert_chain_pem`` and ``ca_pem`` are what
    ``grpc.ssl_channel_credentials`` takes (see :meth:`channel_credentials`).
    ``key_pem`` is secret and kept out of ``repr``.
    """

    directory: Path
    key_path: Path
    cert_path: Path
    ca_path: Path
    meta_path: Path
    agent_id: str
    endpoint: str
    enrolled_at: dt.datetime | None
    not_before: dt.datetime
    not_after: dt.datetime
    serial: str
    cert_chain_pem: bytes
    ca_pem: bytes
    key_pem: bytes = field(repr=False)

    def needs_renewal(self, now: dt.datetime) -> bool:
        """:func:`needs_renewal` for this identity's certificate."""
        return needs_renewal(self.not_before, self.not_after, now)

    def channel_credentials(self) -> "grpc.ChannelCredentials":
        """Mutual-TLS credentials: this key and certificate, trusting only the collector CA."""
        import grpc  # the agent depends on grpcio; imported late to keep this module light

        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_pem, private_key=self.key_pem, certificate_chain=self.cert_chain_pem
        )


def identity_dir(data_dir: Path) -> Path:
    """Where the identity lives inside the agent's data directory."""
    return Path(data_dir) / "identity"


# ---------------------------------------------------------------------------
# keys and requests


def make_key_and_csr(kind: str = "ec-p256", common_name: str = "certfleet-agent") -> tuple[PrivateKey, bytes]:
    """Make the agent's private key and a DER certificate signing request for it.

    ``kind`` is one of :data:`KEY_KINDS`. The requested subject is only a
    label: the collector ignores it and decides the identity itself.
    """
    key: PrivateKey
    if kind == "ec-p256":
        key = ec.generate_private_key(ec.SECP256R1())
    elif kind == "ec-p384":
        key = ec.generate_private_key(ec.SECP384R1())
    elif kind.startswith("rsa-") and kind in KEY_KINDS:
        key = rsa.generate_private_key(public_exponent=65537, key_size=int(kind[4:]))
    else:
        raise IdentityError(f"unknown key kind {kind!r}: use one of {', '.join(KEY_KINDS)}")
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    return key, csr.public_bytes(serialization.Encoding.DER)


# ---------------------------------------------------------------------------
# pure renewal decision


def renewal_due_at(not_before: dt.datetime, not_after: dt.datetime) -> dt.datetime:
    """When renewal becomes due: two thirds into the lifetime, or 7 days before
    expiry, whichever is earlier."""
    not_before, not_after = _utc(not_before), _utc(not_after)
    at_fraction = not_before + (not_after - not_before) * RENEW_FRACTION
    return min(at_fraction, not_after - RENEW_MIN_REMAINING)


def needs_renewal(not_before: dt.datetime, not_after: dt.datetime, now: dt.datetime) -> bool:
    """Whether a certificate valid from ``not_before`` to ``not_after`` should be
    renewed at ``now``: once two thirds of its lifetime have passed, or when
    less than 7 days are left. A pure function of its arguments."""
    if _utc(not_after) <= _utc(not_before):
        return True
    return _utc(now) >= renewal_due_at(not_before, not_after)


# ---------------------------------------------------------------------------
# save


def save_identity(
    dir: Path,
    key: PrivateKey,
    cert_der: bytes,
    ca_chain_ders: list[bytes],
    agent_id: str,
    endpoint: str,
    *,
    now: dt.datetime | None = None,
) -> AgentIdentity:
    """Store an identity from enrollment or renewal, crash-safely (see module doc).

    ``ca_chain_ders`` is the collector's CA chain, issuer first; the
    certificate must belong to ``key``, name ``agent_id`` and be signed by a
    certificate in that chain, otherwise nothing is written. ``now`` (default:
    the current time) is recorded as ``enrolled_at`` for a new agent id, or as
    ``renewed_at`` when the same agent id is stored again.
    """
    directory = Path(dir)
    when = _utc(now or dt.datetime.now(dt.timezone.utc))
    cert = _parse_der_cert(cert_der, "the issued certificate")
    if not ca_chain_ders:
        raise IdentityError("the collector sent no CA certificate with the issued certificate")
    chain = [_parse_der_cert(d, "a CA certificate from the collector") for d in ca_chain_ders]
    if not agent_id or not endpoint:
        raise IdentityError("the collector's answer names no agent id or endpoint")
    if not same_public_key(key, cert):
        raise IdentityError("the issued certificate is not for this agent's key")
    if _agent_id_of(cert) != agent_id:
        raise IdentityError(f"the issued certificate does not name agent {agent_id}")
    if not any(_directly_issued(cert, ca) for ca in chain):
        raise IdentityError("the issued certificate is not signed by the collector CA it came with")

    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    intermediates = [c for c in chain if c.subject != c.issuer]
    cert_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [cert, *intermediates])
    ca_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)

    meta = {"agent_id": agent_id, "endpoint": endpoint, "enrolled_at": when.isoformat()}
    try:
        old = json.loads((directory / META_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        old = None
    if isinstance(old, dict) and old.get("agent_id") == agent_id and isinstance(old.get("enrolled_at"), str):
        meta["enrolled_at"] = old["enrolled_at"]  # a renewal: same agent, keep when it enrolled
        meta["renewed_at"] = when.isoformat()
    meta["ca_fingerprint_sha256"] = hashlib.sha256(ca_chain_ders[-1]).hexdigest()

    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_path, cert_path = directory / KEY_FILE, directory / CERT_FILE
    new_key, new_cert = _new(key_path), _new(cert_path)
    try:
        # 1. the new pair beside the old one
        atomic_write(new_key, key_pem, 0o600)
        atomic_write(new_cert, cert_pem, 0o644)
        # 2. trust anchors and metadata
        atomic_write(directory / CA_FILE, ca_pem, 0o644)
        atomic_write(directory / META_FILE, (json.dumps(meta, indent=2) + "\n").encode("utf-8"), 0o644)
        # 3. the swap: key first (load_identity pairs agent.key with agent.pem.new)
        os.replace(new_key, key_path)
        os.replace(new_cert, cert_path)
        fsync_dir(directory)
    except OSError as e:
        raise IdentityError(f"cannot store the agent identity in {directory}: {e.strerror or e}") from None
    return load_identity(directory)


# ---------------------------------------------------------------------------
# load


def load_identity(dir: Path) -> AgentIdentity:
    """Load the enrolled identity from ``dir`` (see module doc for the choice
    between a current and a ``.new`` key/certificate pair).

    Raises :class:`IdentityError` when the agent is not enrolled, when files
    are missing, unreadable or do not belong together, or when the key file is
    readable by group or others.
    """
    directory = Path(dir)
    key_path, cert_path = directory / KEY_FILE, directory / CERT_FILE
    ca_path, meta_path = directory / CA_FILE, directory / META_FILE
    new_key, new_cert = _new(key_path), _new(cert_path)

    files = [key_path, cert_path, ca_path, meta_path]
    present = [p for p in files if p.exists()]
    if not present and not new_key.exists() and not new_cert.exists():
        raise IdentityError(NOT_ENROLLED)
    if not meta_path.exists() or not ca_path.exists():
        missing = ", ".join(p.name for p in (meta_path, ca_path) if not p.exists())
        raise IdentityError(f"the identity in {directory} is incomplete (missing {missing}): enroll this agent again")

    meta = _read_meta(meta_path)
    agent_id, endpoint = meta["agent_id"], meta["endpoint"]
    ca_pem = _read_bytes(ca_path)
    try:
        if not x509.load_pem_x509_certificates(ca_pem):
            raise ValueError
    except ValueError:
        raise IdentityError(f"{ca_path}: not a PEM certificate file: enroll this agent again") from None

    candidates = [(new_key, new_cert), (key_path, new_cert), (key_path, cert_path)]
    chosen = None
    for kp, cp in candidates:
        loaded = _try_pair(kp, cp, agent_id)
        if loaded is not None:
            chosen = (kp, cp, *loaded)
            break
    if chosen is None:
        if not key_path.exists() or not cert_path.exists():
            missing = ", ".join(p.name for p in (key_path, cert_path) if not p.exists())
            raise IdentityError(
                f"the identity in {directory} is incomplete (missing {missing}): enroll this agent again"
            )
        raise IdentityError(
            f"{key_path.name} and {cert_path.name} in {directory} do not belong together or do not name "
            f"agent {agent_id}: enroll this agent again"
        )
    kp, cp, key_pem, cert_pem, cert = chosen
    _check_private_mode(kp)
    if (kp, cp) != (key_path, cert_path):
        kp, cp = _finish_swap(directory, kp, cp)

    enrolled_at = None
    if meta.get("enrolled_at"):
        try:
            enrolled_at = dt.datetime.fromisoformat(meta["enrolled_at"])
        except ValueError:
            enrolled_at = None
    return AgentIdentity(
        directory=directory,
        key_path=kp,
        cert_path=cp,
        ca_path=ca_path,
        meta_path=meta_path,
        agent_id=agent_id,
        endpoint=endpoint,
        enrolled_at=enrolled_at,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        serial=format(cert.serial_number, "x"),
        cert_chain_pem=cert_pem,
        ca_pem=ca_pem,
        key_pem=key_pem,
    )


def _try_pair(key_path: Path, cert_path: Path, agent_id: str) -> tuple[bytes, bytes, x509.Certificate] | None:
    """The pair's (key PEM, cert PEM, leaf) if it is whole and consistent, else None."""
    try:
        key_pem, cert_pem = key_path.read_bytes(), cert_path.read_bytes()
    except OSError:
        return None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
        certs = x509.load_pem_x509_certificates(cert_pem)
    except (ValueError, TypeError):
        return None
    if not certs or not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        return None
    leaf = certs[0]
    if not same_public_key(key, leaf) or _agent_id_of(leaf) != agent_id:
        return None
    return key_pem, cert_pem, leaf


def _finish_swap(directory: Path, key_src: Path, cert_src: Path) -> tuple[Path, Path]:
    """Complete an interrupted swap; on failure keep using the .new files."""
    key_path, cert_path = directory / KEY_FILE, directory / CERT_FILE
    try:
        if key_src != key_path:
            os.replace(key_src, key_path)
        os.replace(cert_src, cert_path)
        fsync_dir(directory)
        return key_path, cert_path
    except OSError:
        return key_src, cert_src


def _read_meta(path: Path) -> dict[str, str]:
    try:
        meta = json.loads(_read_bytes(path).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise IdentityError(f"{path} is not valid JSON: enroll this agent again") from None
    required = ("agent_id", "endpoint")
    if not isinstance(meta, dict) or not all(isinstance(meta.get(k), str) and meta.get(k) for k in required):
        raise IdentityError(f"{path} does not name an agent id and a collector endpoint: enroll this agent again")
    return {k: v for k, v in meta.items() if isinstance(v, str)}


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise IdentityError(f"{path}: cannot read: {e.strerror or e}") from None


# ---------------------------------------------------------------------------
# small helpers (the agent never imports the collector, so these are its own)


def _new(path: Path) -> Path:
    return path.with_name(path.name + NEW_SUFFIX)


def _utc(when: dt.datetime) -> dt.datetime:
    return when.replace(tzinfo=dt.timezone.utc) if when.tzinfo is None else when.astimezone(dt.timezone.utc)


def _parse_der_cert(der: bytes, what: str) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(der)
    except (ValueError, TypeError):
        raise IdentityError(f"{what} is not a valid DER certificate") from None


def _agent_id_of(cert: x509.Certificate) -> str | None:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return None
    ids = [u[len(AGENT_URI_PREFIX):] for u in san.get_values_for_type(x509.UniformResourceIdentifier)
           if u.startswith(AGENT_URI_PREFIX)]
    return ids[0] if len(ids) == 1 else None


def _directly_issued(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _check_private_mode(path: Path) -> None:
    if os.name != "posix":
        return
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError as e:
        raise IdentityError(f"{path}: cannot read: {e.strerror or e}") from None
    if mode & 0o077:
        raise IdentityError(
            f"{path} has mode {mode:04o}: the agent key must be readable by its owner only; "
            f"check who could have read it, then run: chmod 600 {path}"
        )
