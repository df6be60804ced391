"""collector/domain/names.py: a name that is not valid text (kept as # + hex DER) shown decoded with
replacement characters and marked; certificates made by openssl, one byte of the name made invalid."""
from __future__ import annotations

import datetime as dt
import pathlib
import ssl
import subprocess

from collector.domain.certinfo import parse_certificate
from collector.domain.names import not_yet_valid, readable_name
from tests.conftest import need_tools


def _der(tmp: pathlib.Path, subj: str) -> bytes:
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(tmp / "k.pem"), "-out", str(tmp / "c.pem"), "-days", "30", "-subj", subj],
                   check=True, capture_output=True)
    return ssl.PEM_cert_to_DER_cert((tmp / "c.pem").read_text())


def test_a_name_with_invalid_utf8_is_shown_with_replacement_and_marked(tmp_path: pathlib.Path) -> None:
    need_tools("openssl")
    der = _der(tmp_path, "/C=DE/O=Acme/OU=Web+UID=w1/CN=cafX.example.test")
    bad = der.replace(b"cafX", b"caf\xff")          # a UTF8String that is not UTF-8
    facts = parse_certificate(bad)
    assert facts.subject.startswith("#30")           # the registry keeps the DER (hex)
    shown, marked = readable_name(facts.subject)
    assert marked and shown == "CN=caf\ufffd.example.test,OU=Web+UID=w1,O=Acme,C=DE"
    assert readable_name(facts.issuer) == (shown, True)
    # a good name, and hex that is not a name, stay as they are
    good = parse_certificate(der).subject
    assert readable_name(good) == (good, False)
    assert readable_name("#zz") == ("#zz", False) and readable_name("#3003020101") == ("#3003020101", False)


def test_not_yet_valid_follows_the_clock() -> None:
    t = dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc)
    assert not_yet_valid(t, t - dt.timedelta(seconds=1))
    assert not not_yet_valid(t, t) and not not_yet_valid(None, t)
