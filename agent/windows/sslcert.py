"""http.sys SSL bindings: ``netsh http show sslcert`` parsed, and the arguments that rebind one. Pure Python.

The bindings decide the certificate a port (``IP:port``), an SNI host name
(``Hostname:port``) or the IIS Central Certificate Store (``Central Certificate Store``)
serves. English output only: netsh localises its labels. :func:`update_sslcert_args` makes
the argument list that rebinds one http.sys entry while keeping every other setting it had.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from agent.windows.errors import RecordFormatError
from agent.windows.records import normalize_thumbprint

__all__ = ["SslBinding", "parse_sslcert", "update_sslcert_args", "IPPORT", "HOSTNAMEPORT", "CCS"]


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
