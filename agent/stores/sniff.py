"""Recognise a store file's format from its first bytes, cheaply.

No parsing beyond a few ASN.1 headers: this runs for every file of an
``auto`` store.
"""
from __future__ import annotations

from agent.stores.base import tlv_header

JKS_MAGIC = b"\xfe\xed\xfe\xed"
JCEKS_MAGIC = b"\xce\xce\xce\xce"
# OID 1.2.840.113549.1.7.2 (PKCS#7 signedData), DER-encoded with its tag
_SIGNED_DATA_OID = b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02"

DESCRIPTIONS = {
    "pem": "a PEM file",
    "der": "a DER certificate",
    "pkcs7": "a DER PKCS#7 certificate bundle",
    "pkcs12": "a PKCS#12 keystore",
    "jks": "a JKS keystore",
    "jceks": "a JCEKS keystore",
}

# File name endings that announce a certificate store, and the type they suggest.
EXTENSIONS = {
    ".pem": "pem", ".crt": "pem", ".cer": "pem", ".cert": "pem", ".key": "pem", ".ca-bundle": "pem",
    ".der": "der", ".p7b": "der", ".p7c": "der",
    ".p12": "pkcs12", ".pfx": "pkcs12",
    ".jks": "jks", ".jceks": "jceks", ".keystore": "jks", ".truststore": "jks", ".ks": "jks",
}


def sniff(data: bytes) -> str | None:
    """The format of ``data``: pem, der, pkcs7, pkcs12, jks, jceks, or None when unknown."""
    head = data[:4]
    if head == JKS_MAGIC:
        return "jks"
    if head == JCEKS_MAGIC:
        return "jceks"
    if data.startswith(b"-----BEGIN ") or data[:64].lstrip().startswith(b"-----BEGIN "):
        return "pem"
    outer = tlv_header(data)
    if outer is not None and outer[0] == 0x30:
        pos = outer[1]
        inner = tlv_header(data, pos)
        if inner is not None:
            tag, hl, length = inner
            if tag == 0x02 and length == 1 and data[pos + hl:pos + hl + 1] == b"\x03":
                return "pkcs12"      # PFX ::= SEQUENCE { version INTEGER (3), ... }
            if tag == 0x30:
                return "der"         # Certificate ::= SEQUENCE { tbsCertificate SEQUENCE, ... }
            if data.startswith(_SIGNED_DATA_OID, pos):
                return "pkcs7"       # ContentInfo ::= SEQUENCE { contentType OID, ... }
    if b"-----BEGIN " in data:
        return "pem"                 # PEM after some text (openssl's "Bag Attributes", x509 -text)
    return None


def type_from_name(path: str) -> str | None:
    """The store type a file's name suggests, or None."""
    lower = path.lower()
    dot = lower.rfind(".")
    if dot < 0 or "/" in lower[dot:] or "\\" in lower[dot:]:
        return None
    return EXTENSIONS.get(lower[dot:])


def hint(data: bytes, wanted: str) -> str:
    """A sentence for error messages when a file is not of the configured type."""
    kind = sniff(data)
    if kind is None or kind == wanted:
        return ""
    return f" (the content looks like {DESCRIPTIONS[kind]}; set type = \"auto\" to detect it)"
