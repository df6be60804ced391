"""PEM files with damaged blocks: every block is an entry or a problem naming it (issue 13).

Certificates are made at test time with openssl; the damage is done to the bytes.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent.inventory import MATCHES, NO_KEY
from agent.stores import ReadContext, StoreReadError, reader_for

from tests.helpers.agent_stores import openssl


@pytest.fixture(scope="module")
def pems(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("pemblocks")
    out = {}
    for name in ("a", "b", "c"):
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.crt"), "-days", "30",
                "-subj", f"/CN={name}.example.test")
        out[name] = (d / f"{name}.crt").read_bytes()
        out[name + "_key"] = (d / f"{name}.key").read_bytes()
    return out


def read(data: bytes, store_type: str = "pem") -> tuple[list, ReadContext]:
    ctx = ReadContext()
    return reader_for(store_type).read("/x/f.pem", data, ctx), ctx


def fps(entries: list) -> list[str]:
    return [e.fingerprint for e in entries]


def fp_of(pem: bytes) -> str:
    [e], _ = read(pem)
    return e.fingerprint


def block_ref(message: str) -> tuple[int, int]:
    m = re.search(r"block (\d+)", message)
    b = re.search(r"byte (\d+)", message)
    assert m and b, message
    return int(m.group(1)), int(b.group(1))


def test_damaged_begin_line_in_a_cert_and_key_file_is_a_problem(pems: dict[str, bytes]) -> None:
    """It used to give 0 entries and no problem: the registry then marked the certificate removed."""
    data = pems["a"] + pems["b"] + pems["a_key"]
    bad = data.replace(b"-----BEGIN CERTIFICATE-----", b"-----BEGIN CERTIFICATF-----", 1)
    entries, ctx = read(bad)
    assert fps(entries) == [fp_of(pems["b"])]
    assert [p.reason for p in ctx.problems] == ["corrupt"]            # BEGIN and END labels differ
    assert block_ref(ctx.problems[0].message) == (1, 0)
    for damage in (b"----BEGIN CERTIFICATE-----", b"-----BEGIN CERTIFICATE----", b"-----BEGxN CERTIFICATE-----"):
        entries, ctx = read(data.replace(b"-----BEGIN CERTIFICATE-----", damage, 1))
        assert fps(entries) == [fp_of(pems["b"])], damage
        assert ctx.problems and all(p.reason == "corrupt" for p in ctx.problems), damage
        assert block_ref(ctx.problems[0].message)[1] == 0, ctx.problems[0].message


def test_damaged_end_line_does_not_swallow_the_next_block(pems: dict[str, bytes]) -> None:
    data = pems["a"] + pems["b"] + pems["c"]
    for damage in (b"-----END CERTIFICAT-----", b"----END CERTIFICATE-----", b"-----END CERTIFICATE---",
                   b"-----ENDCERTIFICATE-----"):
        bad = data.replace(b"-----END CERTIFICATE-----", damage, 1)
        entries, ctx = read(bad)
        assert fps(entries) == [fp_of(pems["b"]), fp_of(pems["c"])], damage
        assert len(ctx.problems) == 1 and ctx.problems[0].reason == "corrupt", (damage, ctx.problems)
        assert block_ref(ctx.problems[0].message) == (1, 0)
    # the END line gone entirely: block 1 runs into block 2's BEGIN line
    lines = data.splitlines(keepends=True)
    gone = b"".join(l for i, l in enumerate(lines) if i != lines.index(b"-----END CERTIFICATE-----\n"))
    entries, ctx = read(gone)
    assert fps(entries) == [fp_of(pems["b"]), fp_of(pems["c"])]
    assert "no END line" in ctx.problems[0].message and block_ref(ctx.problems[0].message) == (1, 0)


def test_unknown_label_among_certificates_is_reported(pems: dict[str, bytes]) -> None:
    odd = pems["b"].replace(b"CERTIFICATE", b"CERTIFIKAT")
    entries, ctx = read(pems["a"] + odd + pems["c"])
    assert fps(entries) == [fp_of(pems["a"]), fp_of(pems["c"])]
    [p] = ctx.problems
    assert p.reason == "unsupported" and "'CERTIFIKAT'" in p.message
    assert block_ref(p.message) == (2, len(pems["a"]))
    # known non-certificate blocks stay quiet
    dh = b"-----BEGIN DH PARAMETERS-----\nMAYCAQI=\n-----END DH PARAMETERS-----\n"
    entries, ctx = read(pems["a"] + dh)
    assert len(entries) == 1 and ctx.problems == []


def test_one_bad_block_keeps_every_good_one(pems: dict[str, bytes]) -> None:
    lines = pems["b"].splitlines(keepends=True)
    broken_b64 = b"".join(lines[:2] + [b"!!!! not base64 at all ????\n"] + lines[2:])
    cut_der = b"".join(lines[:3] + lines[-1:])                     # body lines lost, END line kept
    for bad in (broken_b64, cut_der):
        entries, ctx = read(pems["a"] + bad + pems["c"] + pems["a_key"])
        assert fps(entries) == [fp_of(pems["a"]), fp_of(pems["c"])]
        assert entries[0].key_match == MATCHES and entries[1].key_match == NO_KEY
        [p] = ctx.problems
        assert p.reason in ("corrupt", "truncated") and block_ref(p.message) == (2, len(pems["a"]))


def test_orphan_end_line_and_truncation(pems: dict[str, bytes]) -> None:
    data = pems["a"] + pems["b"]
    no_begin = data.replace(b"-----BEGIN CERTIFICATE-----\n", b"", 1)
    entries, ctx = read(no_begin)
    assert fps(entries) == [fp_of(pems["b"])]
    assert "without its BEGIN line" in ctx.problems[0].message
    entries, ctx = read(data[: len(pems["a"]) + 100])
    assert fps(entries) == [fp_of(pems["a"])]
    assert [p.reason for p in ctx.problems] == ["truncated"]
    assert block_ref(ctx.problems[0].message) == (2, len(pems["a"]))


def test_blocks_sharing_a_line(pems: dict[str, bytes]) -> None:
    """Two files concatenated without a newline, and a PEM written on one line."""
    glued = pems["a"].rstrip(b"\n") + pems["b"]
    entries, ctx = read(glued)
    assert fps(entries) == [fp_of(pems["a"]), fp_of(pems["b"])] and ctx.problems == []
    one_line = pems["c"].replace(b"\n", b"")
    entries, ctx = read(one_line)
    assert fps(entries) == [fp_of(pems["c"])] and ctx.problems == []
    crlf = (pems["a"] + pems["b"]).replace(b"\n", b"\r\n")
    entries, ctx = read(crlf)
    assert len(entries) == 2 and ctx.problems == []


def test_text_without_any_block_is_one_error(pems: dict[str, bytes]) -> None:
    with pytest.raises(StoreReadError) as e:
        read(b"just some text\n" * 10)
    assert e.value.reason == "corrupt"
