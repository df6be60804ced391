"""A small, seeded, reproducible mutation engine for store files.

``mutate(data, rng)`` applies one to three mutations chosen from: bit flips, byte overwrites,
truncation, insertion, deletion, duplication of a range, odd ASN.1 lengths (a DER length
rewritten to 0, +/-1, 0x80 indefinite, 0x81 0xff, 0x84 0xffffffff...), odd JKS lengths (a
big-endian u16/u32 field rewritten), and for PEM: line edits and the same binary mutations
applied inside one block's base64 (so the DER is damaged, not only the text).

The same ``(seed, case number)`` always gives the same bytes: :func:`case_rng`.
"""
from __future__ import annotations

import base64
import random
import re
from typing import Callable

_BLOCK = re.compile(rb"(-----BEGIN [^-\n]{1,64}-----\r?\n)(.*?)(-----END [^-\n]{1,64}-----)", re.S)
_TAGS = (0x30, 0x31, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0c, 0x13, 0x17, 0x18, 0xa0, 0xa3, 0x80)
_ODD_LENGTHS = (b"\x00", b"\x01", b"\x7f", b"\x80", b"\x81\xff", b"\x82\xff\xff", b"\x84\xff\xff\xff\xff",
                b"\x84\x7f\xff\xff\xff", b"\x85\x01\x00\x00\x00\x00", b"\x81\x00", b"\x82\x00\x01")
_ODD_U32 = (0, 1, 2, 0x7fffffff, 0xffffffff, 0x80000000, 0x10000, 255, 256)
_ODD_U16 = (0, 1, 0x7fff, 0xffff, 0x8000, 255, 256)


def case_rng(seed: int, case: int) -> random.Random:
    """The random source of one case: reproducible from the two numbers alone."""
    return random.Random(seed * 1_000_003 + case)


def _pos(data: bytes, rng: random.Random) -> int:
    return rng.randrange(len(data) + 1)


def bit_flip(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return data
    b = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3, 8))):
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
    return bytes(b)


def overwrite(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return data
    b = bytearray(data)
    i = rng.randrange(len(b))
    b[i] = rng.choice((0x00, 0xff, 0x7f, 0x80, 0x30, 0x0a, 0x2d, rng.randrange(256)))
    return bytes(b)


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[:rng.randrange(len(data))] if data else data


def insert(data: bytes, rng: random.Random) -> bytes:
    i = _pos(data, rng)
    what = rng.choice((
        bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))),
        b"\n", b"-----", b"\x00" * rng.randrange(1, 9), b"-----BEGIN CERTIFICATE-----\n",
        b"-----END CERTIFICATE-----\n", b"\xff\xfe", b"=", b"\r",
    ))
    return data[:i] + what + data[i:]


def delete(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return data
    i = rng.randrange(len(data))
    return data[:i] + data[i + rng.randrange(1, min(256, len(data) - i) + 1):]


def duplicate(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return data
    i = rng.randrange(len(data))
    chunk = data[i:i + rng.randrange(1, 512)]
    j = _pos(data, rng)
    return data[:j] + chunk + data[j:]


def asn1_length(data: bytes, rng: random.Random) -> bytes:
    """Rewrite the length of a DER TLV (a byte that looks like a tag followed by a length)."""
    spots = [i for i in range(len(data) - 2) if data[i] in _TAGS]
    if not spots:
        return bit_flip(data, rng)
    i = rng.choice(spots) + 1
    first = data[i]
    old_len = 1 + (first & 0x7f if first & 0x80 else 0)
    if rng.random() < 0.3 and first < 0x80:
        new = bytes(((first + rng.choice((-1, 1, 2, -2))) % 0x80,))
    else:
        new = rng.choice(_ODD_LENGTHS)
    return data[:i] + new + data[i + old_len:]


def jks_length(data: bytes, rng: random.Random) -> bytes:
    """Rewrite a big-endian u16 or u32 somewhere (JKS/JCEKS lengths and counts are such fields)."""
    if len(data) < 12:
        return bit_flip(data, rng)
    if rng.random() < 0.2:
        i = 8                                    # the entry count
        value = rng.choice(_ODD_U32).to_bytes(4, "big")
    elif rng.random() < 0.5:
        i = rng.randrange(len(data) - 4)
        value = rng.choice(_ODD_U32 + (int.from_bytes(data[i:i + 4], "big") + 1,)).to_bytes(4, "big")
    else:
        i = rng.randrange(len(data) - 2)
        value = rng.choice(_ODD_U16 + ((int.from_bytes(data[i:i + 2], "big") + 1) & 0xffff,)).to_bytes(2, "big")
    return data[:i] + value + data[i + len(value):]


def pem_lines(data: bytes, rng: random.Random) -> bytes:
    """Delete, duplicate, swap or damage whole lines (BEGIN/END lines most of all)."""
    lines = data.splitlines(keepends=True)
    if not lines:
        return data
    boundary = [i for i, ln in enumerate(lines) if ln.startswith(b"-----")]
    i = rng.choice(boundary) if boundary and rng.random() < 0.7 else rng.randrange(len(lines))
    op = rng.randrange(5)
    if op == 0:
        del lines[i]
    elif op == 1:
        lines.insert(i, lines[i])
    elif op == 2:
        j = rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    elif op == 3:
        ln = bytearray(lines[i])
        k = rng.randrange(len(ln))
        ln[k] = rng.choice(b"-ABCDEFGHIJKLMNOPQRSTUVWXYZ \t\x00x")
        lines[i] = bytes(ln)
    else:
        lines[i] = lines[i].rstrip(b"\r\n")      # two lines glued together
    return b"".join(lines)


def pem_der(data: bytes, rng: random.Random) -> bytes:
    """A binary mutation inside one PEM block's DER, re-encoded as base64."""
    blocks = list(_BLOCK.finditer(data))
    if not blocks:
        return bit_flip(data, rng)
    m = rng.choice(blocks)
    try:
        der = base64.b64decode(m.group(2))
    except ValueError:
        return bit_flip(data, rng)
    bad = rng.choice((bit_flip, asn1_length, asn1_length, truncate, insert, delete, overwrite))(der, rng)
    b64 = base64.encodebytes(bad)
    return data[:m.start(2)] + b64 + data[m.end(2):]


BINARY: tuple[Callable[[bytes, random.Random], bytes], ...] = (
    bit_flip, bit_flip, overwrite, truncate, insert, delete, duplicate, asn1_length, asn1_length)
JAVA = BINARY + (jks_length, jks_length, jks_length)
PEM = (bit_flip, overwrite, truncate, insert, delete, duplicate, pem_lines, pem_lines, pem_lines, pem_der, pem_der,
       pem_der)


def mutate(data: bytes, rng: random.Random, store_type: str) -> bytes:
    """``data`` with one to three mutations suited to its format."""
    ops = PEM if store_type == "pem" else JAVA if store_type in ("jks", "jceks") else BINARY
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        data = rng.choice(ops)(data, rng)
    return data
