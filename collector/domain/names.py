"""Certificate facts for people: a distinguished name the registry keeps as ``#`` and the hex of
its DER (collector/domain/certinfo.py does that when a name does not decode, e.g. invalid UTF-8
in a UTF8String) shown decoded with replacement characters and marked; whether a certificate is
not valid yet (its not-before is in the future).
"""
from __future__ import annotations

import datetime as dt

from collector.domain.certinfo import _children, _decode_oid, _DerError, _tlv

#: a short label for the usual attribute types (RFC 4514 and the common extras); others by OID
_LABELS = {
    "2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.9": "STREET", "2.5.4.10": "O",
    "2.5.4.11": "OU", "2.5.4.5": "serialNumber", "2.5.4.4": "SN", "2.5.4.42": "GN", "2.5.4.12": "title",
    "0.9.2342.19200300.100.1.25": "DC", "0.9.2342.19200300.100.1.1": "UID", "1.2.840.113549.1.9.1": "emailAddress",
}
_BMP_STRING, _UNIVERSAL_STRING = 0x1E, 0x1C
#: what :func:`readable_name` says about a name it decoded with replacement characters
NOT_TEXT_MARK = "[not valid text in the certificate: shown with replacement characters]"


def _value(tag: int, raw: bytes) -> str:
    if tag == _BMP_STRING:
        return raw.decode("utf-16-be", "replace")
    if tag == _UNIVERSAL_STRING:
        return raw.decode("utf-32-be", "replace")
    return raw.decode("utf-8", "replace")


def readable_name(text: str) -> tuple[str, bool]:
    """``(what to show, marked)`` for a name as the registry keeps it. A ``#``-hex name (one that
    did not decode) comes back as ``CN=caf\\ufffd,O=...`` (RFC 4514 order, each value decoded with
    replacement characters) and ``marked`` True; any other text comes back as it is."""
    if not text.startswith("#"):
        return text, False
    try:
        der = bytes.fromhex(text[1:])
        tag, start, end = _tlv(der, 0)
        if tag != 0x30 or end != len(der):
            return text, False
        rdns = []
        for set_tag, ss, se in _children(der, start, end):
            if set_tag != 0x31:
                return text, False
            parts = []
            for _, as_, ae in _children(der, ss, se):
                kids = list(_children(der, as_, ae))
                (otag, os_, oe), (vtag, vs, ve) = kids[0], kids[1]
                if otag != 0x06:
                    return text, False
                oid = _decode_oid(der[os_:oe])
                parts.append(f"{_LABELS.get(oid, oid)}={_value(vtag, der[vs:ve])}")
            rdns.append("+".join(parts))
    except (_DerError, ValueError, IndexError):
        return text, False
    return ",".join(reversed(rdns)), True


def not_yet_valid(not_before: dt.datetime | None, now: dt.datetime) -> bool:
    """Whether a certificate is not valid yet at ``now`` (its not-before is later)."""
    return not_before is not None and not_before > now


__all__ = ["readable_name", "not_yet_valid", "NOT_TEXT_MARK"]
