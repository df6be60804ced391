"""The policy's rules as values: their names, a scope's settings, the scopes of a document, and
the effective settings for an environment and an owner (collector/domain/policy.py reads the
document and evaluates certificates against it).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

from collector.errors import CollectorError, InvalidInput

ALLOWED_KEY_TYPES = "allowed_key_types"
MIN_RSA_BITS = "min_rsa_bits"
ALLOWED_EC_CURVES = "allowed_ec_curves"
FORBIDDEN_SIGNATURE_ALGORITHMS = "forbidden_signature_algorithms"
MAX_VALIDITY_DAYS = "max_validity_days"
ALLOWED_SAN_PATTERNS = "allowed_san_patterns"
ALLOW_WILDCARDS = "allow_wildcards"
FORBID_SELF_SIGNED = "forbid_self_signed"
EXPIRED_INSTALLED = "expired_installed"
NOT_YET_VALID = "not_yet_valid"
RULES = (ALLOWED_KEY_TYPES, MIN_RSA_BITS, ALLOWED_EC_CURVES, FORBIDDEN_SIGNATURE_ALGORITHMS, MAX_VALIDITY_DAYS,
         ALLOWED_SAN_PATTERNS, ALLOW_WILDCARDS, FORBID_SELF_SIGNED, EXPIRED_INSTALLED, NOT_YET_VALID)
ANY_RULE = "*"

KEY_TYPES = ("rsa", "ec", "ed25519", "ed448", "dsa")
# curve names as the registry stores them (cryptography's) -> NIST names
_CURVES = {"secp256r1": "P-256", "prime256v1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521",
           "p-256": "P-256", "p-384": "P-384", "p-521": "P-521", "p256": "P-256", "p384": "P-384", "p521": "P-521"}


#: location role of a trust store entry (collector/registry: locations.role)
TRUST_ANCHOR = "trust_anchor"
#: the rules that judge a trust anchor (see the module doc)
TRUST_ANCHOR_RULES = frozenset({ALLOWED_KEY_TYPES, MIN_RSA_BITS, ALLOWED_EC_CURVES})


def is_trust_anchor(location: Any | None) -> bool:
    return getattr(location, "role", "") == TRUST_ANCHOR


def serves_as_leaf(location: Any | None) -> bool:
    """Whether ``location`` uses its certificate as a service (end-entity) certificate: the first
    certificate of a TLS endpoint's chain, or the first of a file or store entry with its private
    key beside it. Trust anchors and removed locations never do."""
    if location is None or is_trust_anchor(location) or getattr(location, "status", "present") != "present":
        return False
    if (getattr(location, "chain_index", 0) or 0) != 0:
        return False
    return getattr(location, "store_type", "") == "endpoint" or bool(getattr(location, "has_private_key", False))


def used_as_leaf(cert: Any) -> bool:
    """Whether any present location of ``cert`` (``cert.locations``) serves it as a leaf."""
    return any(serves_as_leaf(loc) for loc in getattr(cert, "locations", ()) or ())


def judged_as_leaf(cert: Any, location: Any | None, leaf_use: bool | None = None) -> bool:
    """Whether the leaf rules (validity, names, self-signed) judge ``cert`` at ``location``.

    How the certificate is used decides, not its CA flag: ``openssl req -x509`` sets CA:TRUE by
    default, and such a certificate deployed with its key or served by an endpoint is a service
    certificate. A certificate without the CA flag is always judged as one; a CA-flagged one when
    ``location`` or any of its present locations serves it as a leaf. A trust anchor location never
    is (the anchor rules judge it there). ``leaf_use``: :func:`used_as_leaf` of ``cert`` when the
    caller has it (computed once per certificate: an intermediate sits in thousands of chain files)."""
    if is_trust_anchor(location):
        return False
    if not getattr(cert, "is_ca", False):
        return True
    if serves_as_leaf(location):
        return True
    return used_as_leaf(cert) if leaf_use is None else leaf_use


class PolicyError(InvalidInput):
    """The policy document is not valid, or a narrower scope loosens a locked value."""


class PolicyRefused(CollectorError):
    """A request breaks a locked policy; the message names the rule."""


def curve_name(value: str) -> str:
    v = (value or "").strip()
    return _CURVES.get(v.lower(), v.upper())


def sig_token(value: str) -> str:
    return (value or "").lower().replace("-", "").replace("_", "")


@dataclass(frozen=True, slots=True)
class Settings:
    """The values of the rules; None = not set here (inherit)."""

    allowed_key_types: tuple[str, ...] | None = None
    min_rsa_bits: int | None = None
    allowed_ec_curves: tuple[str, ...] | None = None
    forbidden_signature_algorithms: tuple[str, ...] | None = None
    max_validity_days: int | None = None          # 0 = no limit
    allowed_san_patterns: tuple[str, ...] | None = None   # () = any
    allow_wildcards: bool | None = None
    forbid_self_signed: bool | None = None
    expired_installed: bool | None = None
    not_yet_valid: bool | None = None             # flag installed certificates whose not-before is in the future

    def given(self) -> dict[str, Any]:
        return {r: getattr(self, r) for r in RULES if getattr(self, r) is not None}

    def over(self, base: Settings) -> Settings:
        """These settings where set, ``base`` elsewhere."""
        return replace(base, **self.given())


DEFAULT_SETTINGS = Settings(
    allowed_key_types=("rsa", "ec", "ed25519", "ed448"), min_rsa_bits=2048,
    allowed_ec_curves=("P-256", "P-384", "P-521"), forbidden_signature_algorithms=("sha1", "md5"),
    max_validity_days=0, allowed_san_patterns=(), allow_wildcards=True, forbid_self_signed=False,
    expired_installed=True, not_yet_valid=True,
)


@dataclass(frozen=True, slots=True)
class Scope:
    environment: str = ""     # "" = any
    owner: str = ""           # "" = any
    settings: Settings = field(default_factory=Settings)
    locked: tuple[str, ...] = ()

    @property
    def rank(self) -> int:
        """0 global, 1 environment, 2 owner, 3 both."""
        return (1 if self.environment else 0) + (2 if self.owner else 0)

    def label(self) -> str:
        if not self.rank:
            return "[global]"
        parts = [f"environment={self.environment}"] if self.environment else []
        if self.owner:
            parts.append(f"owner={self.owner}")
        return "[[scope]] " + " ".join(parts)

    def applies(self, environment: str, owner: str) -> bool:
        return (not self.environment or self.environment == environment) and (not self.owner or self.owner == owner)

    def contains(self, other: Scope) -> bool:
        """``other`` is strictly narrower than this scope."""
        return (other is not self and other.rank != self.rank
                and (not self.environment or self.environment == other.environment)
                and (not self.owner or self.owner == other.owner))


@dataclass(frozen=True, slots=True)
class PolicyDoc:
    """A parsed policy document: ``scopes[0]`` is the global one."""

    scopes: tuple[Scope, ...]
    text: str = ""
    version: int = 0

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def applicable(self, environment: str, owner: str) -> list[Scope]:
        return sorted((s for s in self.scopes if s.applies(environment, owner)), key=lambda s: s.rank)

    def effective(self, environment: str | None, owner: str | None) -> Settings:
        out = DEFAULT_SETTINGS
        for s in self.applicable(environment or "", owner or ""):
            out = s.settings.over(out)
        return out

    def locked_rules(self, environment: str | None, owner: str | None) -> set[str]:
        return {r for s in self.applicable(environment or "", owner or "") for r in s.locked}
