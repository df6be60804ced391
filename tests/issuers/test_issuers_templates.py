"""Templates as data: loading with clear errors, name patterns, CSR key checks, names."""
from __future__ import annotations

import datetime as dt
import tomllib

import pytest
from cryptography import x509

from collector.errors import CollectorError, IssuerError
from collector.issuers.base import RevocationReason, load_csr
from collector.domain.templates import SubjectNames, Template, TemplateConfigError, check_request, csr_matches_template
from collector.config.templates import load_templates
from tests.helpers.collector_issuers import make_template
from tests.helpers.collector_issuers import make_csr, new_key

CONFIG = """
[templates.web]
issuer = "internal"
key_type = "ec"
curve = "P-384"
validity = "90d"
extended_key_usage = ["serverAuth", "clientAuth"]
allowed_san_patterns = ["*.example.com", "example.com", "10.0.0.0/8", "2001:db8::/32"]

[templates.legacy]
issuer = "letsencrypt"
key_type = "rsa"
key_size = 3072
validity = 3600
key_usage = ["digitalSignature", "keyEncipherment"]
allowed_san_patterns = ["**.corp.example"]
allow_wildcards = true
"""


def test_load_templates_from_toml() -> None:
    templates = load_templates(tomllib.loads(CONFIG)["templates"])
    web, legacy = templates["web"], templates["legacy"]
    assert web == Template(
        name="web", issuer="internal", key_type="ec", key_size=None, curve="P-384",
        validity=dt.timedelta(days=90), key_usage=("digital_signature",),
        extended_key_usage=("serverAuth", "clientAuth"),
        allowed_san_patterns=("*.example.com", "example.com", "10.0.0.0/8", "2001:db8::/32"),
        allow_wildcards=False,
    )
    assert legacy.key_type == "rsa" and legacy.key_size == 3072 and legacy.curve is None
    assert legacy.validity == dt.timedelta(hours=1)
    assert legacy.key_usage == ("digital_signature", "key_encipherment")
    assert legacy.extended_key_usage == ("serverAuth",)  # the default
    assert legacy.allow_wildcards
    assert load_templates(None) == {}


@pytest.mark.parametrize("change, words", [
    ({"colour": "blue"}, ["unknown setting", "colour"]),
    ({"issuer": ""}, ["issuer", "required"]),
    ({"key_type": "dsa"}, ["key_type", "rsa, ec"]),
    ({"key_type": "rsa", "key_size": 1024}, ["key_size", "2048, 3072, 4096"]),
    ({"key_type": "rsa", "key_size": 2048, "curve": "P-256"}, ["curve", "ec keys"]),
    ({"curve": "P-521"}, ["curve", "P-256, P-384"]),
    ({"key_size": 2048}, ["key_size", "rsa keys"]),
    ({"validity": "ninety days"}, ["validity", "not a duration"]),
    ({"validity": "0s"}, ["validity", "at least one minute"]),
    ({"validity": "4000d"}, ["validity", "at most 3650d"]),
    ({"key_usage": ["key_cert_sign"]}, ["key_cert_sign", "CA certificates"]),
    ({"key_usage": ["fly"]}, ["unknown key_usage", "fly"]),
    ({"key_usage": "digital_signature"}, ["key_usage", "list of strings"]),
    ({"key_usage": ["key_encipherment"]}, ["key_encipherment", "RSA keys"]),
    ({"extended_key_usage": ["webAuth"]}, ["unknown extended_key_usage", "webAuth"]),
    ({"allowed_san_patterns": None}, ["allowed_san_patterns", "required"]),
    ({"allowed_san_patterns": []}, ["allowed_san_patterns", "at least one"]),
    ({"allowed_san_patterns": ["exa mple.com"]}, ["exa mple.com", "neither a DNS pattern"]),
    ({"allowed_san_patterns": ["a.**.example.com"]}, ["a.**.example.com"]),
    ({"allow_wildcards": "yes"}, ["allow_wildcards", "true or false"]),
])
def test_bad_template_settings_are_named(change: dict, words: list[str]) -> None:
    table = {"issuer": "internal", "allowed_san_patterns": ["*.example.com"]}
    table.update(change)
    table = {k: v for k, v in table.items() if v is not None}
    with pytest.raises(TemplateConfigError) as err:
        load_templates({"web": table})
    msg = str(err.value)
    assert "template 'web'" in msg
    for w in words:
        assert w in msg, msg
    assert isinstance(err.value, CollectorError)


def test_eku_accepts_dotted_oids() -> None:
    t = load_templates({"x": {"issuer": "i", "allowed_san_patterns": ["**"], "extended_key_usage": ["1.3.6.1.5.5.7.3.9"]}})["x"]
    assert t.extended_key_usage_oids() == [x509.ObjectIdentifier("1.3.6.1.5.5.7.3.9")]


# -- name patterns ---------------------------------------------------------------------


def _allowed(patterns: tuple[str, ...], names: SubjectNames, wild: bool = False) -> bool:
    t = make_template(allowed_san_patterns=patterns, allow_wildcards=wild)
    try:
        check_request(t, names)
        return True
    except IssuerError:
        return False


@pytest.mark.parametrize("pattern, name, ok", [
    ("*.example.com", "www.example.com", True),
    ("*.example.com", "WWW.Example.COM.", True),
    ("*.example.com", "example.com", False),
    ("*.example.com", "a.b.example.com", False),
    ("*.example.com", "www.example.com.evil.test", False),
    ("*.example.com", "wwwexample.com", False),
    ("**.example.com", "a.b.example.com", True),
    ("**.example.com", "example.com", False),
    ("web-*.example.com", "web-1.example.com", True),
    ("web-*.example.com", "api-1.example.com", False),
    ("web-??.example.com", "web-12.example.com", True),
    ("example.com", "example.com", True),
    ("example.com", "www.example.com", False),
    ("**", "anything.at.all", True),
])
def test_dns_patterns(pattern: str, name: str, ok: bool) -> None:
    assert _allowed((pattern,), SubjectNames("", (name,), ())) is ok


@pytest.mark.parametrize("patterns, ip, ok", [
    (("10.0.0.0/8",), "10.1.2.3", True),
    (("10.0.0.0/8",), "11.1.2.3", False),
    (("10.0.0.5",), "10.0.0.5", True),
    (("2001:db8::/32",), "2001:db8::1", True),
    (("2001:db8::/32",), "10.0.0.1", False),
    (("**",), "10.0.0.1", False),  # DNS patterns never allow IP addresses
])
def test_ip_patterns(patterns: tuple[str, ...], ip: str, ok: bool) -> None:
    assert _allowed(patterns, SubjectNames("", (), (ip,))) is ok


def test_wildcard_requests() -> None:
    wild = SubjectNames("", ("*.example.com",), ())
    assert not _allowed(("*.example.com",), wild, wild=False)
    assert _allowed(("*.example.com",), wild, wild=True)
    assert _allowed(("**.example.com",), wild, wild=True)
    assert not _allowed(("web-*.example.com",), wild, wild=True)
    assert not _allowed(("*.example.com",), SubjectNames("", ("*.a.example.com",), ()), wild=True)


def test_refusal_message_is_user_safe_and_specific() -> None:
    t = make_template(allowed_san_patterns=("*.example.com",))
    with pytest.raises(IssuerError) as err:
        check_request(t, SubjectNames("", ("www.example.com", "www.other.test"), ()))
    assert str(err.value) == "the template 'web' allows *.example.com only; the request names www.other.test"


# -- CSR key checks -----------------------------------------------------------------------


@pytest.mark.parametrize("key_args, template_over, ok", [
    (("ec", "P-256"), {}, True),
    (("ec", "P-384"), {"curve": "P-384"}, True),
    (("ec", "P-384"), {}, False),
    (("rsa", 2048), {}, False),
    (("rsa", 2048), {"key_type": "rsa", "key_size": 2048, "curve": None, "key_usage": ("digital_signature",)}, True),
    (("rsa", 3072), {"key_type": "rsa", "key_size": 2048, "curve": None, "key_usage": ("digital_signature",)}, False),
])
def test_csr_matches_template(key_args, template_over, ok) -> None:
    csr = load_csr(make_csr(new_key(*key_args), ["a.example.test"]))
    t = make_template(**template_over)
    if ok:
        csr_matches_template(csr, t)
    else:
        with pytest.raises(IssuerError, match="wants a"):
            csr_matches_template(csr, t)


def test_load_csr_accepts_pem_and_refuses_garbage() -> None:
    der = make_csr(new_key(), ["a.example.test"])
    pem = x509.load_der_x509_csr(der).public_bytes(__import__("cryptography").hazmat.primitives.serialization.Encoding.PEM)
    assert load_csr(pem).public_bytes(__import__("cryptography").hazmat.primitives.serialization.Encoding.DER) == der
    for bad in (b"", b"junk", b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"):
        with pytest.raises(IssuerError):
            load_csr(bad)


# -- names ----------------------------------------------------------------------------------


def test_subject_names_are_normalised() -> None:
    n = SubjectNames("WWW.Example.com.", ["api.example.com", "www.example.com", "API.example.com"], ["::FFFF:10.0.0.1", "10.0.0.1"])
    assert n.common_name == "www.example.com"
    assert n.dns == ("api.example.com", "www.example.com")  # order kept, duplicates gone
    assert SubjectNames("www.example.com", ["api.example.com"]).dns == ("www.example.com", "api.example.com")
    assert n.ips == ("::ffff:a00:1", "10.0.0.1")
    ip_cn = SubjectNames("10.0.0.9", [], [])
    assert ip_cn.ips == ("10.0.0.9",) and ip_cn.dns == ()


@pytest.mark.parametrize("args", [
    ("", [], []),
    ("", ["bad_name.example.com"], []),
    ("", ["www.*.example.com"], []),
    ("", ["*.com"], []),
    ("", [], ["10.0.0.256"]),
    ("not a host name", [], []),
])
def test_subject_names_refuse_bad_values(args) -> None:
    with pytest.raises(IssuerError):
        SubjectNames(*args)


def test_subject_names_from_certificate(case_cert) -> None:
    names = SubjectNames.from_certificate(case_cert)
    assert names.common_name == "www.example.test"
    assert names.dns == ("www.example.test", "api.example.test")
    assert names.ips == ("127.0.0.1",)
    assert SubjectNames.from_certificate(x509.load_der_x509_certificate(case_cert)) == names
    with pytest.raises(IssuerError):
        SubjectNames.from_certificate(b"junk")


@pytest.fixture
def case_cert(tmp_path) -> bytes:
    from collector.issuers.internal_ca import InternalCA
    from tests.helpers.collector_issuers import utcnow

    ca = InternalCA("internal", tmp_path)
    names = SubjectNames("www.example.test", ["api.example.test"], ["127.0.0.1"])
    csr = make_csr(new_key(), ["www.example.test"], [], "www.example.test")  # the CSR's names do not matter
    return ca.issue(csr, make_template(), names, utcnow()).certificate_der


# -- revocation reasons ---------------------------------------------------------------------


def test_revocation_reasons() -> None:
    assert [int(r) for r in RevocationReason] == [0, 1, 2, 3, 4, 5, 6, 8, 9, 10]
    assert RevocationReason.parse("keyCompromise") is RevocationReason.key_compromise
    assert RevocationReason.parse("key-compromise") is RevocationReason.key_compromise
    assert RevocationReason.parse("CACOMPROMISE") is RevocationReason.ca_compromise
    assert RevocationReason.parse(4) is RevocationReason.superseded
    assert RevocationReason.parse("removeFromCRL").rfc_name == "removeFromCRL"
    assert RevocationReason.aa_compromise.to_x509() is x509.ReasonFlags.aa_compromise
    for bad in ("7", 7, "lost", True):
        with pytest.raises(IssuerError, match="unknown revocation reason"):
            RevocationReason.parse(bad)
