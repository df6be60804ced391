"""Store readers on real files made by openssl and keytool."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from agent.config import Secret
from agent.errors import PasswordUnavailable
from agent.inventory import (
    CERTIFICATE, MATCHES, MISMATCH, NO_KEY, PRIVATE_KEY_ENTRY, TRUSTED_CERTIFICATE, UNKNOWN, FoundCert,
)
from agent.stores import ReadContext, StoreReadError, reader_for, sniff

from tests.helpers.agent_stores import keytool, openssl


def read(kind: str, path: str | Path, password: str | None = None, data: bytes | None = None,
         unavailable: PasswordUnavailable | None = None) -> tuple[list[FoundCert], ReadContext]:
    def pw() -> Secret | None:
        if unavailable is not None:
            raise unavailable
        return Secret(password) if password is not None else None

    ctx = ReadContext("owner", "group", 0o640, 1.5, {"env": "t"}, pw)
    data = Path(path).read_bytes() if data is None else data
    return reader_for(kind).read(str(path), data, ctx), ctx


def read_error(kind: str, path: str | Path, password: str | None = None, data: bytes | None = None) -> StoreReadError:
    with pytest.raises(StoreReadError) as e:
        read(kind, path, password, data)
    return e.value


def password(samples: dict, name: str) -> str:
    return Path(samples["password_files"][name]).read_text().rstrip("\n")


def openssl_fingerprint(pem_path: str, inform: str = "PEM") -> str:
    out = subprocess.run(["openssl", "x509", "-in", pem_path, "-inform", inform, "-noout", "-fingerprint", "-sha256"],
                         capture_output=True, text=True, check=True).stdout
    return out.strip().split("=", 1)[1].replace(":", "").lower()


def shape(entries: list[FoundCert]) -> list[tuple]:
    return [(e.key.alias, e.key.chain_index, e.entry_type, e.has_private_key, e.key_encrypted, e.key_match)
            for e in entries]


# ----------------------------------------------------------------------------- PEM

def test_pem_single_certificate_matches_openssl_fingerprint(samples: dict) -> None:
    path = samples["files"]["cert"]
    entries, ctx = read("pem", path)
    assert shape(entries) == [("", 0, CERTIFICATE, False, False, NO_KEY)]
    e = entries[0]
    assert e.fingerprint == openssl_fingerprint(path)
    assert (e.key.store_type, e.key.path) == ("pem", path)
    facts = (e.file_owner, e.file_group, e.file_mode, e.file_mtime, dict(e.labels))
    assert facts == ("owner", "group", 0o640, 1.5, {"env": "t"})
    assert not ctx.problems


def test_pem_bundle_and_fullchain_keep_file_order(samples: dict) -> None:
    entries, _ = read("pem", samples["files"]["bundle"])
    assert [e.key.chain_index for e in entries] == [0, 1, 2]
    ca = samples["ca"]
    expected = [openssl_fingerprint(ca[k]) for k in ("root", "intermediate", "other_root")]
    assert [e.fingerprint for e in entries] == expected
    entries, _ = read("pem", samples["files"]["fullchain"])
    assert [e.fingerprint for e in entries] == [openssl_fingerprint(samples["files"]["cert"]),
                                                  openssl_fingerprint(ca["intermediate"])]


def test_pem_key_matching(samples: dict) -> None:
    f = samples["files"]
    assert shape(read("pem", f["combined"])[0]) == [("", 0, CERTIFICATE, True, False, MATCHES)]
    assert shape(read("pem", f["mismatch"])[0]) == [("", 0, CERTIFICATE, True, False, MISMATCH)]
    # PKCS#8 "ENCRYPTED PRIVATE KEY" and legacy "Proc-Type: 4,ENCRYPTED": present, encrypted, not checkable
    assert shape(read("pem", f["encrypted_key"])[0]) == [("", 0, CERTIFICATE, True, True, UNKNOWN)]
    assert shape(read("pem", f["legacy_encrypted"])[0]) == [("", 0, CERTIFICATE, True, True, UNKNOWN)]
    assert b"Proc-Type: 4,ENCRYPTED" in Path(f["legacy_encrypted"]).read_bytes()


def test_pem_key_matches_whichever_certificate_it_belongs_to(samples: dict, tmp_path: Path) -> None:
    f = samples["files"]
    path = tmp_path / "chain-then-key.pem"
    # intermediate first, then the server certificate, then the server's key
    path.write_bytes(Path(samples["ca"]["intermediate"]).read_bytes() + Path(f["cert"]).read_bytes()
                     + Path(f["key"]).read_bytes())
    assert shape(read("pem", path)[0]) == [("", 0, CERTIFICATE, False, False, NO_KEY),
                                           ("", 1, CERTIFICATE, True, False, MATCHES)]


def test_pem_key_only_file_is_quietly_empty(samples: dict) -> None:
    entries, ctx = read("pem", samples["files"]["key"])
    assert entries == [] and ctx.problems == []


def test_pem_with_openssl_bag_attributes_text(samples: dict, tmp_path: Path) -> None:
    out = tmp_path / "from-p12.pem"
    openssl("pkcs12", "-in", samples["files"]["p12"], "-nodes", "-passin", f"file:{samples['password_files']['p12']}",
            "-out", str(out))
    assert out.read_bytes().startswith(b"Bag Attributes")
    assert sniff(out.read_bytes()) == "pem"
    entries, _ = read("auto", out)
    assert [e.key_match for e in entries] == [MATCHES, NO_KEY]


def test_pem_bad_input(samples: dict, tmp_path: Path) -> None:
    f = samples["files"]
    e = read_error("auto", f["corrupt"])
    assert e.reason == "corrupt"
    text = Path(f["cert"]).read_bytes()
    entries, ctx = read("pem", f["truncated"])
    assert entries == [] and [p.reason for p in ctx.problems] == ["truncated"]
    assert "ends inside a certificate block" in ctx.problems[0].message
    # a bundle cut in its second certificate: the first one is still reported
    cut = tmp_path / "cut.pem"
    full = Path(f["fullchain"]).read_bytes()
    cut.write_bytes(full[: len(text) + 300])
    entries, ctx = read("pem", cut)
    assert len(entries) == 1 and [p.reason for p in ctx.problems] == ["truncated"]
    # base64 lines removed from the middle: the END line is there, the DER is short
    lines = text.splitlines(keepends=True)
    short = tmp_path / "short.pem"
    short.write_bytes(b"".join(lines[:3] + lines[-2:]))
    entries, ctx = read("pem", short)
    assert entries == [] and [p.reason for p in ctx.problems] == ["truncated"]
    # PEM without certificates
    dh = tmp_path / "dhparam.pem"
    dh.write_bytes(b"-----BEGIN DH PARAMETERS-----\nMAYCAQI=\n-----END DH PARAMETERS-----\n")
    assert read_error("pem", dh).reason == "no_certificates"
    # not PEM at all, configured as pem: says what it looks like
    e = read_error("pem", f["der"])
    assert e.reason == "corrupt" and "looks like a DER certificate" in e.message


# ----------------------------------------------------------------------------- DER

def test_der_certificate(samples: dict, tmp_path: Path) -> None:
    path = samples["files"]["der"]
    entries, _ = read("der", path)
    assert shape(entries) == [("", 0, CERTIFICATE, False, False, NO_KEY)]
    assert entries[0].fingerprint == openssl_fingerprint(path, "DER") == openssl_fingerprint(samples["files"]["cert"])
    data = Path(path).read_bytes()
    assert read_error("der", path, data=data[:-10]).reason == "truncated"
    assert read_error("der", path, data=b"\x02\x01\x00" + data).reason == "corrupt"
    e = read_error("der", samples["files"]["cert"])
    assert e.reason == "corrupt" and "looks like a PEM file" in e.message


def test_der_pkcs7_bundle(samples: dict, tmp_path: Path) -> None:
    p7b = tmp_path / "chain.p7b"
    openssl("crl2pkcs7", "-nocrl", "-certfile", samples["files"]["fullchain"], "-outform", "DER", "-out", str(p7b))
    assert sniff(p7b.read_bytes()) == "pkcs7"
    entries, _ = read("auto", p7b)
    assert len(entries) == 2 and entries[0].key.store_type == "der"


# ----------------------------------------------------------------------------- PKCS#12

def test_pkcs12_openssl_with_chain(samples: dict) -> None:
    entries, _ = read("pkcs12", samples["files"]["p12"], password(samples, "p12"))
    assert shape(entries) == [("server", 0, PRIVATE_KEY_ENTRY, True, True, MATCHES),
                              ("server", 1, PRIVATE_KEY_ENTRY, False, False, NO_KEY)]
    assert entries[0].fingerprint == openssl_fingerprint(samples["files"]["cert"])
    assert entries[1].fingerprint == openssl_fingerprint(samples["ca"]["intermediate"])


def test_pkcs12_made_by_keytool_has_trusted_entry(samples: dict) -> None:
    entries, _ = read("pkcs12", samples["files"]["keytool_p12"], password(samples, "p12"))
    assert shape(entries) == [("tomcat", 0, PRIVATE_KEY_ENTRY, True, True, MATCHES),
                              ("sample-root", 0, TRUSTED_CERTIFICATE, False, False, NO_KEY)]


def test_pkcs12_passwords(samples: dict, tmp_path: Path) -> None:
    p12 = samples["files"]["p12"]
    e = read_error("pkcs12", p12, "not-it")
    assert e.reason == "wrong_password" and "not-it" not in e.message
    e = read_error("pkcs12", p12, None)
    assert e.reason == "no_password" and "password_file" in e.message
    with pytest.raises(StoreReadError) as err:
        missing = PasswordUnavailable("no_password", "store 'x': the password file /p does not exist")
        read("pkcs12", p12, unavailable=missing)
    assert err.value.reason == "no_password" and "/p does not exist" in err.value.message
    # a PKCS#12 without a password opens without one configured
    nopw = tmp_path / "nopw.p12"
    openssl("pkcs12", "-export", "-in", samples["files"]["cert"], "-inkey", samples["files"]["key"],
            "-passout", "pass:", "-out", str(nopw))
    entries, _ = read("auto", nopw)
    assert shape(entries) == [("", 0, PRIVATE_KEY_ENTRY, True, False, MATCHES)]


def test_pkcs12_damaged(samples: dict) -> None:
    data = Path(samples["files"]["p12"]).read_bytes()
    pw = password(samples, "p12")
    assert read_error("pkcs12", "x.p12", pw, data=data[: len(data) // 2]).reason == "truncated"
    assert read_error("pkcs12", "x.p12", pw, data=b"\x30\x03\x02\x01\x03").reason == "corrupt"
    assert read_error("pkcs12", "x.p12", pw, data=b"garbage!" * 10).reason == "corrupt"


# ----------------------------------------------------------------------------- JKS / JCEKS

@pytest.mark.parametrize("name,kind", [("jks", "jks"), ("jceks", "jceks")])
def test_java_keystores(samples: dict, name: str, kind: str) -> None:
    entries, ctx = read("jks", samples["files"][name], password(samples, "jks"))
    assert not ctx.problems
    assert {e.key.store_type for e in entries} == {kind}     # by the file's magic, whatever the config says
    assert sorted(shape(entries)) == [
        ("app", 0, PRIVATE_KEY_ENTRY, True, True, MATCHES),
        ("app", 1, PRIVATE_KEY_ENTRY, False, False, NO_KEY),
        ("app", 2, PRIVATE_KEY_ENTRY, False, False, NO_KEY),
        ("sample-root", 0, TRUSTED_CERTIFICATE, False, False, NO_KEY),
    ]
    by_key = {(e.key.alias, e.key.chain_index): e.fingerprint for e in entries}
    assert by_key[("app", 1)] == openssl_fingerprint(samples["ca"]["intermediate"])
    assert by_key[("app", 2)] == by_key[("sample-root", 0)] == openssl_fingerprint(samples["ca"]["root"])


def test_java_keystore_passwords(samples: dict) -> None:
    jks = samples["files"]["jks"]
    e = read_error("jks", jks, "wrong-password")
    assert e.reason == "wrong_password" and e.store_type == "jks"
    # no password: certificates are still listed (they are not encrypted), with a problem saying so
    entries, ctx = read("jceks", samples["files"]["jceks"], None)
    assert len(entries) == 4 and {e.key_match for e in entries if e.has_private_key} == {UNKNOWN}
    assert [(p.reason, p.store_type) for p in ctx.problems] == [("no_password", "jceks")]


def test_java_keystore_damaged(samples: dict) -> None:
    data = Path(samples["files"]["jks"]).read_bytes()
    pw = password(samples, "jks")
    assert read_error("jks", "x.jks", pw, data=data[:-30]).reason == "truncated"
    assert read_error("jks", "x.jks", pw, data=data[:200]).reason == "truncated"
    bad_tag = data[:8] + b"\x00\x00\x00\x01\x00\x00\x00\x09" + data[16:]      # one entry, of tag 9
    assert read_error("jks", "x.jks", pw, data=bad_tag).reason == "corrupt"
    e = read_error("jks", "x.jks", pw, data=b"not a keystore at all")
    assert e.reason == "corrupt"


def test_jks_key_with_its_own_password_is_unknown(real_tools: dict, tmp_path: Path) -> None:
    ks = tmp_path / "own-keypass.jks"
    keytool("-genkeypair", "-alias", "k", "-keyalg", "EC", "-groupname", "secp256r1", "-dname", "CN=k.example.test",
            "-validity", "30", "-storetype", "JKS", "-keystore", str(ks), "-storepass", "store-pass",
            "-keypass", "other-key-pass")
    entries, ctx = read("jks", ks, "store-pass")
    assert shape(entries) == [("k", 0, PRIVATE_KEY_ENTRY, True, True, UNKNOWN)] and not ctx.problems


def test_keystore_types_are_followed_by_content(samples: dict) -> None:
    # keytool's default keystore type is PKCS#12, even in a file called .jks
    entries, _ = read("jks", samples["files"]["keytool_p12"], password(samples, "p12"))
    assert {e.key.store_type for e in entries} == {"pkcs12"}
    entries, _ = read("pkcs12", samples["files"]["jks"], password(samples, "jks"))
    assert {e.key.store_type for e in entries} == {"jks"}


# ----------------------------------------------------------------------------- auto

def test_auto_detects_every_format(samples: dict) -> None:
    f = samples["files"]
    expected = {"cert": "pem", "der": "der", "p12": "pkcs12", "keytool_p12": "pkcs12", "jks": "jks", "jceks": "jceks"}
    for name, kind in expected.items():
        data = Path(f[name]).read_bytes()
        assert sniff(data) == kind, name
        pw = password(samples, "jks" if kind in ("jks", "jceks") else "p12")
        entries, _ = read("auto", f[name], pw)
        assert entries and {e.key.store_type for e in entries} == {kind}, name


def test_auto_unknown_content(tmp_path: Path) -> None:
    blob = tmp_path / "notes.txt"
    blob.write_text("nothing to see here\n")
    e = read_error("auto", blob)
    assert e.reason == "unsupported"
    named = tmp_path / "server.p12"
    named.write_text("nothing to see here\n")
    e = read_error("auto", named)
    assert (e.reason, e.store_type) == ("corrupt", "pkcs12")


def test_sample_maker_checks_for_tools(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tests.helpers.agent_stores import load_sample_module

    mod = load_sample_module()
    real_openssl = shutil.which("openssl")
    monkeypatch.setenv("PATH", str(tmp_path))           # nothing on PATH
    with pytest.raises(mod.ToolMissing, match="install the Debian package 'openssl'"):
        mod.make_sample_stores(tmp_path / "out")
    if real_openssl:
        (tmp_path / "openssl").symlink_to(real_openssl)
        with pytest.raises(mod.ToolMissing, match="keytool .*default-jre-headless"):
            mod.make_sample_stores(tmp_path / "out")
