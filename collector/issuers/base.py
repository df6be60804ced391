"""The one small interface every issuer implements, and what it hands back.

An issuer signs a certificate for a CSR made on the host (the collector never
sees the key) under a named :class:`~collector.domain.templates.Template`, and revokes
certificates with an RFC 5280 reason. Abilities only some issuers have are
separate protocols, checked with ``isinstance``:

- :class:`SupportsCRL`: it publishes a certificate revocation list;
- :class:`SupportsRoot`: it knows the root its chains lead to (the trust anchor an agent
  verifies a new certificate against);
- :class:`KnowsIssued`: it can tell whether it issued a given certificate (it holds the
  issuing CA), so a revocation goes to it first and to no other issuer.

Every issuer runs the same checks first (:func:`prepare_request`): the CSR
parses and its signature verifies, the template belongs to this issuer, the
CSR's key is what the template asks for, and every name is allowed by the
template. Subject and SANs of the certificate come from ``names``, never from
the CSR (ACME adds one rule: the CSR must carry exactly those names, see
:mod:`collector.issuers.acme`).

Chains
------
:class:`Issued` keeps the leaf, the **intermediates** (``chain_ders``, the
issuer of the leaf first, the root excluded: what a TLS server sends after its
certificate and what ``fullchain.pem`` holds after the leaf) and the **root**
(``root_der``, the trust anchor; ``None`` when the issuer does not know it,
e.g. an ACME server whose chain stops below the root).
"""
from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from collector.errors import IssuerError
from collector.domain.templates import SubjectNames, Template, check_request, csr_matches_template

__all__ = [
    "Issuer", "KnowsIssued", "SupportsCRL", "SupportsRoot", "Issued", "RevocationReason", "IssuerError",
    "load_csr", "prepare_request", "utc",
]


class RevocationReason(enum.IntEnum):
    """RFC 5280 CRLReason codes (7 is not used)."""

    unspecified = 0
    key_compromise = 1
    ca_compromise = 2
    affiliation_changed = 3
    superseded = 4
    cessation_of_operation = 5
    certificate_hold = 6
    remove_from_crl = 8
    privilege_withdrawn = 9
    aa_compromise = 10

    @property
    def rfc_name(self) -> str:
        """The name RFC 5280 uses, e.g. ``keyCompromise``."""
        return _RFC_NAMES[self]

    @classmethod
    def parse(cls, value: "str | int | RevocationReason") -> "RevocationReason":
        """From a code, the RFC name (``keyCompromise``) or the snake/kebab form (``key-compromise``)."""
        if isinstance(value, RevocationReason):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                return cls(value)
            except ValueError:
                pass
        elif isinstance(value, str):
            key = value.strip().replace("-", "").replace("_", "").lower()
            for member in cls:
                if key in (member.name.replace("_", ""), member.rfc_name.lower()) or key == str(member.value):
                    return member
        raise IssuerError(
            f"unknown revocation reason {value!r}; use one of: {', '.join(m.rfc_name for m in cls)}"
        )

    def to_x509(self) -> x509.ReasonFlags:
        return _X509_FLAGS[self]


_RFC_NAMES = {
    RevocationReason.unspecified: "unspecified",
    RevocationReason.key_compromise: "keyCompromise",
    RevocationReason.ca_compromise: "cACompromise",
    RevocationReason.affiliation_changed: "affiliationChanged",
    RevocationReason.superseded: "superseded",
    RevocationReason.cessation_of_operation: "cessationOfOperation",
    RevocationReason.certificate_hold: "certificateHold",
    RevocationReason.remove_from_crl: "removeFromCRL",
    RevocationReason.privilege_withdrawn: "privilegeWithdrawn",
    RevocationReason.aa_compromise: "aACompromise",
}
_X509_FLAGS = {
    RevocationReason.unspecified: x509.ReasonFlags.unspecified,
    RevocationReason.key_compromise: x509.ReasonFlags.key_compromise,
    RevocationReason.ca_compromise: x509.ReasonFlags.ca_compromise,
    RevocationReason.affiliation_changed: x509.ReasonFlags.affiliation_changed,
    RevocationReason.superseded: x509.ReasonFlags.superseded,
    RevocationReason.cessation_of_operation: x509.ReasonFlags.cessation_of_operation,
    RevocationReason.certificate_hold: x509.ReasonFlags.certificate_hold,
    RevocationReason.remove_from_crl: x509.ReasonFlags.remove_from_crl,
    RevocationReason.privilege_withdrawn: x509.ReasonFlags.privilege_withdrawn,
    RevocationReason.aa_compromise: x509.ReasonFlags.aa_compromise,
}


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate an issuer made.

    ``chain_ders``: the intermediates, the leaf's issuer first, without the leaf
    and without the root. ``root_der``: the root the chain leads to, or ``None``
    when the issuer does not know it. ``serial``: lower-case hex, no separators.
    """

    certificate_der: bytes
    chain_ders: tuple[bytes, ...]
    root_der: bytes | None
    not_after: dt.datetime
    serial: str

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.certificate_der)

    def fullchain_ders(self) -> list[bytes]:
        """Leaf then intermediates: what a server presents (no root)."""
        return [self.certificate_der, *self.chain_ders]

    def fullchain_pem(self) -> bytes:
        return b"".join(_pem(d) for d in self.fullchain_ders())

    def chain_pem(self) -> bytes:
        """Intermediates only, PEM (a ``chain.pem``)."""
        return b"".join(_pem(d) for d in self.chain_ders)


def _pem(der: bytes) -> bytes:
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


@runtime_checkable
class Issuer(Protocol):
    """A certificate authority the collector can ask for certificates.

    ``applies_template_profile`` says whether the issuer puts the template's
    validity, key usage and extended key usage into the certificate (the
    internal CA does; an ACME CA decides those itself). Every issuer checks
    the names against the template and the CSR's key against the template.
    """

    name: str
    applies_template_profile: bool

    def issue(self, csr_der: bytes, template: Template, names: SubjectNames, now: dt.datetime) -> Issued:
        """Sign a certificate for the CSR's public key with ``names`` under ``template``.

        Raises :class:`IssuerError` (message safe to show) when the request is
        refused or the CA fails.
        """
        ...

    def revoke(self, certificate_der: bytes, reason: RevocationReason, now: dt.datetime) -> None:
        """Revoke a certificate this issuer issued. Repeating it is harmless."""
        ...


@runtime_checkable
class SupportsCRL(Protocol):
    """An issuer that publishes a certificate revocation list."""

    def crl_der(self, now: dt.datetime) -> bytes:
        """A freshly signed CRL (DER) listing the revoked, unexpired certificates."""
        ...


@runtime_checkable
class SupportsRoot(Protocol):
    """An issuer that knows the root certificate its chains lead to."""

    def root_der(self, now: dt.datetime) -> bytes:
        """The root certificate (DER): the trust anchor for what this issuer issues."""
        ...


@runtime_checkable
class KnowsIssued(Protocol):
    """An issuer that can tell the certificates it issued from any other (an issuer without this
    ability, e.g. an ACME CA, can only try a revocation and see whether the CA accepts it)."""

    def issued(self, certificate_der: bytes, now: dt.datetime) -> bool:
        """Whether this issuer issued ``certificate_der`` (False for anything that does not parse)."""
        ...


# ---------------------------------------------------------------------------
# shared checks


def utc(now: dt.datetime) -> dt.datetime:
    """``now`` as an aware UTC datetime; a naive value is taken to be UTC."""
    if now.tzinfo is None:
        return now.replace(tzinfo=dt.timezone.utc)
    return now.astimezone(dt.timezone.utc)


def load_csr(csr_der: bytes) -> x509.CertificateSigningRequest:
    """Parse a DER (or PEM) CSR and verify its self-signature."""
    if not isinstance(csr_der, (bytes, bytearray)) or not csr_der:
        raise IssuerError("no certificate signing request was given")
    data = bytes(csr_der)
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            csr = x509.load_pem_x509_csr(data)
        else:
            csr = x509.load_der_x509_csr(data)
    except ValueError:
        raise IssuerError("the certificate signing request is not a valid PKCS#10 CSR") from None
    try:
        valid = csr.is_signature_valid
    except Exception:  # noqa: BLE001 - unsupported algorithm or malformed key
        valid = False
    if not valid:
        raise IssuerError(
            "the CSR's signature does not verify: it was altered or not made with the key it carries; "
            "make a new CSR on the host"
        )
    return csr


def prepare_request(
    issuer_name: str, csr_der: bytes, template: Template, names: SubjectNames
) -> x509.CertificateSigningRequest:
    """The checks every issuer runs before issuing; returns the parsed CSR."""
    if template.issuer != issuer_name:
        raise IssuerError(
            f"the template {template.name!r} belongs to the issuer {template.issuer!r}, not {issuer_name!r}"
        )
    csr = load_csr(csr_der)
    csr_matches_template(csr, template)
    check_request(template, names)
    return csr
