"""collector/domain/policy.py: rules as data, scopes and locks, exceptions -- pure, with an injected clock."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pytest

from collector.domain import policy as pol
from collector.domain.ownership import Assignment

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 6, 1, tzinfo=UTC)


@dataclass
class Cert:
    fingerprint: str = "ab" * 32
    subject: str = "CN=www.example.com"
    key_type: str = "EC"
    key_size: int = 256
    key_curve: str = "secp256r1"
    signature_algorithm: str = "ecdsa-with-SHA256"
    not_before: dt.datetime = NOW - dt.timedelta(days=10)
    not_after: dt.datetime = NOW + dt.timedelta(days=80)
    is_ca: bool = False
    self_signed: bool = False
    sans: tuple = ("www.example.com",)
    locations: tuple = field(default_factory=tuple)


@dataclass
class Loc:
    hostname: str = "web1.example.com"
    status: str = "present"
    store_type: str = "pem"
    chain_index: int = 0
    has_private_key: bool = False
    role: str = "service"


POLICY = """
[global]
min_rsa_bits = 2048
allowed_ec_curves = ["P-256", "P-384"]
forbidden_signature_algorithms = ["sha1", "md5"]
locked = ["min_rsa_bits", "forbidden_signature_algorithms", "max_validity_days"]
max_validity_days = 825

[[scope]]
environment = "prod"
max_validity_days = 398
forbid_self_signed = true
allow_wildcards = false

[[scope]]
owner = "web-team"
allowed_san_patterns = ["*.example.com"]
min_rsa_bits = 3072
"""


def rules(cert, env=None, owner=None, text=POLICY) -> list[str]:  # noqa: ANN001
    doc = pol.parse_policy(text)
    return [f.rule for f in pol.evaluate(cert, Loc(), Assignment(owner=owner, environment=env), doc, NOW)]


def test_a_good_certificate_passes() -> None:
    assert rules(Cert()) == []
    assert rules(Cert(), env="prod", owner="web-team") == []


def test_weak_keys_and_signatures_are_flagged() -> None:
    rsa1024 = Cert(key_type="RSA", key_size=1024, key_curve="", signature_algorithm="sha256WithRSAEncryption")
    doc = pol.parse_policy(POLICY)
    (f,) = pol.evaluate(rsa1024, Loc(), None, doc, NOW)
    assert f.rule == "min_rsa_bits" and "1024" in f.reason and "2048" in f.reason
    # the owner scope tightens it: 2048 is too small for web-team
    assert rules(Cert(key_type="RSA", key_size=2048, key_curve=""), owner="web-team") == ["min_rsa_bits"]
    assert rules(Cert(signature_algorithm="sha1WithRSAEncryption")) == ["forbidden_signature_algorithms"]
    assert rules(Cert(signature_algorithm="md5WithRSAEncryption")) == ["forbidden_signature_algorithms"]
    assert rules(Cert(signature_algorithm="ecdsa-with-SHA1")) == ["forbidden_signature_algorithms"]
    assert rules(Cert(key_curve="secp521r1")) == ["allowed_ec_curves"]
    assert rules(Cert(key_type="DSA", key_size=2048, key_curve="")) == ["allowed_key_types"]


def test_validity_self_signed_wildcards_patterns_and_expiry() -> None:
    long = Cert(not_before=NOW - dt.timedelta(days=1), not_after=NOW + dt.timedelta(days=500))
    assert rules(long) == []                           # 501 days: fine under the global 825
    assert rules(long, env="prod") == ["max_validity_days"]
    assert rules(Cert(self_signed=True)) == []
    assert rules(Cert(self_signed=True), env="prod") == ["forbid_self_signed"]
    assert rules(Cert(self_signed=True, is_ca=True), env="prod") == []     # a root in a trust store
    assert rules(Cert(sans=("*.example.com",)), env="prod") == ["allow_wildcards"]
    assert rules(Cert(sans=("*.example.com",))) == []
    assert rules(Cert(sans=("www.other.org",)), owner="web-team") == ["allowed_san_patterns"]
    expired = Cert(not_before=NOW - dt.timedelta(days=100), not_after=NOW - dt.timedelta(days=1))
    assert rules(expired) == ["expired_installed"]


def test_a_ca_flagged_certificate_used_as_a_service_certificate_is_judged_as_a_leaf() -> None:
    # openssl req -x509 sets CA:TRUE: a ten-year self-signed wildcard deployed with its key in prod
    doc = pol.parse_policy(POLICY)
    prod = Assignment(owner="web-team", environment="prod")
    ten_years = Cert(is_ca=True, self_signed=True, sans=("*.shop.other.org",),
                     not_before=NOW - dt.timedelta(days=1), not_after=NOW + dt.timedelta(days=3650))
    leaf_rules = {"forbid_self_signed", "max_validity_days", "allow_wildcards", "allowed_san_patterns"}

    def found(cert: Cert, loc: Loc) -> set[str]:
        return {f.rule for f in pol.evaluate(cert, loc, prod, doc, NOW)}

    assert found(ten_years, Loc(has_private_key=True)) == leaf_rules                 # its key beside it
    assert found(ten_years, Loc(store_type="endpoint")) == leaf_rules                # an endpoint serves it
    # a file without the key, when the same certificate is served or deployed with its key elsewhere
    served = Cert(**{**ten_years.__dict__, "locations": (Loc(store_type="endpoint"),)})
    assert found(served, Loc()) == leaf_rules
    # not a leaf: a CA file without a key, an intermediate further down a chain, a trust anchor
    assert found(ten_years, Loc()) == set()
    assert found(ten_years, Loc(chain_index=1, has_private_key=True)) == set()
    assert found(ten_years, Loc(store_type="endpoint", chain_index=1)) == set()
    anchored = Cert(**{**ten_years.__dict__, "locations": (Loc(has_private_key=True),)})
    assert found(anchored, Loc(role="trust_anchor")) == set()
    assert found(ten_years, Loc(has_private_key=True, status="removed")) == set()
    # a certificate without the CA flag is a leaf wherever it is (as before)
    plain = Cert(**{**ten_years.__dict__, "is_ca": False})
    assert found(plain, Loc()) == leaf_rules


def test_narrower_scopes_cannot_loosen_locked_values() -> None:
    with pytest.raises(pol.PolicyError, match="owner=web-team loosens locked min_rsa_bits: 1024"):
        pol.parse_policy(POLICY.replace("min_rsa_bits = 3072", "min_rsa_bits = 1024"))
    with pytest.raises(pol.PolicyError, match="loosens locked forbidden_signature_algorithms"):
        pol.parse_policy(POLICY + '\n[[scope]]\nenvironment = "test"\nforbidden_signature_algorithms = ["md5"]\n')
    with pytest.raises(pol.PolicyError, match="loosens locked max_validity_days"):
        pol.parse_policy(POLICY + '\n[[scope]]\nenvironment = "test"\nmax_validity_days = 0\n')
    # an environment scope's lock binds the scopes for that environment and an owner
    text = POLICY.replace('allow_wildcards = false', 'allow_wildcards = false\nlocked = ["allow_wildcards"]')
    pol.parse_policy(text + '\n[[scope]]\nowner = "x"\nallow_wildcards = true\n')    # not narrower than prod
    with pytest.raises(pol.PolicyError, match="environment=prod owner=x loosens locked allow_wildcards"):
        pol.parse_policy(text + '\n[[scope]]\nenvironment = "prod"\nowner = "x"\nallow_wildcards = true\n')
    # not locked: a narrower scope may loosen; locked: tightening is fine
    pol.parse_policy(POLICY.replace('allowed_ec_curves = ["P-256", "P-384"]', 'allowed_ec_curves = ["P-256"]')
                     + '\n[[scope]]\nenvironment = "test"\nallowed_ec_curves = ["P-256", "P-521"]\n')


def test_bad_documents_are_clear() -> None:
    with pytest.raises(pol.PolicyError, match="not valid TOML"):
        pol.parse_policy("[global\n")
    with pytest.raises(pol.PolicyError, match="unknown setting 'min_rsa'"):
        pol.parse_policy("[global]\nmin_rsa = 1\n")
    with pytest.raises(pol.PolicyError, match="locked names unknown setting"):
        pol.parse_policy('[global]\nlocked = ["nope"]\n')
    with pytest.raises(pol.PolicyError, match="needs an environment, an owner"):
        pol.parse_policy("[[scope]]\nmin_rsa_bits = 4096\n")
    with pytest.raises(pol.PolicyError, match="given twice"):
        pol.parse_policy('[[scope]]\nenvironment = "prod"\n[[scope]]\nenvironment = "prod"\n')
    assert pol.default_policy().version == 0


def _exc(**kw) -> pol.PolicyException:  # noqa: ANN003
    kw.setdefault("expires_at", NOW + dt.timedelta(days=30))
    return pol.PolicyException(id=kw.pop("id", 1), **kw)


def test_exceptions_match_by_fingerprint_owner_or_pattern_until_they_expire() -> None:
    cert, loc = Cert(), Loc()
    a = Assignment(owner="web-team")
    f = pol.Finding("min_rsa_bits", "")
    assert pol.exception_applies(_exc(rule="min_rsa_bits", fingerprint=cert.fingerprint), f.rule, cert, loc, a, NOW)
    assert not pol.exception_applies(_exc(rule="min_rsa_bits", fingerprint="cd" * 32), f.rule, cert, loc, a, NOW)
    assert not pol.exception_applies(_exc(rule="allowed_ec_curves", fingerprint=cert.fingerprint), f.rule, cert, loc,
                                     a, NOW)
    assert pol.exception_applies(_exc(rule="*", owner="web-team"), f.rule, cert, loc, a, NOW)
    assert not pol.exception_applies(_exc(rule="*", owner="db-team"), f.rule, cert, loc, a, NOW)
    assert pol.exception_applies(_exc(rule="min_rsa_bits", pattern="*.example.com"), f.rule, cert, loc, a, NOW)
    assert pol.exception_applies(_exc(rule="min_rsa_bits", pattern="web1"), f.rule, cert, loc, a, NOW)  # host
    assert not pol.exception_applies(_exc(rule="min_rsa_bits", pattern="*.other.org"), f.rule, cert, loc, a, NOW)
    e = _exc(rule="min_rsa_bits", fingerprint=cert.fingerprint, expires_at=NOW + dt.timedelta(days=1))
    assert pol.exception_applies(e, f.rule, cert, loc, a, NOW)
    assert not pol.exception_applies(e, f.rule, cert, loc, a, NOW + dt.timedelta(days=1))
    assert e.expired(NOW + dt.timedelta(days=2))


def test_exception_fields_are_checked() -> None:
    later = NOW + dt.timedelta(days=1)
    with pytest.raises(Exception, match="no rule 'nope'"):
        pol.check_exception("nope", "ab" * 32, "", "", "why", later, NOW)
    with pytest.raises(Exception, match="exactly one of"):
        pol.check_exception("min_rsa_bits", "ab" * 32, "web", "", "why", later, NOW)
    with pytest.raises(Exception, match="needs a reason"):
        pol.check_exception("min_rsa_bits", "", "web", "", " ", later, NOW)
    with pytest.raises(Exception, match="in the past"):
        pol.check_exception("min_rsa_bits", "", "web", "", "why", NOW, NOW)


def test_locked_breaches_of_a_renewal_request() -> None:
    doc = pol.parse_policy(POLICY.replace("min_rsa_bits = 2048", "min_rsa_bits = 3072"))
    rsa2048 = pol.RequestFacts("rsa", 2048, None, dt.timedelta(days=90), ("www.example.com",))
    (b,) = pol.locked_breaches(rsa2048, None, doc)
    assert b.rule == "min_rsa_bits" and b.reason == "template key rsa-2048 vs locked min_rsa_bits 3072"
    long = pol.RequestFacts("ec", None, "P-256", dt.timedelta(days=500))
    assert pol.locked_breaches(long, Assignment(environment="test"), doc) == []
    (b,) = pol.locked_breaches(long, Assignment(environment="prod"), doc)
    assert b.rule == "max_validity_days" and "locked max_validity_days 398 for environment prod" in b.reason
    # allow_wildcards is not locked: a wildcard request is not refused
    wild = pol.RequestFacts("ec", None, "P-256", dt.timedelta(days=90), ("*.example.com",))
    assert pol.locked_breaches(wild, Assignment(environment="prod"), doc) == []


def test_not_yet_valid_is_flagged_until_its_not_before() -> None:
    doc = pol.parse_policy(POLICY)
    future = Cert(not_before=NOW + dt.timedelta(days=3), not_after=NOW + dt.timedelta(days=93))
    (f,) = pol.evaluate(future, Loc(), None, doc, NOW)
    assert f.rule == "not_yet_valid" and "not valid before 2026-06-04 00:00 UTC (in 3 day(s))" in f.reason
    soon = Cert(not_before=NOW + dt.timedelta(hours=5), not_after=NOW + dt.timedelta(days=90))
    assert "(in 5 hour(s))" in pol.evaluate(soon, Loc(), None, doc, NOW)[0].reason
    # the clock decides: valid from its not-before on
    assert pol.evaluate(future, Loc(), None, doc, NOW + dt.timedelta(days=3)) == []
    # not at a removed location, not at a trust anchor; a scope may switch it off (a lock keeps it on)
    assert pol.evaluate(future, Loc(status="removed"), None, doc, NOW) == []
    assert pol.evaluate(future, Loc(role="trust_anchor"), None, doc, NOW) == []
    off = POLICY + '\n[[scope]]\nenvironment = "lab"\nnot_yet_valid = false\n'
    assert rules(future, env="lab", text=off) == [] and rules(future, env="prod", text=off) == ["not_yet_valid"]
    locked = '[global]\nnot_yet_valid = true\nlocked = ["not_yet_valid"]\n[[scope]]\nenvironment = "lab"\nnot_yet_valid = false\n'
    with pytest.raises(pol.PolicyError, match="loosens locked not_yet_valid"):
        pol.parse_policy(locked)
    assert "not_yet_valid = true" in pol.default_policy().text
