"""Certificate policy: rules as data, evaluated as pure functions of facts and an injected clock.

The document (TOML; ``[policy] file`` in the collector config, or ``certfleet policy set``)::

    [global]
    allowed_key_types = ["rsa", "ec", "ed25519"]
    min_rsa_bits = 2048
    allowed_ec_curves = ["P-256", "P-384"]
    forbidden_signature_algorithms = ["sha1", "md5"]
    max_validity_days = 825             # 0 = no limit
    allow_wildcards = true
    forbid_self_signed = false
    expired_installed = true            # flag expired certificates still installed
    not_yet_valid = true                # flag installed certificates whose not-before is in the future
    locked = ["min_rsa_bits", "forbidden_signature_algorithms"]

    [[scope]]                           # narrower: an environment, an owner, or both
    environment = "prod"
    max_validity_days = 398
    forbid_self_signed = true
    allow_wildcards = false
    locked = ["max_validity_days"]      # binds scopes narrower than this one (prod + an owner)

    [[scope]]
    owner = "web-team"
    allowed_san_patterns = ["*.web.example.com", "web.example.com"]

Every setting is a rule of the same name; a finding names it. Effective settings for
a location: ``[global]``, then environment scopes, then owner scopes, then scopes that
name both (each later one overrides what it sets). A setting listed in ``locked`` of a
scope cannot be loosened by a narrower scope: loading such a document is refused with
an error naming the setting (e.g. an owner scope with ``min_rsa_bits = 1024`` against a
global locked ``min_rsa_bits = 2048``). Tightening a locked value is allowed.

Which rules apply to which certificates:

- key type, RSA size, EC curve, signature algorithm, expired-but-installed, not-yet-valid: every
  certificate (not-yet-valid: its not-before is later than now, so clients refuse it until then;
  on by default, like expired-but-installed);
- maximum validity, SAN patterns, wildcards, self-signed: certificates used as leaves
  (:func:`collector.domain.policy_rules.judged_as_leaf`): how a certificate is used decides,
  not its CA flag. A certificate without the CA flag is one; a CA-flagged one (``openssl req
  -x509`` sets CA:TRUE by default) is one when it is served by a TLS endpoint or sits first
  in a file or store entry with its private key beside it. A CA certificate in a chain file or
  a bundle is not (an intermediate is long-lived on purpose); trust anchors are set apart below.

Trust anchors (a location of role ``trust_anchor``: an entry of a system or Java trust
store) are not service certificates; per rule (:data:`TRUST_ANCHOR_RULES`):

- key type, RSA size, EC curve: evaluated. A weak anchor key lets whoever breaks it mint
  certificates the host trusts; the fix (take the anchor out of the store) is actionable.
  These findings are recorded but not notified (collector/registry/policies.py): the
  store belongs to the OS or JDK vendor, not to the owner a notice would reach.
- signature algorithm: not evaluated (an anchor's own signature is never checked when a
  chain is validated: trust comes from being in the store).
- expired-but-installed, not-yet-valid: not evaluated (an anchor outside its validity
  validates nothing; the store's package manages it).
- maximum validity, SAN patterns, wildcards, self-signed: not evaluated (rules about what
  a service presents; anchors are long-lived and self-signed on purpose).

The same certificate at a service location (a file a service uses, an endpoint that
serves it) is judged there by every rule: endpoint-only certificates are evaluated too.

Exceptions waive one rule (or ``*``, every rule) for a certificate (fingerprint), an
owner, or a DNS glob on the certificate's DNS names (or CN) or the location's host; an
exception past its ``expires_at`` no longer applies.
"""
from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from collector.domain.globs import check_glob, dns_matches
from collector.domain.owner_fields import check_environment
from collector.domain.ownership import facts_of, subject_cn
from collector.errors import InvalidInput
from collector.domain.policy_rules import (
    ALLOW_WILDCARDS, ALLOWED_EC_CURVES, ALLOWED_KEY_TYPES, ALLOWED_SAN_PATTERNS, ANY_RULE,
    EXPIRED_INSTALLED, FORBID_SELF_SIGNED, FORBIDDEN_SIGNATURE_ALGORITHMS, KEY_TYPES, MAX_VALIDITY_DAYS, MIN_RSA_BITS,
    NOT_YET_VALID, RULES, TRUST_ANCHOR_RULES, PolicyDoc, PolicyError, PolicyRefused, Scope, Settings, curve_name,
    is_trust_anchor, judged_as_leaf, sig_token, used_as_leaf,
)

# -- parsing -----------------------------------------------------------------------------------


def _strs(value: Any, where: str, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PolicyError(f"{where}: {key} must be a list of strings")
    return tuple(v.strip() for v in value if v.strip())


def _settings(table: Mapping[str, Any], where: str) -> Settings:
    got: dict[str, Any] = {}
    for key, value in table.items():
        if key in ("environment", "owner", "locked"):
            continue
        if key not in RULES:
            raise PolicyError(f"{where}: unknown setting {key!r} (known: {', '.join(RULES)})")
        if key == ALLOWED_KEY_TYPES:
            kinds = tuple(k.lower() for k in _strs(value, where, key))
            bad = [k for k in kinds if k not in KEY_TYPES]
            if bad:
                raise PolicyError(f"{where}: {key}: unknown key type(s) {', '.join(bad)} (known: {', '.join(KEY_TYPES)})")
            got[key] = kinds
        elif key == ALLOWED_EC_CURVES:
            got[key] = tuple(curve_name(c) for c in _strs(value, where, key))
        elif key == FORBIDDEN_SIGNATURE_ALGORITHMS:
            got[key] = tuple(sig_token(a) for a in _strs(value, where, key))
        elif key == ALLOWED_SAN_PATTERNS:
            pats = _strs(value, where, key)
            for p in pats:
                try:
                    check_glob(p, "san")
                except InvalidInput as e:
                    raise PolicyError(f"{where}: {e}") from None
            got[key] = tuple(p.lower() for p in pats)
        elif key in (MIN_RSA_BITS, MAX_VALIDITY_DAYS):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise PolicyError(f"{where}: {key} must be a whole number >= 0")
            got[key] = value
        else:
            if not isinstance(value, bool):
                raise PolicyError(f"{where}: {key} must be true or false")
            got[key] = value
    return Settings(**got)


def _scope(table: Any, where: str, top: bool) -> Scope:
    if not isinstance(table, dict):
        raise PolicyError(f"{where} must be a table")
    env = owner = ""
    if top:
        if "environment" in table or "owner" in table:
            raise PolicyError(f"{where} applies everywhere; put environment/owner settings in a [[scope]]")
    else:
        try:
            env = check_environment(str(table.get("environment", "")))
        except InvalidInput as e:
            raise PolicyError(f"{where}: {e}") from None
        owner = str(table.get("owner", "")).strip().lower()
        if not env and not owner:
            raise PolicyError(f"{where} needs an environment, an owner, or both (global settings go in [global])")
    locked = _strs(table.get("locked", []), where, "locked")
    bad = [r for r in locked if r not in RULES]
    if bad:
        raise PolicyError(f"{where}: locked names unknown setting(s) {', '.join(bad)} (known: {', '.join(RULES)})")
    return Scope(environment=env, owner=owner, settings=_settings(table, where), locked=tuple(dict.fromkeys(locked)))


def looser(rule: str, value: Any, than: Any) -> bool:
    """``value`` of ``rule`` allows something that ``than`` does not."""
    if value is None or than is None:
        return False
    if rule in (ALLOWED_KEY_TYPES, ALLOWED_EC_CURVES):
        return not set(value) <= set(than)
    if rule == FORBIDDEN_SIGNATURE_ALGORITHMS:
        return not set(than) <= set(value)
    if rule == MIN_RSA_BITS:
        return value < than
    if rule == MAX_VALIDITY_DAYS:
        return bool(than) and (value == 0 or value > than)
    if rule == ALLOWED_SAN_PATTERNS:
        return bool(than) and (not value or not set(value) <= set(than))
    if rule == ALLOW_WILDCARDS:
        return bool(value) and not than
    # forbid_self_signed, expired_installed: switching the check off loosens it
    return bool(than) and not value


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(value) + "]" if value else "[] (any)"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_policy(text: str, version: int = 0) -> PolicyDoc:
    """Parse and check a policy document; PolicyError names what is wrong (and a loosened locked setting)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise PolicyError(f"the policy is not valid TOML: {e}") from None
    unknown = sorted(set(raw) - {"global", "scope"})
    if unknown:
        raise PolicyError(f"unknown table(s) in the policy: {', '.join(unknown)} (use [global] and [[scope]])")
    scopes = [_scope(raw.get("global", {}), "[global]", top=True)]
    items = raw.get("scope", [])
    if not isinstance(items, list):
        raise PolicyError("scope must be an array of tables: [[scope]]")
    seen: set[tuple[str, str]] = set()
    for i, t in enumerate(items, 1):
        s = _scope(t, f"[[scope]] #{i}", top=False)
        if (s.environment, s.owner) in seen:
            raise PolicyError(f"{s.label()} is given twice; merge them into one")
        seen.add((s.environment, s.owner))
        scopes.append(s)
    doc = PolicyDoc(scopes=tuple(scopes), text=text, version=version)
    _check_locks(doc)
    return doc


def _check_locks(doc: PolicyDoc) -> None:
    for broad in doc.scopes:
        if not broad.locked:
            continue
        base = doc.effective(broad.environment, broad.owner)
        for narrow in doc.scopes:
            if not broad.contains(narrow):
                continue
            for rule in broad.locked:
                value = getattr(narrow.settings, rule)
                locked_value = getattr(base, rule)
                if looser(rule, value, locked_value):
                    raise PolicyError(
                        f"{narrow.label()} loosens locked {rule}: {_show(value)} is looser than "
                        f"{_show(locked_value)}, locked by {broad.label()}"
                    )


DEFAULT_TEXT = """\
# certfleet default policy (no policy stored yet)
[global]
allowed_key_types = ["rsa", "ec", "ed25519", "ed448"]
min_rsa_bits = 2048
allowed_ec_curves = ["P-256", "P-384", "P-521"]
forbidden_signature_algorithms = ["sha1", "md5"]
expired_installed = true
not_yet_valid = true
"""


def default_policy() -> PolicyDoc:
    return parse_policy(DEFAULT_TEXT, version=0)


# -- evaluation -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str
    reason: str


def _dns_names(cert: Any) -> tuple[str, ...]:
    f = facts_of(cert)
    if f.dns_names:
        return tuple(n.lower() for n in f.dns_names)
    cn = subject_cn(f.subject)
    return (cn.lower(),) if cn else ()


def evaluate(cert: Any, location: Any | None, assignment: Any | None, policy: PolicyDoc,
             now: dt.datetime, leaf_use: bool | None = None) -> list[Finding]:
    """The rules ``cert`` (a CertificateView or alike) breaks at ``location`` under ``policy``.

    ``assignment`` (collector.domain.ownership.Assignment or None) gives the environment and owner
    that pick the scopes. ``leaf_use``: see :func:`collector.domain.policy_rules.judged_as_leaf`.
    """
    env = getattr(assignment, "environment", None) or ""
    owner = getattr(assignment, "owner", None) or ""
    s = policy.effective(env, owner)
    out: list[Finding] = []
    key_type = (getattr(cert, "key_type", "") or "").lower()
    if s.allowed_key_types and key_type not in s.allowed_key_types:
        out.append(Finding(ALLOWED_KEY_TYPES, f"key type {cert.key_type or 'unknown'} is not allowed "
                                              f"(allowed: {', '.join(s.allowed_key_types)})"))
    if key_type == "rsa" and s.min_rsa_bits and (cert.key_size or 0) < s.min_rsa_bits:
        out.append(Finding(MIN_RSA_BITS, f"RSA key of {cert.key_size} bits is below the minimum of {s.min_rsa_bits}"))
    if key_type == "ec" and s.allowed_ec_curves and curve_name(cert.key_curve) not in s.allowed_ec_curves:
        out.append(Finding(ALLOWED_EC_CURVES, f"EC curve {curve_name(cert.key_curve) or 'unknown'} is not allowed "
                                              f"(allowed: {', '.join(s.allowed_ec_curves)})"))
    sig = sig_token(getattr(cert, "signature_algorithm", ""))
    bad = [a for a in (s.forbidden_signature_algorithms or ()) if a and a in sig]
    if bad:
        out.append(Finding(FORBIDDEN_SIGNATURE_ALGORITHMS,
                           f"signed with {cert.signature_algorithm} ({bad[0]} is forbidden)"))
    if s.expired_installed and cert.not_after <= now and (location is None or getattr(location, "status", "present") == "present"):
        out.append(Finding(EXPIRED_INSTALLED, f"expired {cert.not_after:%Y-%m-%d} and still installed"))
    if (s.not_yet_valid and cert.not_before > now
            and (location is None or getattr(location, "status", "present") == "present")):
        wait = cert.not_before - now
        when = f"in {wait.days} day(s)" if wait.days else f"in {max(1, int(wait.total_seconds() // 3600))} hour(s)"
        out.append(Finding(NOT_YET_VALID, f"not valid before {cert.not_before:%Y-%m-%d %H:%M} UTC ({when}): "
                                          f"clients refuse it until then"))
    if judged_as_leaf(cert, location, leaf_use):
        if s.max_validity_days:
            days = (cert.not_after - cert.not_before).total_seconds() / 86400
            if days > s.max_validity_days:
                where = f" in {env}" if env else ""
                out.append(Finding(MAX_VALIDITY_DAYS, f"valid for {days:.0f} days, over the maximum of "
                                                      f"{s.max_validity_days}{where}"))
        names = _dns_names(cert)
        if s.allow_wildcards is False:
            wild = [n for n in names if n.startswith("*")]
            if wild:
                out.append(Finding(ALLOW_WILDCARDS, f"wildcard name {wild[0]} is not allowed"))
        if s.allowed_san_patterns:
            outside = [n for n in names if not any(dns_matches(p, n) for p in s.allowed_san_patterns)]
            if outside:
                who = f" for owner {owner}" if owner else ""
                out.append(Finding(ALLOWED_SAN_PATTERNS, f"name {outside[0]} is outside the allowed patterns{who} "
                                                         f"({', '.join(s.allowed_san_patterns)})"))
        if s.forbid_self_signed and getattr(cert, "self_signed", False):
            where = f" in {env}" if env else ""
            out.append(Finding(FORBID_SELF_SIGNED, f"self-signed certificates are forbidden{where}"))
    if is_trust_anchor(location):
        out = [f for f in out if f.rule in TRUST_ANCHOR_RULES]
    return out


# -- exceptions -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicyException:
    id: int
    rule: str                    # a rule name or "*"
    fingerprint: str = ""
    owner: str = ""
    pattern: str = ""            # DNS glob on the certificate's names or the location's host
    reason: str = ""
    granted_by: str = ""
    created_at: dt.datetime | None = None
    expires_at: dt.datetime | None = None

    def expired(self, now: dt.datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    @property
    def target(self) -> str:
        if self.fingerprint:
            return f"certificate:{self.fingerprint}"
        if self.owner:
            return f"owner:{self.owner}"
        return f"pattern:{self.pattern}"


def check_exception(rule: str, fingerprint: str, owner: str, pattern: str, reason: str,
                    expires_at: dt.datetime | None, now: dt.datetime) -> None:
    """InvalidInput when an exception's fields do not make one."""
    if rule != ANY_RULE and rule not in RULES:
        raise InvalidInput(f"no rule {rule!r} (rules: {', '.join(RULES)}, or * for all)")
    if sum(1 for v in (fingerprint, owner, pattern) if v) != 1:
        raise InvalidInput("an exception is for exactly one of: a certificate fingerprint, an owner, a pattern")
    if pattern:
        check_glob(pattern, "san")
    if not reason.strip():
        raise InvalidInput("an exception needs a reason")
    if expires_at is None:
        raise InvalidInput("an exception needs an expiry date")
    if expires_at <= now:
        raise InvalidInput("the expiry date is in the past")


def exception_applies(exc: PolicyException, rule: str, cert: Any, location: Any | None, assignment: Any | None,
                      now: dt.datetime) -> bool:
    if exc.expired(now) or exc.rule not in (rule, ANY_RULE):
        return False
    if exc.fingerprint:
        return exc.fingerprint == getattr(cert, "fingerprint", "")
    if exc.owner:
        return exc.owner == (getattr(assignment, "owner", None) or "")
    names = list(_dns_names(cert))
    host = getattr(location, "hostname", "") if location is not None else ""
    if host:
        names.append(host)
    return any(dns_matches(exc.pattern, n, short_too=(n == host)) for n in names)


def waiver(exceptions: Iterable[PolicyException], finding: Finding, cert: Any, location: Any | None,
           assignment: Any | None, now: dt.datetime) -> PolicyException | None:
    """The exception that waives ``finding`` here the longest (latest expiry), or None."""
    best: PolicyException | None = None
    for e in exceptions:
        if exception_applies(e, finding.rule, cert, location, assignment, now) and (
                best is None or (e.expires_at or now) > (best.expires_at or now)):
            best = e
    return best


# -- renewal requests ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What a renewal would issue: from a template (collector.domain.templates.Template)."""

    key_type: str                # rsa, ec
    key_size: int | None
    curve: str | None
    validity: dt.timedelta
    names: tuple[str, ...] = ()

    @classmethod
    def from_template(cls, tpl: Any, names: Sequence[str] = ()) -> RequestFacts:
        return cls(key_type=tpl.key_type, key_size=tpl.key_size, curve=tpl.curve, validity=tpl.validity,
                   names=tuple(n.lower() for n in names))


def locked_breaches(req: RequestFacts, assignment: Any | None, policy: PolicyDoc, where: str = "") -> list[Finding]:
    """The LOCKED rules a renewal with ``req`` would break for a location with ``assignment``."""
    env = getattr(assignment, "environment", None) or ""
    owner = getattr(assignment, "owner", None) or ""
    locked = policy.locked_rules(env, owner)
    if not locked:
        return []
    s = policy.effective(env, owner)
    spec = f"rsa-{req.key_size}" if req.key_type == "rsa" else f"ec-{curve_name(req.curve or '')}"
    suffix = f" ({where})" if where else ""
    out: list[Finding] = []
    if ALLOWED_KEY_TYPES in locked and s.allowed_key_types and req.key_type not in s.allowed_key_types:
        out.append(Finding(ALLOWED_KEY_TYPES, f"template key {spec} vs locked {ALLOWED_KEY_TYPES} "
                                              f"{_show(s.allowed_key_types)}{suffix}"))
    if MIN_RSA_BITS in locked and req.key_type == "rsa" and s.min_rsa_bits and (req.key_size or 0) < s.min_rsa_bits:
        out.append(Finding(MIN_RSA_BITS, f"template key {spec} vs locked {MIN_RSA_BITS} {s.min_rsa_bits}{suffix}"))
    if (ALLOWED_EC_CURVES in locked and req.key_type == "ec" and s.allowed_ec_curves
            and curve_name(req.curve or "") not in s.allowed_ec_curves):
        out.append(Finding(ALLOWED_EC_CURVES, f"template key {spec} vs locked {ALLOWED_EC_CURVES} "
                                              f"{_show(s.allowed_ec_curves)}{suffix}"))
    if MAX_VALIDITY_DAYS in locked and s.max_validity_days:
        days = req.validity.total_seconds() / 86400
        if days > s.max_validity_days:
            env_text = f" for environment {env}" if env else ""
            out.append(Finding(MAX_VALIDITY_DAYS, f"template validity {days:g}d vs locked {MAX_VALIDITY_DAYS} "
                                                  f"{s.max_validity_days}{env_text}{suffix}"))
    if ALLOW_WILDCARDS in locked and s.allow_wildcards is False:
        wild = [n for n in req.names if n.startswith("*")]
        if wild:
            out.append(Finding(ALLOW_WILDCARDS, f"name {wild[0]} vs locked {ALLOW_WILDCARDS} false{suffix}"))
    if ALLOWED_SAN_PATTERNS in locked and s.allowed_san_patterns:
        outside = [n for n in req.names if not any(dns_matches(p, n) for p in s.allowed_san_patterns)]
        if outside:
            out.append(Finding(ALLOWED_SAN_PATTERNS, f"name {outside[0]} vs locked {ALLOWED_SAN_PATTERNS} "
                                                     f"{_show(s.allowed_san_patterns)}{suffix}"))
    return out


__all__ = [
    "RULES", "Settings", "Scope", "PolicyDoc", "PolicyError", "PolicyRefused", "Finding", "PolicyException",
    "RequestFacts", "parse_policy", "default_policy", "evaluate", "exception_applies", "waiver",
    "locked_breaches", "check_exception", "looser", "used_as_leaf",
]
