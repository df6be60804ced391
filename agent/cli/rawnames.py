"""A certificate's subject and issuer read from its DER when cryptography refuses them (bytes that are not UTF-8).

cryptography raises on a UTF8String holding bytes that are not UTF-8 (and on some other string
types with wrong content), which used to turn the whole certificate into "cannot be parsed". Here
each attribute is decoded by its string type with U+FFFD for what cannot be decoded, and the
caller marks the row: the names are shown, and the user is told they were repaired.
"""
from __future__ import annotations

from agent.stores.asn1 import DerError, children, decode_oid, read_tlv

__all__ = ["RawNames", "raw_names"]

_SHORT = {"2.5.4.3": "CN", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.6": "C",
          "2.5.4.9": "STREET", "0.9.2342.19200300.100.1.25": "DC", "0.9.2342.19200300.100.1.1": "UID"}
# string tag -> codec
_CODECS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1", 0x1A: "ascii", 0x1E: "utf-16-be",
           0x1C: "utf-32-be"}


class RawNames:
    """``subject`` and ``issuer`` in RFC 4514 order, ``common_name``, and whether anything was replaced."""

    __slots__ = ("subject", "issuer", "common_name", "replaced")

    def __init__(self, subject: str, issuer: str, common_name: str, replaced: bool) -> None:
        self.subject, self.issuer, self.common_name, self.replaced = subject, issuer, common_name, replaced


def raw_names(tbs: bytes) -> RawNames | None:
    """The names of a TBSCertificate's DER; None when its structure is not a certificate's."""
    try:
        _, start, end = read_tlv(tbs)
        items = children(tbs, start, end)
        if items and items[0][0] == 0xA0:        # [0] version
            items = items[1:]
        if len(items) < 5:
            return None
        issuer, issuer_bad, _ = _name(tbs, items[2])
        subject, subject_bad, cn = _name(tbs, items[4])
    except (DerError, ValueError, IndexError):
        return None
    return RawNames(subject, issuer, cn, issuer_bad or subject_bad)


def _name(der: bytes, item: tuple[int, int, int, int]) -> tuple[str, bool, str]:
    tag, _, start, end = item
    if tag != 0x30:
        raise ValueError("not a Name")
    rdns = []
    bad = False
    cn = ""
    for rdn in children(der, start, end):
        parts = []
        for atv in children(der, rdn[2], rdn[3]):
            oid_item, value_item = children(der, atv[2], atv[3])[:2]
            oid = decode_oid(der[oid_item[2]:oid_item[3]])
            raw = der[value_item[2]:value_item[3]]
            codec = _CODECS.get(value_item[0], "utf-8")
            try:
                text = raw.decode(codec)
            except UnicodeDecodeError:
                text = raw.decode(codec, "replace")
                bad = True
            if oid == "2.5.4.3" and not cn:
                cn = text
            parts.append(f"{_SHORT.get(oid, oid)}={_escape(text)}")
        rdns.append("+".join(parts))
    return ",".join(reversed(rdns)), bad, cn


def _escape(text: str) -> str:
    out = "".join("\\" + c if c in ',+"\\<>;' else c for c in text)
    if out[:1] in ("#", " "):
        out = "\\" + out
    if out.endswith(" "):
        out = out[:-1] + "\\ "
    return out
