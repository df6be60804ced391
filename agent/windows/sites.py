"""IIS sites: ``appcmd list site /config /xml`` parsed, and joined with http.sys into the bindings a registry shows.

:func:`parse_sites` reads the sites and their bindings (``bindingInformation``
``IP:port:host``, ``sslFlags``); :func:`iis_bindings` joins them with the http.sys SSL
bindings (:mod:`agent.windows.sslcert`) into :class:`~agent.inventory.IisBinding` values.
Pure Python.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Sequence

from agent.inventory import IisBinding
from agent.windows.errors import RecordFormatError
from agent.windows.records import normalize_thumbprint
from agent.windows.sslcert import CCS, HOSTNAMEPORT, IPPORT, SslBinding

__all__ = ["SiteBinding", "IisSite", "parse_binding_information", "parse_sites", "iis_bindings"]


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


# --------------------------------------------------------------------------- joining with http.sys

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
