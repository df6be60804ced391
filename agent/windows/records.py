"""What the Windows boundary returns, and parsers for it. Pure Python: runs and is tested anywhere.

Three kinds of input, each parsed here and nowhere else:

* Store enumeration records (:class:`StoreRecord`): what :mod:`agent.windows.api`
  reads with CertEnumCertificatesInStore, CertGetCertificateContextProperty and
  CryptAcquireCertificatePrivateKey/NCryptGetProperty/NCryptExportKey. They
  round-trip through a JSON capture format (:func:`dump_capture`,
  :func:`load_capture`) so that what a Windows host returns can be recorded and
  replayed in tests.
* ``netsh http show sslcert`` text (:func:`parse_sslcert`): the http.sys SSL
  bindings, which decide the certificate a port (``IP:port``), an SNI host name
  (``Hostname:port``) or the IIS Central Certificate Store (``Central
  Certificate Store``) serves. English output only: netsh localises its labels.
* ``appcmd list site /config /xml`` (:func:`parse_sites`): the IIS sites and
  their bindings (``bindingInformation`` ``IP:port:host``, ``sslFlags``).

:func:`iis_bindings` joins the last two into the bindings the registry shows,
and :func:`update_sslcert_args` makes the argument list that rebinds one
http.sys entry while keeping every other setting it had.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import struct
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from agent.inventory import IisBinding
from agent.windows.errors import RecordFormatError

__all__ = [
    "STORE_LOCATION", "KeyProvInfo", "KeyFacts", "StoreRecord", "SslBinding", "SiteBinding", "IisSite",
    "thumbprint_of", "normalize_thumbprint", "load_capture", "dump_capture", "public_key_from_blob",
    "public_blob_of", "parse_sslcert", "parse_sites", "parse_binding_information", "iis_bindings",
    "update_sslcert_args", "CAPTURE_FORMAT", "NCRYPT_ALLOW_EXPORT_FLAG", "NCRYPT_ALLOW_PLAINTEXT_EXPORT_FLAG",
    "KEY_MISSING_CODES", "is_exportable",
]

STORE_LOCATION = "LocalMachine"
CAPTURE_FORMAT = "certfleet-windows-store-capture/1"

NCRYPT_ALLOW_EXPORT_FLAG = 0x1
NCRYPT_ALLOW_PLAINTEXT_EXPORT_FLAG = 0x2
# CryptAcquireCertificatePrivateKey failures that mean "the key the certificate names does not exist"
KEY_MISSING_CODES = {
    0x80090016: "NTE_BAD_KEYSET",
    0x8009000D: "NTE_NO_KEY",
    0x80092004: "CRYPT_E_NOT_FOUND",
    0x8009200B: "CRYPT_E_NO_KEY_PROPERTY",
}

_HEX40 = re.compile(r"[0-9A-F]{40}")


def thumbprint_of(der: bytes) -> str:
    """The Windows thumbprint of a certificate: SHA-1 of its DER, upper-case hex."""
    return hashlib.sha1(der).hexdigest().upper()  # noqa: S324 - the thumbprint is SHA-1 by definition


def normalize_thumbprint(value: str) -> str:
    """Upper-case hex without spaces, colons or the invisible marks copying from MMC adds (U+200E, U+200F, BOM).

    Raises :class:`RecordFormatError` when the result is not 40 hex digits.
    """
    text = re.sub(r"[\s:\u200e\u200f\ufeff]", "", value or "").upper()
    if not _HEX40.fullmatch(text):
        raise RecordFormatError(f"not a certificate thumbprint (40 hex digits): {value[:60]!r}")
    return text


# --------------------------------------------------------------------------- store records

@dataclass(frozen=True)
class KeyProvInfo:
    """CERT_KEY_PROV_INFO_PROP_ID (CRYPT_KEY_PROV_INFO): where the certificate's private key lives."""

    container: str                   # pwszContainerName
    provider: str                    # pwszProvName
    prov_type: int = 0               # dwProvType: 0 = a CNG key storage provider, >0 = a legacy CryptoAPI CSP
    flags: int = 0                   # dwFlags (CRYPT_MACHINE_KEYSET 0x20, ...)
    key_spec: int = 0                # dwKeySpec: AT_KEYEXCHANGE 1, AT_SIGNATURE 2, CERT_NCRYPT_KEY_SPEC 0xFFFFFFFF


@dataclass(frozen=True)
class KeyFacts:
    """What opening the private key silently told (CryptAcquireCertificatePrivateKey, NCryptGetProperty).

    ``export_policy`` is NCRYPT_EXPORT_POLICY_PROPERTY (None when it could not be
    read); ``public_blob`` a BCRYPT_PUBLIC_KEY_BLOB from NCryptExportKey (the
    public half is exportable even from non-exportable keys); ``error_code`` and
    ``error`` say why the key could not be opened (0 / "" when it was).
    """

    acquired: bool
    provider: str = ""
    export_policy: int | None = None
    public_blob: bytes | None = field(default=None, repr=False)
    error_code: int = 0
    error: str = ""


@dataclass(frozen=True)
class StoreRecord:
    """One certificate in one system store, as the boundary read it."""

    store_location: str              # LocalMachine
    store_name: str                  # My, WebHosting, ...
    der: bytes = field(repr=False)
    sha1_hash: str = ""              # CERT_SHA1_HASH_PROP_ID, upper-case hex
    friendly_name: str = ""          # CERT_FRIENDLY_NAME_PROP_ID
    key_prov_info: KeyProvInfo | None = None
    key: KeyFacts | None = None

    @property
    def thumbprint(self) -> str:
        return thumbprint_of(self.der)

    @property
    def store_path(self) -> str:
        return f"{self.store_location}\\{self.store_name}"


def is_exportable(policy: int | None) -> bool:
    return bool(policy is not None and policy & (NCRYPT_ALLOW_EXPORT_FLAG | NCRYPT_ALLOW_PLAINTEXT_EXPORT_FLAG))


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def dump_capture(stores: Iterable[tuple[str, str, Sequence[StoreRecord]]], source: str, note: str = "") -> str:
    """The JSON capture of store enumerations: ``[(location, name, records), ...]``.

    ``source`` says where the values come from: ``"windows"`` for a capture made
    on a Windows host, ``"composed"`` for values written by hand or by a test.
    """
    out: dict[str, Any] = {"format": CAPTURE_FORMAT, "source": source, "note": note, "stores": []}
    for location, name, records in stores:
        recs = []
        for r in records:
            props: dict[str, Any] = {"CERT_SHA1_HASH_PROP_ID": r.sha1_hash or None,
                                     "CERT_FRIENDLY_NAME_PROP_ID": r.friendly_name or None,
                                     "CERT_KEY_PROV_INFO_PROP_ID": None}
            if r.key_prov_info is not None:
                p = r.key_prov_info
                props["CERT_KEY_PROV_INFO_PROP_ID"] = {
                    "pwszContainerName": p.container, "pwszProvName": p.provider, "dwProvType": p.prov_type,
                    "dwFlags": p.flags, "dwKeySpec": p.key_spec,
                }
            key = None
            if r.key is not None:
                key = {"acquired": r.key.acquired, "provider": r.key.provider,
                       "NCRYPT_EXPORT_POLICY_PROPERTY": r.key.export_policy,
                       "public_blob": _b64(r.key.public_blob), "error_code": r.key.error_code, "error": r.key.error}
            recs.append({"der": _b64(r.der), "properties": props, "private_key": key})
        out["stores"].append({"location": location, "name": name, "records": recs})
    return json.dumps(out, indent=2) + "\n"


def load_capture(text: str) -> dict[tuple[str, str], list[StoreRecord]]:
    """Parse a capture (see :func:`dump_capture`) into ``{(location, name): records}``."""
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise RecordFormatError(f"the store capture is not JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != CAPTURE_FORMAT:
        raise RecordFormatError(f"not a store capture (expected format {CAPTURE_FORMAT!r})")
    out: dict[tuple[str, str], list[StoreRecord]] = {}
    try:
        for store in doc["stores"]:
            location, name = str(store["location"]), str(store["name"])
            records = []
            for i, rec in enumerate(store["records"]):
                where = f"{location}\\{name} record {i}"
                try:
                    der = base64.b64decode(rec["der"], validate=True)
                except (binascii.Error, TypeError, ValueError):
                    raise RecordFormatError(f"{where}: 'der' is not base64") from None
                props = rec.get("properties") or {}
                kpi = props.get("CERT_KEY_PROV_INFO_PROP_ID")
                prov = None
                if kpi:
                    prov = KeyProvInfo(str(kpi.get("pwszContainerName") or ""), str(kpi.get("pwszProvName") or ""),
                                       int(kpi.get("dwProvType") or 0), int(kpi.get("dwFlags") or 0),
                                       int(kpi.get("dwKeySpec") or 0))
                k = rec.get("private_key")
                key = None
                if k is not None:
                    blob = k.get("public_blob")
                    policy = k.get("NCRYPT_EXPORT_POLICY_PROPERTY")
                    key = KeyFacts(bool(k.get("acquired")), str(k.get("provider") or ""),
                                   None if policy is None else int(policy),
                                   base64.b64decode(blob) if blob else None, int(k.get("error_code") or 0),
                                   str(k.get("error") or ""))
                records.append(StoreRecord(location, name, der, str(props.get("CERT_SHA1_HASH_PROP_ID") or ""),
                                           str(props.get("CERT_FRIENDLY_NAME_PROP_ID") or ""), prov, key))
            out[(location, name)] = records
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, RecordFormatError):
            raise
        raise RecordFormatError(f"the store capture is malformed ({type(e).__name__}: {e})") from None
    return out


# --------------------------------------------------------------------------- BCRYPT public key blobs

_RSA_PUBLIC_MAGIC = 0x31415352                       # "RSA1"
_ECC_MAGICS = {
    0x31534345: ec.SECP256R1, 0x33534345: ec.SECP384R1, 0x35534345: ec.SECP521R1,   # ECS1/3/5 (ECDSA public)
    0x314B4345: ec.SECP256R1, 0x334B4345: ec.SECP384R1, 0x354B4345: ec.SECP521R1,   # ECK1/3/5 (ECDH public)
}
_ECC_GENERIC = {0x50444345, 0x504B4345}              # ECDP / ECKP: the curve is a separate property
_CURVE_BY_SIZE = {32: ec.SECP256R1, 48: ec.SECP384R1, 66: ec.SECP521R1}


def public_key_from_blob(blob: bytes) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    """The public key in a BCRYPT_RSAKEY_BLOB or BCRYPT_ECCKEY_BLOB (little-endian header, big-endian numbers).

    Raises :class:`RecordFormatError` for anything else.
    """
    if len(blob) < 8:
        raise RecordFormatError("the public key blob is too short")
    magic = struct.unpack_from("<I", blob, 0)[0]
    try:
        if magic == _RSA_PUBLIC_MAGIC:
            _, _bits, cb_exp, cb_mod, _, _ = struct.unpack_from("<6I", blob, 0)
            body = blob[24:]
            if len(body) < cb_exp + cb_mod:
                raise RecordFormatError("the RSA public key blob is truncated")
            e = int.from_bytes(body[:cb_exp], "big")
            n = int.from_bytes(body[cb_exp:cb_exp + cb_mod], "big")
            return rsa.RSAPublicNumbers(e, n).public_key()
        if magic in _ECC_MAGICS or magic in _ECC_GENERIC:
            cb_key = struct.unpack_from("<I", blob, 4)[0]
            curve = _ECC_MAGICS.get(magic) or _CURVE_BY_SIZE.get(cb_key)
            if curve is None:
                raise RecordFormatError(f"the EC public key blob has an unknown curve (coordinates of {cb_key} bytes)")
            body = blob[8:]
            if len(body) < 2 * cb_key:
                raise RecordFormatError("the EC public key blob is truncated")
            x = int.from_bytes(body[:cb_key], "big")
            y = int.from_bytes(body[cb_key:2 * cb_key], "big")
            return ec.EllipticCurvePublicNumbers(x, y, curve()).public_key()
    except ValueError as e:
        raise RecordFormatError(f"the public key blob does not hold a valid key ({e})") from None
    raise RecordFormatError(f"unknown public key blob magic 0x{magic:08X}")


def public_blob_of(public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> bytes:
    """The BCRYPT public key blob NCryptExportKey(BCRYPT_PUBLIC_KEY_BLOB) returns for ``public_key``."""
    if isinstance(public_key, rsa.RSAPublicKey):
        nums = public_key.public_numbers()
        e = nums.e.to_bytes((nums.e.bit_length() + 7) // 8, "big")
        n = nums.n.to_bytes((public_key.key_size + 7) // 8, "big")
        return struct.pack("<6I", _RSA_PUBLIC_MAGIC, public_key.key_size, len(e), len(n), 0, 0) + e + n
    size = {"secp256r1": 32, "secp384r1": 48, "secp521r1": 66}[public_key.curve.name]
    magic = {32: 0x31534345, 48: 0x33534345, 66: 0x35534345}[size]
    nums = public_key.public_numbers()
    return struct.pack("<2I", magic, size) + nums.x.to_bytes(size, "big") + nums.y.to_bytes(size, "big")


# --------------------------------------------------------------------------- netsh http show sslcert

IPPORT = "ipport"
HOSTNAMEPORT = "hostnameport"
CCS = "ccs"

_ANCHORS = {"ip:port": IPPORT, "hostname:port": HOSTNAMEPORT, "central certificate store": CCS}
_LINE = re.compile(r"^\s*(?P<label>\S.*?)\s+:(?:\s+(?P<value>.*?))?\s*$")

# "Label" -> netsh add/update parameter, for the settings an update must repeat to keep them.
_PRESERVED = {
    "verify client certificate revocation": "verifyclientcertrevocation",
    "verify revocation using cached client certificate only": "verifyrevocationwithcachedclientcertonly",
    "usage check": "usagecheck",
    "revocation freshness time": "revocationfreshnesstime",
    "url retrieval timeout": "urlretrievaltimeout",
    "ctl identifier": "sslctlidentifier",
    "ctl store name": "sslctlstorename",
    "ds mapper usage": "dsmapperusage",
    "negotiate client certificate": "clientcertnegotiation",
    "reject connections": "reject",
    "disable http2": "disablehttp2",
    "disable quic": "disablequic",
    "disable tls1.2": "disabletls12",
    "disable tls1.3": "disabletls13",
    "disable ocsp stapling": "disableocspstapling",
    "enable token binding": "enabletokenbinding",
    "log extended events": "logextendedevents",
    "disable legacy tls versions": "disablelegacytls",
    "enable session ticket": "enablesessionticket",
    "disable session id": "disablesessionid",
}
_NUMERIC = {"revocationfreshnesstime", "urlretrievaltimeout"}
_TEXT = {"sslctlidentifier", "sslctlstorename"}


@dataclass(frozen=True)
class SslBinding:
    """One http.sys SSL binding (one block of ``netsh http show sslcert``)."""

    kind: str                        # IPPORT, HOSTNAMEPORT or CCS
    address: str                     # the IP (without brackets) for ipport, the host name for hostnameport, "" for ccs
    port: int
    certificate_hash: str = ""       # upper-case hex; "" for the central certificate store
    app_id: str = ""                 # {GUID} of the owning application (IIS: {4dc3e181-e14b-4a21-b022-59fc669b0914})
    store_name: str = ""             # as shown; "" when netsh shows (null) (http.sys then uses MY)
    settings: tuple[tuple[str, str], ...] = ()   # every other "Label : value" line of the block, in order

    @property
    def endpoint(self) -> str:
        """``0.0.0.0:443``, ``[::]:443``, ``www.example.com:443`` or ``443`` (ccs): as netsh names it."""
        if self.kind == CCS:
            return str(self.port)
        host = f"[{self.address}]" if self.kind == IPPORT and ":" in self.address else self.address
        return f"{host}:{self.port}"

    @property
    def selector(self) -> str:
        """The netsh argument that names this binding: ``ipport=0.0.0.0:443``, ``hostnameport=...``, ``ccs=443``."""
        return f"{self.kind}={self.endpoint}"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "address": self.address, "port": self.port,
                "certificate_hash": self.certificate_hash, "app_id": self.app_id, "store_name": self.store_name,
                "settings": [list(s) for s in self.settings]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "SslBinding":
        return cls(str(d["kind"]), str(d["address"]), int(d["port"]), str(d.get("certificate_hash", "")),
                   str(d.get("app_id", "")), str(d.get("store_name", "")),
                   tuple((str(a), str(b)) for a, b in d.get("settings", [])))


def _split_hostport(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise RecordFormatError(f"netsh sslcert: {value!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def parse_sslcert(text: str) -> list[SslBinding]:
    """Every binding in ``netsh http show sslcert`` output (English), in the order shown.

    Handles the old layout (Windows Server 2008-2016) and the longer one of
    Windows Server 2019+ (``Reject Connections``, ``Disable HTTP2`` ... ``Set`` /
    ``Not Set``, ``Extended Properties:`` groups). Raises :class:`RecordFormatError`
    for output it cannot read, such as a localised netsh.
    """
    bindings: list[SslBinding] = []
    current: dict[str, Any] | None = None
    saw_header = False
    unknown_lines = 0

    def close() -> None:
        if current is not None:
            if not current["known"]:
                raise RecordFormatError(
                    f"netsh http show sslcert: the binding {current['kind']} {current['port']} has no "
                    "'Certificate Hash' or 'Application ID' line (is netsh's output localised? only the English "
                    "labels are understood)")
            bindings.append(SslBinding(current["kind"], current["address"], current["port"], current["hash"],
                                       current["appid"], current["store"], tuple(current["settings"])))

    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = raw.strip()
        if not line or set(line) == {"-"}:
            continue
        if line.lower().startswith("ssl certificate bindings"):
            saw_header = True
            continue
        m = _LINE.match(raw)
        if not m:
            continue            # "Extended Properties:" and the like
        label, value = m.group("label").strip(), (m.group("value") or "").strip()
        low = label.lower()
        if low in _ANCHORS:
            close()
            kind = _ANCHORS[low]
            if kind == CCS:
                if not value.isdigit():
                    raise RecordFormatError(f"netsh sslcert: central certificate store port {value!r} is not a number")
                address, port = "", int(value)
            else:
                address, port = _split_hostport(value)
            current = {"kind": kind, "address": address, "port": port, "hash": "", "appid": "", "store": "",
                       "settings": [], "known": False}
            continue
        if current is None:
            unknown_lines += 1
            continue
        null = value.lower() in ("(null)", "")
        if low in ("certificate hash", "application id"):
            current["known"] = True
        if low == "certificate hash":
            current["hash"] = "" if null else normalize_thumbprint(value)
        elif low == "application id":
            current["appid"] = "" if null else value
        elif low == "certificate store name":
            current["store"] = "" if null else value
        else:
            current["settings"].append((label, value))
    close()
    if not bindings and not saw_header and (unknown_lines or text.strip()):
        raise RecordFormatError(
            "netsh http show sslcert printed nothing certfleet can read (is its output localised? only the "
            "English labels 'IP:port', 'Hostname:port', 'Certificate Hash' are understood)"
        )
    return bindings


def update_sslcert_args(binding: SslBinding, thumbprint: str, store_name: str) -> list[str]:
    """``netsh`` arguments that point ``binding`` at ``thumbprint`` in ``store_name``, keeping its other settings.

    An argument list for a direct process start (no shell), so the ``{GUID}``
    needs no quoting. Settings shown as "Not Set" or "(null)" are left out;
    "Enabled"/"Set" become ``enable``, "Disabled" ``disable``.
    """
    if binding.kind == CCS:
        raise RecordFormatError("a central certificate store binding names no certificate to rebind")
    args = ["http", "update", "sslcert", binding.selector, f"certhash={normalize_thumbprint(thumbprint)}"]
    if binding.app_id:
        args.append(f"appid={binding.app_id}")
    args.append(f"certstorename={store_name}")
    for label, value in binding.settings:
        param = _PRESERVED.get(label.lower())
        if param is None:
            continue
        v = value.strip()
        if param in _NUMERIC:
            if v.isdigit():
                args.append(f"{param}={v}")
        elif param in _TEXT:
            if v and v.lower() != "(null)":
                args.append(f"{param}={v}")
        elif v.lower() in ("enabled", "set", "enable"):
            args.append(f"{param}=enable")
        elif v.lower() in ("disabled", "disable"):
            args.append(f"{param}=disable")
    return args


# --------------------------------------------------------------------------- appcmd list site /config /xml

@dataclass(frozen=True)
class SiteBinding:
    protocol: str
    ip: str                          # "*" or an address (IPv6 without brackets)
    port: int
    host: str = ""
    ssl_flags: int = 0               # 1 SNI, 2 central certificate store, 4.. HTTP/2, OCSP, QUIC, TLS 1.3 switches
    certificate_hash: str = ""       # only when applicationHost.config names it (IIS keeps it in http.sys)
    certificate_store_name: str = ""
    flags_known: bool = True         # False when read without /config (no sslFlags): SNI is then inferred

    @property
    def sni(self) -> bool:
        return bool(self.ssl_flags & 1)

    @property
    def central_store(self) -> bool:
        return bool(self.ssl_flags & 2)


@dataclass(frozen=True)
class IisSite:
    name: str
    id: int
    state: str
    bindings: tuple[SiteBinding, ...]


def parse_binding_information(protocol: str, info: str) -> tuple[str, int, str]:
    """``(ip, port, host)`` of an IIS ``bindingInformation`` (``*:443:www.example.com``, ``[2001:db8::1]:443:``)."""
    text = info.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1:end + 2] != ":":
            raise RecordFormatError(f"IIS binding {protocol}/{info}: cannot read the IPv6 address")
        ip, rest = text[1:end], text[end + 2:]
        port_s, _, host = rest.partition(":")
    else:
        parts = text.split(":", 2)
        if len(parts) < 2:
            raise RecordFormatError(f"IIS binding {protocol}/{info}: not IP:port:host")
        ip, port_s = parts[0], parts[1]
        host = parts[2] if len(parts) > 2 else ""
    if not port_s.isdigit():
        raise RecordFormatError(f"IIS binding {protocol}/{info}: the port is not a number")
    return (ip or "*"), int(port_s), host


def _xml_root(text: str) -> ET.Element:
    body = text.lstrip("\ufeff")
    start = body.find("<?xml")
    if start < 0:
        start = body.find("<appcmd")
    if start < 0:
        snippet = " ".join(body.split())[:200]
        raise RecordFormatError(f"appcmd printed no XML: {snippet!r}")
    try:
        return ET.fromstring(body[start:].encode("utf-8"))
    except ET.ParseError as e:
        raise RecordFormatError(f"appcmd output is not well-formed XML ({e})") from None


def parse_sites(text: str) -> list[IisSite]:
    """The sites in ``appcmd list site /config /xml`` output.

    Bindings come from the nested ``<site><bindings><binding>`` configuration
    (with ``sslFlags``); when appcmd was run without ``/config`` the ``SITE``
    element's ``bindings="https/*:443:,..."`` attribute is used instead.
    """
    root = _xml_root(text)
    if root.tag != "appcmd":
        raise RecordFormatError(f"appcmd output's root element is <{root.tag}>, not <appcmd>")
    sites: list[IisSite] = []
    for el in root.findall("SITE"):
        name = el.get("SITE.NAME", "")
        try:
            site_id = int(el.get("SITE.ID", "0") or 0)
        except ValueError:
            site_id = 0
        state = el.get("state", "")
        bindings: list[SiteBinding] = []
        config = el.find("site")
        nested = config.find("bindings") if config is not None else None
        if nested is not None:
            for b in nested.findall("binding"):
                protocol = b.get("protocol", "")
                if protocol.lower() not in ("http", "https"):
                    continue        # net.tcp "808:*", net.pipe "*" ... have no IP:port:host form
                ip, port, host = parse_binding_information(protocol, b.get("bindingInformation", ""))
                try:
                    flags = int(b.get("sslFlags", "0") or 0)
                except ValueError:
                    flags = 0
                raw_hash = b.get("certificateHash", "")
                bindings.append(SiteBinding(protocol, ip, port, host, flags,
                                            normalize_thumbprint(raw_hash) if raw_hash else "",
                                            b.get("certificateStoreName", "")))
        else:
            for item in filter(None, (s.strip() for s in el.get("bindings", "").split(","))):
                protocol, sep, info = item.partition("/")
                if not sep or protocol.lower() not in ("http", "https"):
                    continue        # net.tcp/808:* and friends have no IP:port:host form
                ip, port, host = parse_binding_information(protocol, info)
                bindings.append(SiteBinding(protocol, ip, port, host, flags_known=False))
        sites.append(IisSite(name, site_id, state, tuple(bindings)))
    return sites


# --------------------------------------------------------------------------- linking

_CANONICAL_STORES = {"my": "My", "webhosting": "WebHosting", "ca": "CA", "root": "Root"}


def _store_label(store: str) -> str:
    """http.sys shows the store name as it was given (MY, my, My); (null) means MY."""
    return _CANONICAL_STORES.get((store or "my").lower(), store)


def _match(sb: SiteBinding, by_ip: dict[tuple[str, int], SslBinding], by_host: dict[tuple[str, int], SslBinding],
           by_ccs: dict[int, SslBinding]) -> SslBinding | None:
    if sb.central_store:
        return by_ccs.get(sb.port)
    if sb.sni or (not sb.flags_known and sb.host and (sb.host.lower(), sb.port) in by_host):
        return by_host.get((sb.host.lower(), sb.port))
    if sb.ip == "*":
        return by_ip.get(("0.0.0.0", sb.port)) or by_ip.get(("::", sb.port))
    if ":" in sb.ip:
        return by_ip.get((sb.ip.lower(), sb.port)) or by_ip.get(("::", sb.port)) or by_ip.get(("0.0.0.0", sb.port))
    return by_ip.get((sb.ip, sb.port)) or by_ip.get(("0.0.0.0", sb.port))


def iis_bindings(sites: Sequence[IisSite], sslcerts: Sequence[SslBinding]) -> list[IisBinding]:
    """Every https binding with the certificate it serves.

    A site binding takes its certificate from http.sys: an SNI binding (sslFlags
    bit 1) from its ``Hostname:port`` entry, a central-store binding (bit 2) from
    the store on disk (no thumbprint), any other from its ``IP:port`` entry, or
    the ``0.0.0.0:port`` (``[::]:port``) wildcard entry when there is none for its
    own address. http.sys entries no IIS site uses (ADFS, WinRM, self-hosted
    services) are listed too, with an empty site name: they are certificate
    uses all the same.
    """
    by_ip = {(b.address.lower(), b.port): b for b in sslcerts if b.kind == IPPORT}
    by_host = {(b.address.lower(), b.port): b for b in sslcerts if b.kind == HOSTNAMEPORT}
    by_ccs = {b.port: b for b in sslcerts if b.kind == CCS}
    used: set[int] = set()
    out: list[IisBinding] = []
    for site in sites:
        for sb in site.bindings:
            if sb.protocol.lower() != "https":
                continue
            hit = _match(sb, by_ip, by_host, by_ccs)
            if hit is not None:
                used.add(id(hit))
                cert_hash, store = hit.certificate_hash, _store_label(hit.store_name) if hit.certificate_hash else ""
            else:
                cert_hash = sb.certificate_hash
                store = _store_label(sb.certificate_store_name) if cert_hash else ""
            sni = sb.sni or (hit is not None and hit.kind == HOSTNAMEPORT)
            out.append(IisBinding(site=site.name, protocol="https", ip=sb.ip, port=sb.port, host_name=sb.host,
                                  sni=sni, certificate_hash=cert_hash, store_name=store))
    for b in sslcerts:
        if id(b) in used or not b.certificate_hash:
            continue
        out.append(IisBinding(site="", protocol="https", ip=b.address if b.kind == IPPORT else "*", port=b.port,
                              host_name=b.address if b.kind == HOSTNAMEPORT else "", sni=b.kind == HOSTNAMEPORT,
                              certificate_hash=b.certificate_hash, store_name=_store_label(b.store_name)))
    return out
