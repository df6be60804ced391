"""Named issuance templates, the names a certificate is for, and the checks between them.

A template is data: which issuer signs, which key the agent must make, how long
the certificate lives, its key usages and which names it may carry. Templates
come from the collector's configuration (``[templates.<name>]``, read by
collector/config/templates.py); a :class:`Template` made in code gets the same checks.

Name patterns
-------------
A DNS pattern is compared label by label, case-insensitively:

- a literal label matches itself; a label with ``*``, ``?`` or ``[...]``
  matches like :func:`fnmatch.fnmatchcase` **within that label**
  (``web-*.example.com`` matches ``web-1.example.com``);
- ``*`` matches exactly one label: ``*.example.com`` allows
  ``www.example.com`` but not ``a.b.example.com`` and not ``example.com``;
- a leading ``**`` matches one or more labels: ``**.example.com`` allows any
  name below ``example.com``; the pattern ``**`` alone allows every DNS name.

An IP pattern is a network (``10.0.0.0/8``, ``2001:db8::/32``) or a single
address; an IP SAN is allowed when it lies in one of them. DNS patterns never
allow IP addresses and IP patterns never allow DNS names.

A requested wildcard name (``*.example.com``) needs ``allow_wildcards = true``
and a pattern whose label in that position is ``*`` or ``**``.
"""
from __future__ import annotations

import datetime as dt
import fnmatch
import ipaddress
import re
from dataclasses import dataclass, field


from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from collector.errors import ConfigError, IssuerError

__all__ = [
    "Template", "SubjectNames", "TemplateConfigError",
    "check_request", "csr_matches_template", "as_network",
    "KEY_TYPES", "RSA_KEY_SIZES", "EC_CURVES", "KEY_USAGES", "EXTENDED_KEY_USAGES", "DOTTED_OID", "MAX_VALIDITY",
]


class TemplateConfigError(ConfigError, IssuerError):
    """A template (or issuer) definition in the configuration is unusable."""


KEY_TYPES = ("rsa", "ec")
RSA_KEY_SIZES = (2048, 3072, 4096)
EC_CURVES: dict[str, type[ec.EllipticCurve]] = {"P-256": ec.SECP256R1, "P-384": ec.SECP384R1}
_CURVE_BY_CRYPTO_NAME = {"secp256r1": "P-256", "secp384r1": "P-384"}

# keyUsage bits a leaf template may ask for (keyCertSign/cRLSign are for CAs only).
KEY_USAGES = (
    "digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
    "key_agreement", "encipher_only", "decipher_only",
)

EXTENDED_KEY_USAGES: dict[str, ObjectIdentifier] = {
    "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH,
    "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "codeSigning": ExtendedKeyUsageOID.CODE_SIGNING,
    "emailProtection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "timeStamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "OCSPSigning": ExtendedKeyUsageOID.OCSP_SIGNING,
}
DOTTED_OID = re.compile(r"[0-2](\.(0|[1-9][0-9]*))+")

_LABEL_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
MAX_VALIDITY = dt.timedelta(days=3650)


# ---------------------------------------------------------------------------
# the template


@dataclass(frozen=True, slots=True)
class Template:
    """A named issuance template (see the module docstring for the config form).

    ``key_size`` is set for RSA templates and ``curve`` for EC templates; the
    other is ``None``. ``key_usage`` holds keyUsage names as in
    :data:`KEY_USAGES`; ``extended_key_usage`` holds names from
    :data:`EXTENDED_KEY_USAGES` or dotted OIDs. ``allowed_san_patterns`` keeps
    the patterns as written (lower-cased); see :func:`check_request`.
    """

    name: str
    issuer: str
    key_type: str
    key_size: int | None
    curve: str | None
    validity: dt.timedelta
    key_usage: tuple[str, ...]
    extended_key_usage: tuple[str, ...]
    allowed_san_patterns: tuple[str, ...]
    allow_wildcards: bool = False

    def __post_init__(self) -> None:
        # A template made in code gets the same checks as one from the config.
        for f in ("key_usage", "extended_key_usage", "allowed_san_patterns"):
            value = getattr(self, f)
            if isinstance(value, str):
                raise TemplateConfigError(f"template {self.name!r}: {f} must be a list, not a string")
            object.__setattr__(self, f, tuple(value))
        _validate(self)

    def key_usage_extension(self) -> x509.KeyUsage:
        ku = set(self.key_usage)
        return x509.KeyUsage(
            digital_signature="digital_signature" in ku,
            content_commitment="content_commitment" in ku,
            key_encipherment="key_encipherment" in ku,
            data_encipherment="data_encipherment" in ku,
            key_agreement="key_agreement" in ku,
            key_cert_sign=False,
            crl_sign=False,
            encipher_only="encipher_only" in ku,
            decipher_only="decipher_only" in ku,
        )

    def extended_key_usage_oids(self) -> list[ObjectIdentifier]:
        return [EXTENDED_KEY_USAGES.get(e) or ObjectIdentifier(e) for e in self.extended_key_usage]

    def describe_key(self) -> str:
        return f"RSA {self.key_size}" if self.key_type == "rsa" else f"EC {self.curve}"

    def key_spec(self) -> str:
        """The key the agent is asked to make: ``rsa-3072``, ``ec-p256`` (the wire's PrepareRenewal.key_spec)."""
        if self.key_type == "rsa":
            return f"rsa-{self.key_size}"
        return "ec-" + (self.curve or "").lower().replace("-", "")


def as_network(p: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    if not any(c in p for c in ":/") and not re.fullmatch(r"[0-9.]+", p):
        return None
    try:
        return ipaddress.ip_network(p, strict=False)
    except ValueError:
        return None


def _validate(t: Template) -> None:
    where = f"template {t.name!r}"
    if t.key_type not in KEY_TYPES:
        raise TemplateConfigError(f"{where}: key_type {t.key_type!r} is not one of: rsa, ec")
    if t.key_type == "rsa" and (t.key_size not in RSA_KEY_SIZES or t.curve is not None):
        raise TemplateConfigError(f"{where}: an rsa template needs key_size 2048, 3072 or 4096 and no curve")
    if t.key_type == "ec" and (t.curve not in EC_CURVES or t.key_size is not None):
        raise TemplateConfigError(f"{where}: an ec template needs curve P-256 or P-384 and no key_size")
    if not dt.timedelta(minutes=1) <= t.validity <= MAX_VALIDITY:
        raise TemplateConfigError(f"{where}: validity must be between one minute and 3650 days")
    bad = [k for k in t.key_usage if k not in KEY_USAGES]
    if bad or not t.key_usage:
        raise TemplateConfigError(f"{where}: bad key_usage {bad or 'empty'}")
    if t.key_type == "ec" and ("key_encipherment" in t.key_usage or "data_encipherment" in t.key_usage):
        raise TemplateConfigError(
            f"{where}: key_encipherment/data_encipherment apply to RSA keys; an EC key uses digital_signature "
            "(and key_agreement)"
        )
    if ("encipher_only" in t.key_usage or "decipher_only" in t.key_usage) and "key_agreement" not in t.key_usage:
        raise TemplateConfigError(f"{where}: encipher_only/decipher_only need key_agreement")
    for e in t.extended_key_usage:
        if e not in EXTENDED_KEY_USAGES and not DOTTED_OID.fullmatch(e):
            raise TemplateConfigError(f"{where}: unknown extended_key_usage {e!r}")
    if not t.allowed_san_patterns:
        raise TemplateConfigError(f"{where}: allowed_san_patterns must name at least one pattern")


# ---------------------------------------------------------------------------
# names


@dataclass(frozen=True, slots=True)
class SubjectNames:
    """The names a certificate is for: a common name, DNS names and IP addresses.

    Values are normalised on creation: DNS names lower-cased without a trailing
    dot, IP addresses in canonical form, duplicates dropped (order kept). A
    common name that is a DNS name or an IP address and missing from the SANs
    is added to them, because clients only look at the SANs. ``dns`` and
    ``ips`` are tuples (any iterable is accepted).
    """

    common_name: str = ""
    dns: tuple[str, ...] = field(default_factory=tuple)
    ips: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        cn = (self.common_name or "").strip()
        dns: list[str] = []
        ips: list[str] = []
        for name in ([self.dns] if isinstance(self.dns, str) else self.dns):
            n = _norm_dns(name)
            if n not in dns:
                dns.append(n)
        for ip in ([self.ips] if isinstance(self.ips, str) else self.ips):
            n = _norm_ip(ip)
            if n not in ips:
                ips.append(n)
        if cn:
            if len(cn) > 64:
                raise IssuerError(f"the common name {cn[:64]!r}... is longer than 64 characters")
            try:
                ip_cn = str(ipaddress.ip_address(cn))
            except ValueError:
                ip_cn = ""
            if ip_cn:
                cn = ip_cn
                if ip_cn not in ips:
                    ips.insert(0, ip_cn)
            else:
                cn = cn.lower().rstrip(".")
                _norm_dns(cn)  # a CN that is not a host name is refused: names must be checkable
                if cn not in dns:
                    dns.insert(0, cn)
        if not dns and not ips:
            raise IssuerError("a certificate needs at least one name: give a DNS name or an IP address")
        object.__setattr__(self, "common_name", cn)
        object.__setattr__(self, "dns", tuple(dns))
        object.__setattr__(self, "ips", tuple(ips))

    @classmethod
    def from_certificate(cls, cert: x509.Certificate | bytes) -> "SubjectNames":
        """The names of an existing certificate (DER or parsed): a renewal keeps them.

        The common name is kept only when it is a DNS name or IP address;
        SANs of other types (e-mail, URI) are not carried over.
        """
        if isinstance(cert, (bytes, bytearray)):
            try:
                cert = x509.load_der_x509_certificate(bytes(cert))
            except ValueError:
                raise IssuerError("not a DER X.509 certificate") from None
        cn = ""
        try:
            attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            if attrs:
                cn = str(attrs[0].value)
        except ValueError:
            cn = ""
        if cn and not _is_host_or_ip(cn):
            cn = ""
        dns, ips = _san_names(cert)
        return cls(common_name=cn, dns=dns, ips=ips)

    @classmethod
    def from_csr(cls, csr: x509.CertificateSigningRequest) -> "SubjectNames":
        """The names a CSR asks for (CN, DNS and IP SANs); for comparisons, not for issuance."""
        cn = ""
        attrs = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if attrs:
            cn = str(attrs[0].value)
        dns, ips = _san_names(csr)
        return cls(common_name=cn if _is_host_or_ip(cn) else "", dns=dns, ips=ips)

    def all(self) -> list[str]:
        return [*self.dns, *self.ips]

    def san_extension(self) -> x509.SubjectAlternativeName:
        return x509.SubjectAlternativeName(
            [x509.DNSName(d) for d in self.dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in self.ips]
        )


def _san_names(obj: x509.Certificate | x509.CertificateSigningRequest) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The DNS names and IP addresses (as text) in the subject alternative name of a certificate or CSR."""
    try:
        san = obj.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return (), ()
    return tuple(san.get_values_for_type(x509.DNSName)), tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress))


def _is_host_or_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        pass
    try:
        _norm_dns(value)
        return True
    except IssuerError:
        return False


def _norm_dns(name: str) -> str:
    if not isinstance(name, str):
        raise IssuerError(f"{name!r} is not a DNS name")
    n = name.strip().lower().rstrip(".")
    labels = n.split(".")
    body = labels[1:] if labels[0] == "*" else labels
    if (
        not n or len(n) > 253 or not body
        or not all(_LABEL_RE.fullmatch(lb) for lb in body)
        or (labels[0] == "*" and len(body) < 2)
    ):
        raise IssuerError(
            f"{name!r} is not a usable DNS name (letters, digits and '-' in dot-separated labels; "
            "international names as xn-- A-labels; a wildcard only as the whole first label)"
        )
    return n


def _norm_ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(str(value).strip()))
    except ValueError:
        raise IssuerError(f"{value!r} is not an IP address") from None


# ---------------------------------------------------------------------------
# checks


def check_request(template: Template, names: SubjectNames) -> None:
    """Raise :class:`IssuerError` unless every name is allowed by ``template``."""
    dns_patterns = [p for p in template.allowed_san_patterns if as_network(p) is None]
    networks = [n for p in template.allowed_san_patterns if (n := as_network(p)) is not None]
    allowed = ", ".join(template.allowed_san_patterns)
    for name in names.dns:
        if name.startswith("*.") and not template.allow_wildcards:
            raise IssuerError(
                f"the template {template.name!r} does not allow wildcard names; the request names {name}"
            )
        if not any(_dns_matches(p, name) for p in dns_patterns):
            raise IssuerError(
                f"the template {template.name!r} allows {allowed} only; the request names {name}"
            )
    for ip in names.ips:
        addr = ipaddress.ip_address(ip)
        if not any(addr.version == n.version and addr in n for n in networks):
            raise IssuerError(
                f"the template {template.name!r} allows {allowed} only; the request names the IP address {ip}"
            )


def _dns_matches(pattern: str, name: str) -> bool:
    p_labels = pattern.split(".")
    n_labels = name.split(".")
    if p_labels[0] == "**":
        rest = p_labels[1:]
        if len(n_labels) <= len(rest):
            return False
        head, tail = n_labels[: len(n_labels) - len(rest)], n_labels[len(n_labels) - len(rest):]
        # a requested wildcard label may stand only in the first position
        if any(lb == "*" for lb in head[1:]):
            return False
        return _labels_match(rest, tail)
    if len(p_labels) != len(n_labels):
        return False
    return _labels_match(p_labels, n_labels)


def _labels_match(patterns: list[str], labels: list[str]) -> bool:
    for p, lb in zip(patterns, labels):
        if lb == "*":  # a requested wildcard is allowed only where the pattern has a whole-label wildcard
            if p not in ("*", "**"):
                return False
            continue
        if p == lb:
            continue
        if not any(c in p for c in "*?[") or not fnmatch.fnmatchcase(lb, p):
            return False
    return True


def csr_matches_template(csr: x509.CertificateSigningRequest, template: Template) -> None:
    """Raise :class:`IssuerError` unless the CSR's public key is what the template asks for."""
    try:
        key = csr.public_key()
    except Exception:  # noqa: BLE001 - unsupported or malformed key
        raise IssuerError(f"the CSR's public key is unsupported; the template {template.name!r} wants "
                          f"{template.describe_key()}") from None
    if isinstance(key, rsa.RSAPublicKey):
        got = f"RSA {key.key_size}"
        ok = template.key_type == "rsa" and key.key_size == template.key_size
    elif isinstance(key, ec.EllipticCurvePublicKey):
        got = f"EC {_CURVE_BY_CRYPTO_NAME.get(key.curve.name, key.curve.name)}"
        ok = template.key_type == "ec" and _CURVE_BY_CRYPTO_NAME.get(key.curve.name) == template.curve
    else:
        got = type(key).__name__
        ok = False
    if not ok:
        raise IssuerError(
            f"the template {template.name!r} wants a {template.describe_key()} key; the CSR has {got}"
        )

