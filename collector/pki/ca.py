"""The collector's own certificate authority, for agent and admin identities.

The CA lives in one directory (``<data_dir>/pki`` by default)::

    ca.key       the CA private key, PKCS#8 PEM, mode 0600
    ca.pem       the self-signed CA certificate
    server.key   the key of the collector's TLS server certificate, mode 0600
    server.pem   the chain the collector's TLS listeners present: the server
                 certificate followed by the CA certificate, so that
                 ``certfleet-agent enroll`` can pin the CA by fingerprint

Identities are carried in one URI subject alternative name (collector/pki/identity.py); key
and certificate files are written and read by collector/pki/files.py.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import re
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from collector.errors import PKIError
from collector.pki.files import (
    PrivateKey, cert_pem, check_private_mode, fingerprint_sha256, key_pem, random_serial, read_certificates, read_private_key,
    same_public_key, utc, write_private_file, write_public_file,
)
from collector.pki.identity import ADMIN_ROLES, ADMIN_URI_PREFIX, AGENT_URI_PREFIX, check_name

CA_KEY_FILE = "ca.key"
CA_CERT_FILE = "ca.pem"
SERVER_KEY_FILE = "server.key"
SERVER_CERT_FILE = "server.pem"

CA_LIFETIME = dt.timedelta(days=3650)
SERVER_LIFETIME = dt.timedelta(days=365)
SERVER_RENEW_BEFORE = dt.timedelta(days=30)
CLOCK_SKEW = dt.timedelta(minutes=5)

ACCEPTED_CURVES: tuple[type[ec.EllipticCurve], ...] = (ec.SECP256R1, ec.SECP384R1)
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 8192
_DNS_RE = re.compile(r"(\*\.)?[a-z0-9]([a-z0-9-]{0,62})?(\.[a-z0-9]([a-z0-9-]{0,62})?)*")


# ---------------------------------------------------------------------------
# the CA


class CollectorCA:
    """The collector's CA: a key and a self-signed certificate in one directory."""

    def __init__(self, key: PrivateKey, cert: x509.Certificate, directory: Path | None = None) -> None:
        if not same_public_key(key, cert):
            raise PKIError("the CA key does not belong to the CA certificate")
        self._key = key
        self.certificate = cert
        self.directory = directory

    def __repr__(self) -> str:
        subject = self.certificate.subject.rfc4514_string()
        return f"CollectorCA(subject={subject!r}, fingerprint={self.fingerprint_sha256})"

    def sign(self, data: bytes) -> bytes:
        """A signature of ``data`` by the CA key (audit checkpoints): whoever trusts the CA certificate
        can check it (collector/domain/auditchain.py ``checkpoint_signed``), without any secret."""
        if isinstance(self._key, ec.EllipticCurvePrivateKey):
            return self._key.sign(data, ec.ECDSA(hashes.SHA256()))
        return self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    # -- creation and loading ------------------------------------------------

    @classmethod
    def load_or_create(
        cls, dir: Path, now: dt.datetime, common_name: str = "certfleet collector CA"
    ) -> "CollectorCA":
        """Load the CA from ``dir``, or create it there on first start.

        Creation makes an EC P-256 key and a self-signed certificate valid for
        10 years (basicConstraints CA, pathlen 0; keyUsage keyCertSign and
        cRLSign; subject key identifier). The key is written first, then the
        certificate; if only one of the two files exists the CA is not
        silently replaced: a :class:`PKIError` says what to restore.

        A key file accessible to group or others is refused.
        """
        directory = Path(dir)
        key_path, cert_path = directory / CA_KEY_FILE, directory / CA_CERT_FILE
        has_key, has_cert = key_path.exists(), cert_path.exists()
        if has_key and has_cert:
            return cls._load(directory, now)
        if has_key != has_cert:
            present, missing = (key_path, cert_path) if has_key else (cert_path, key_path)
            raise PKIError(
                f"{present} exists but {missing} is missing: restore it from a backup (or retry if a "
                "collector is creating the CA right now); remove both only if you mean to create a new CA "
                "(every agent must then enroll again)"
            )
        try:
            return cls._create(directory, utc(now), common_name)
        except OSError as e:
            raise PKIError(f"cannot create the collector CA in {directory}: {e.strerror or e}") from None

    @classmethod
    def _load(cls, directory: Path, now: dt.datetime) -> "CollectorCA":
        key_path, cert_path = directory / CA_KEY_FILE, directory / CA_CERT_FILE
        key = read_private_key(key_path)
        certs = read_certificates(cert_path)
        if len(certs) != 1:
            raise PKIError(f"{cert_path}: expected exactly one certificate, found {len(certs)}")
        cert = certs[0]
        if not _is_ca(cert):
            raise PKIError(f"{cert_path}: the certificate is not a CA certificate")
        if not same_public_key(key, cert):
            raise PKIError(f"{key_path} does not belong to the certificate in {cert_path}")
        if cert.not_valid_after_utc <= utc(now):
            raise PKIError(
                f"the collector CA in {cert_path} expired on {cert.not_valid_after_utc.isoformat()}"
            )
        return cls(key, cert, directory)

    @classmethod
    def _create(cls, directory: Path, now: dt.datetime, common_name: str) -> "CollectorCA":
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        made = cls._create_in_memory(now, common_name)
        key, cert = made._key, made.certificate
        key_path = directory / CA_KEY_FILE
        # No clobbering: two collectors starting at once on a shared directory
        # must not both create a CA.
        try:
            write_private_file(key_path, key_pem(key), replace=False)
        except FileExistsError:
            raise PKIError(f"{key_path} appeared while creating the CA: another collector is starting; retry") from None
        write_public_file(directory / CA_CERT_FILE, cert_pem(cert))
        return cls(key, cert, directory)

    @classmethod
    def _create_in_memory(cls, now: dt.datetime, common_name: str = "certfleet collector CA") -> "CollectorCA":
        """A new CA (EC P-256, 10 years), written nowhere (collector/pki/shared.py keeps it in the registry)."""
        now = utc(now)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "certfleet"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ])
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(random_serial())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    # -- what it is -----------------------------------------------------------

    @property
    def cert_der(self) -> bytes:
        """The CA certificate, DER."""
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate, PEM."""
        return cert_pem(self.certificate)

    @property
    def fingerprint_sha256(self) -> str:
        """Lower-case hex SHA-256 of the CA certificate's DER: what operators pin."""
        return fingerprint_sha256(self.cert_der)

    # -- issuing ------------------------------------------------------------

    def _builder(
        self, subject: x509.Name, public_key: object, now: dt.datetime, lifetime: dt.timedelta
    ) -> x509.CertificateBuilder:
        not_after = min(now + lifetime, self.certificate.not_valid_after_utc)
        if lifetime <= dt.timedelta(0) or not_after <= now:
            raise PKIError("the certificate lifetime must be positive and within the CA's validity")
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(public_key)  # type: ignore[arg-type]
            .serial_number(random_serial())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)  # type: ignore[arg-type]
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False
            )
        )

    @staticmethod
    def _key_usage(public_key: object) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=True, content_commitment=False,
            key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
            data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False,
        )

    def issue_agent_certificate(
        self, csr_der: bytes, agent_id: str, now: dt.datetime, lifetime: dt.timedelta = dt.timedelta(days=30)
    ) -> x509.Certificate:
        """Issue an agent's client certificate for the key in ``csr_der``.

        The CSR's signature must verify and its key must be EC P-256/P-384 or
        RSA of at least 2048 bits. Its requested subject and extensions are
        ignored: the collector decides the identity (CN ``agent_id`` and URI
        SAN ``certfleet:agent:<agent_id>``). EKU clientAuth, random 128-bit
        serial, valid from ``now`` - 5 minutes (clock skew) for ``lifetime``
        (never beyond the CA's own expiry).
        """
        check_name(agent_id, "agent id")
        public_key = _checked_csr_key(csr_der)
        now = utc(now)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, agent_id)])
        return (
            self._builder(subject, public_key, now, lifetime)
            .add_extension(self._key_usage(public_key), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(AGENT_URI_PREFIX + agent_id)]),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )

    def issue_admin_certificate(
        self, name: str, role: str, now: dt.datetime, lifetime: dt.timedelta = dt.timedelta(days=365)
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """Make an admin's key and client certificate (CN ``name``, URI SAN
        ``certfleet:admin:<role>:<name>``, EKU clientAuth).

        The key is made here because ``init-admin`` runs on the collector host;
        the caller writes it with :func:`write_private_file`.
        """
        check_name(name, "admin name")
        if role not in ADMIN_ROLES:
            raise PKIError(f"unknown role {role!r}: use one of {', '.join(ADMIN_ROLES)}")
        now = utc(now)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (
            self._builder(subject, key.public_key(), now, lifetime)
            .add_extension(self._key_usage(key.public_key()), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(f"{ADMIN_URI_PREFIX}{role}:{name}")]
                ),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        return cert, key

    def server_identity(self, dir: Path, names: list[str], now: dt.datetime) -> tuple[Path, Path]:
        """The collector's TLS server certificate: ``(dir/server.pem, dir/server.key)``.

        ``names`` are DNS names and IP addresses, all put in the subject
        alternative name (EKU serverAuth). The existing certificate is kept
        unless it is missing, unreadable, not issued by this CA, not matching
        its key, expiring within 30 days, or its names differ from ``names``;
        then a new key and certificate are made.

        ``server.pem`` holds the chain **server certificate, then CA
        certificate**: load it as the listener's certificate chain so clients
        receive the CA, which ``certfleet-agent enroll`` pins by fingerprint.
        """
        directory = Path(dir)
        now = utc(now)
        wanted = _parse_names(names)
        cert_path, key_path = directory / SERVER_CERT_FILE, directory / SERVER_KEY_FILE
        if self._server_identity_current(cert_path, key_path, wanted, now):
            return cert_path, key_path

        key = ec.generate_private_key(ec.SECP256R1())
        first = str(wanted[0].value)[:64]
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, first)])
        cert = (
            self._builder(subject, key.public_key(), now, SERVER_LIFETIME)
            .add_extension(self._key_usage(key.public_key()), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(wanted), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        # Key first: after a crash between the two writes the old certificate
        # no longer matches the key, and the next start issues again.
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_private_file(key_path, key_pem(key))
            write_public_file(cert_path, cert_pem(cert) + self.cert_pem)
        except OSError as e:
            raise PKIError(
                f"cannot write the collector's server certificate in {directory}: {e.strerror or e}"
            ) from None
        return cert_path, key_path

    def _server_identity_current(
        self, cert_path: Path, key_path: Path, wanted: list[x509.GeneralName], now: dt.datetime
    ) -> bool:
        if not (cert_path.exists() and key_path.exists()):
            return False
        check_private_mode(key_path)  # a key readable by others is refused loudly
        try:
            key = read_private_key(key_path)
        except PKIError:
            return False  # unreadable or corrupt: make a new one
        try:
            chain = x509.load_pem_x509_certificates(cert_path.read_bytes())
        except (OSError, ValueError):
            return False
        if len(chain) != 2 or chain[1] != self.certificate:
            return False
        cert = chain[0]
        if not self.issued(cert) or not same_public_key(key, cert):
            return False
        if cert.not_valid_after_utc - now < SERVER_RENEW_BEFORE:
            return False
        try:
            have = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return False
        return _name_set(list(have)) == _name_set(wanted)

    def issued(self, cert: x509.Certificate) -> bool:
        """Whether ``cert`` was signed by this CA (issuer name and signature)."""
        try:
            cert.verify_directly_issued_by(self.certificate)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True


# ---------------------------------------------------------------------------
# helpers for requests, names and identities


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _checked_csr_key(csr_der: bytes) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    try:
        csr = x509.load_der_x509_csr(csr_der)
    except (ValueError, TypeError):
        raise PKIError("the certificate signing request is not a valid DER-encoded PKCS#10 request") from None
    try:
        valid = csr.is_signature_valid
        public_key = csr.public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise PKIError("the certificate signing request uses an unsupported key or signature algorithm") from None
    if not valid:
        raise PKIError("the certificate signing request's signature does not verify: it was altered or corrupted")
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if not isinstance(public_key.curve, ACCEPTED_CURVES):
            raise PKIError(
                f"the request's EC key uses curve {public_key.curve.name}: use P-256 (secp256r1) or P-384 (secp384r1)"
            )
        return public_key
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < MIN_RSA_BITS:
            raise PKIError(
                f"the request's RSA key has {public_key.key_size} bits: at least {MIN_RSA_BITS} are required"
            )
        if public_key.key_size > MAX_RSA_BITS:
            raise PKIError(f"the request's RSA key has {public_key.key_size} bits: at most {MAX_RSA_BITS} are accepted")
        return public_key
    raise PKIError(
        f"the request's key type ({type(public_key).__name__}) is not accepted: use EC P-256/P-384 or RSA >= 2048 bits"
    )


def _parse_names(names: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    seen: set[tuple[str, str]] = set()
    for raw in names:
        name = str(raw).strip()
        if not name:
            continue
        general: x509.GeneralName
        try:
            general = x509.IPAddress(ipaddress.ip_address(name.strip("[]")))
        except ValueError:
            dns = name.lower().rstrip(".")
            if len(dns) > 253 or not _DNS_RE.fullmatch(dns):
                raise PKIError(f"server name {name!r} is neither a DNS name nor an IP address") from None
            general = x509.DNSName(dns)
        key = _name_key(general)
        if key not in seen:
            seen.add(key)
            out.append(general)
    if not out:
        raise PKIError("the collector's server certificate needs at least one DNS name or IP address")
    return out


def _name_key(name: x509.GeneralName) -> tuple[str, str]:
    return (type(name).__name__, str(name.value))


def _name_set(names: list[x509.GeneralName]) -> frozenset[tuple[str, str]]:
    return frozenset(_name_key(n) for n in names)

