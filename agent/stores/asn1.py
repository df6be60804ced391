"""The little DER the store writers need: encode a few types, walk definite-length TLVs.

Not a general ASN.1 library: writers use it to put keystore structures
together (JCEKS key protection parameters, PKCS#12 authenticated safes and
MACs) around the parts cryptography makes.
"""
from __future__ import annotations

__all__ = [
    "DerError", "tlv", "seq", "octets", "integer", "oid", "null", "explicit", "read_tlv", "children",
]

SEQUENCE = 0x30
OCTET_STRING = 0x04
INTEGER = 0x02
OID = 0x06
NULL = 0x05


class DerError(ValueError):
    """The bytes are not the definite-length DER this module reads."""


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, content: bytes) -> bytes:
    """One TLV: ``tag``, DER length, ``content``."""
    return bytes([tag]) + _length(len(content)) + content


def seq(*items: bytes) -> bytes:
    """A SEQUENCE of already encoded items."""
    return tlv(SEQUENCE, b"".join(items))


def octets(value: bytes) -> bytes:
    """An OCTET STRING."""
    return tlv(OCTET_STRING, value)


def integer(value: int) -> bytes:
    """A (non-negative) INTEGER."""
    if value < 0:
        raise ValueError("negative integers are not needed here")
    body = value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big")
    return tlv(INTEGER, body)


def oid(dotted: str) -> bytes:
    """An OBJECT IDENTIFIER from its dotted form."""
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out.extend(reversed(chunk))
    return tlv(OID, bytes(out))


def null() -> bytes:
    """NULL."""
    return b"\x05\x00"


def explicit(number: int, content: bytes) -> bytes:
    """``[number] EXPLICIT`` around an encoded value (constructed, context-specific)."""
    return tlv(0xA0 | number, content)


def read_tlv(data: bytes, pos: int = 0, end: int | None = None) -> tuple[int, int, int]:
    """``(tag, content_start, content_end)`` of the TLV at ``pos``; DerError when it is not DER."""
    limit = len(data) if end is None else end
    if pos + 2 > limit:
        raise DerError("truncated TLV")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise DerError("multi-byte tags are not supported")
    first = data[pos + 1]
    if first < 0x80:
        start, length = pos + 2, first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or pos + 2 + count > limit:
            raise DerError("indefinite or oversized length")
        start, length = pos + 2 + count, int.from_bytes(data[pos + 2:pos + 2 + count], "big")
    if start + length > limit:
        raise DerError("TLV runs past its container")
    return tag, start, start + length


def children(data: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """The TLVs between ``start`` and ``end``: ``(tag, tlv_start, content_start, content_end)`` each."""
    out = []
    pos = start
    while pos < end:
        tag, cstart, cend = read_tlv(data, pos, end)
        out.append((tag, pos, cstart, cend))
        pos = cend
    return out


def decode_oid(content: bytes) -> str:
    """The dotted form of an OBJECT IDENTIFIER's content octets."""
    if not content:
        raise DerError("empty OID")
    first = content[0]
    arcs = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    value = 0
    for b in content[1:]:
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            arcs.append(value)
            value = 0
    return ".".join(str(a) for a in arcs)
