"""The internal CA's hierarchy on disk: made (generated mode) or read and checked (imported mode).

:class:`~collector.issuers.internal_ca.InternalCA` holds a :class:`Hierarchy` -- the issuing
key, the intermediate(s) and the root -- from :func:`load_generated`, :func:`load_imported` or
:func:`create_hierarchy` (under :func:`dir_lock`, so that two collectors sharing the directory
never make two hierarchies), and signs with :func:`hash_for` and :func:`aki`.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Union

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from collector.errors import IssuerError
from collector.pki import (
    read_certificates, read_private_key, same_public_key, write_private_file, write_public_file,
)

try:  # POSIX: lock the directory while creating the hierarchy
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

PrivateKey = Union[ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey]

ROOT_KEY_FILE = "root.key"
ROOT_CERT_FILE = "root.pem"
INTERMEDIATE_KEY_FILE = "intermediate.key"
INTERMEDIATE_CERT_FILE = "intermediate.pem"
LOCK_FILE = ".lock"
CLOCK_SKEW = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class Hierarchy:
    key: PrivateKey                           # the issuing (intermediate) key
    issuing: x509.Certificate                 # signs leaves and CRLs
    intermediates: tuple[x509.Certificate, ...]  # issuing first, towards the root
    root: x509.Certificate

    @property
    def expires(self) -> dt.datetime:
        return min(c.not_valid_after_utc for c in (*self.intermediates, self.root))



def create_hierarchy(name: str, d: Path, common_name: str, ca_key_type: str, root_validity: dt.timedelta,
                     intermediate_validity: dt.timedelta, now: dt.datetime) -> Hierarchy:
    """Make the generated mode's root (unless its files are there) and a new intermediate in ``d``;
    call it under :func:`dir_lock`. Keys are written 0600 and never replaced."""
    root_key_path, root_cert_path = d / ROOT_KEY_FILE, d / ROOT_CERT_FILE
    if root_key_path.exists() != root_cert_path.exists():
        present, missing = (root_key_path, root_cert_path) if root_key_path.exists() else (root_cert_path, root_key_path)
        raise IssuerError(
            f"issuer {name!r}: {present} exists but {missing} is missing: restore it from a backup; "
            "remove both only to make a new CA (every certificate it issued must then be replaced)"
        )
    root_key = _read_key(root_key_path) if root_key_path.exists() else None
    root = _read_certs(root_cert_path)[0] if root_key is not None else None
    h, root_key = new_hierarchy(common_name, ca_key_type, root_validity, intermediate_validity, now, root_key, root)
    if not root_key_path.exists():
        write_private_file(root_key_path, _key_pem(root_key), replace=False)
        write_public_file(root_cert_path, h.root.public_bytes(serialization.Encoding.PEM))
    key, inter = h.key, h.issuing
    write_private_file(d / INTERMEDIATE_KEY_FILE, _key_pem(key), replace=False)
    write_public_file(d / INTERMEDIATE_CERT_FILE, inter.public_bytes(serialization.Encoding.PEM))
    return h


def new_hierarchy(common_name: str, ca_key_type: str, root_validity: dt.timedelta,
                  intermediate_validity: dt.timedelta, now: dt.datetime, root_key: PrivateKey | None = None,
                  root: x509.Certificate | None = None,
                  make_key: Callable[[bool], Any] | None = None) -> tuple[Hierarchy, PrivateKey]:
    """A root (unless ``root_key`` and ``root`` are given) and a new intermediate, in memory;
    (the hierarchy, the root key). ``make_key(root)`` makes the keys elsewhere (a PKCS#11 token)."""
    new_key = make_key or (lambda is_root: _new_ca_key(ca_key_type, root=is_root))
    if root_key is None or root is None:
        root_key = new_key(True)
        root_name = _ca_name(f"{common_name} Root CA")
        root = sign_with(
            _ca_builder(root_name, root_name, root_key.public_key(), now, now + root_validity, path_length=1)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False),
            root_key)
    key = new_key(False)
    not_after = min(now + intermediate_validity, root.not_valid_after_utc)
    inter = sign_with(
        _ca_builder(_ca_name(f"{common_name} Intermediate CA"), root.subject, key.public_key(), now,
                    not_after, path_length=0)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(aki(root), critical=False),
        root_key)
    return Hierarchy(key=key, issuing=inter, intermediates=(inter,), root=root), root_key


@contextlib.contextmanager
def dir_lock(directory: Path) -> Iterator[None]:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover
        yield
        return
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def load_generated(d: Path) -> Hierarchy:
    root = _read_certs(d / ROOT_CERT_FILE)[0]
    key = _read_key(d / INTERMEDIATE_KEY_FILE)
    inter = _read_certs(d / INTERMEDIATE_CERT_FILE)
    return _check_hierarchy(key, inter, root, d / INTERMEDIATE_KEY_FILE, d / INTERMEDIATE_CERT_FILE)


def load_imported(root_path: Path, inter_path: Path, key_path: Path) -> Hierarchy:
    roots = _read_certs(root_path)
    if len(roots) != 1:
        raise IssuerError(f"{root_path}: expected exactly one root certificate, found {len(roots)}")
    key = _read_key(key_path)
    inter = _read_certs(inter_path)
    return _check_hierarchy(key, inter, roots[0], key_path, inter_path)


def _check_hierarchy(
    key: PrivateKey, inter: list[x509.Certificate], root: x509.Certificate, key_path: Path, inter_path: Path
) -> Hierarchy:
    # a bundle that ends with the root: drop it
    fp_root = root.fingerprint(hashes.SHA256())
    inter = [c for c in inter if c.fingerprint(hashes.SHA256()) != fp_root]
    if not inter:
        raise IssuerError(f"{inter_path}: holds no intermediate certificate")
    issuing = inter[0]
    if not same_public_key(key, issuing):
        raise IssuerError(f"{key_path} does not belong to the first certificate in {inter_path}")
    for cert in (*inter, root):
        if not _is_ca(cert):
            raise IssuerError(
                f"{cert.subject.rfc4514_string()} is not a CA certificate (basicConstraints CA:TRUE and keyCertSign)"
            )
    try:
        root.verify_directly_issued_by(root)
    except Exception:  # noqa: BLE001
        raise IssuerError(f"the root {root.subject.rfc4514_string()} is not self-signed") from None
    for child, parent in zip(inter, [*inter[1:], root]):
        try:
            child.verify_directly_issued_by(parent)
        except Exception:  # noqa: BLE001
            raise IssuerError(
                f"{child.subject.rfc4514_string()} is not signed by {parent.subject.rfc4514_string()}: "
                f"put the intermediates in {inter_path} in order from the issuing one towards the root"
            ) from None
    return Hierarchy(key=key, issuing=issuing, intermediates=tuple(inter), root=root)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        if not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return False
    except x509.ExtensionNotFound:
        return False
    try:
        return bool(cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign)
    except x509.ExtensionNotFound:
        return True


def _read_key(path: Path) -> PrivateKey:
    return read_private_key(path, IssuerError, what="a CA key")


def _read_certs(path: Path) -> list[x509.Certificate]:
    return read_certificates(path, IssuerError)


def _new_ca_key(kind: str, *, root: bool) -> PrivateKey:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=4096 if root else 3072)
    return ec.generate_private_key(ec.SECP384R1())


def sign_with(builder: Any, key: Any) -> Any:
    """``builder`` (certificate or CRL) signed by ``key``: one of cryptography's, or a key in a
    PKCS#11 token (collector/issuers/pkcs11_signer.py), which signs the builder itself."""
    if hasattr(key, "sign_builder"):
        return key.sign_builder(builder)
    return builder.sign(key, hash_for(key))


def hash_for(key: PrivateKey) -> hashes.HashAlgorithm:
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()


def _ca_name(cn: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "certfleet"),
        x509.NameAttribute(NameOID.COMMON_NAME, cn[:64]),
    ])


def _ca_builder(
    subject: x509.Name, issuer: x509.Name, public_key: Any, now: dt.datetime, not_after: dt.datetime, *, path_length: int
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(random_serial())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    )


def aki(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key())  # type: ignore[arg-type]


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def random_serial() -> int:
    while True:
        serial = secrets.randbits(128)
        if serial >> 64:  # positive, non-zero, and at least 65 bits of entropy shown
            return serial


def sha256_hex(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()
