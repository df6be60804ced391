"""The parsers over recorded netsh / appcmd output and the store capture format."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from agent.keys import same_public_key
from agent.windows.errors import RecordFormatError
from agent.windows.records import (dump_capture, load_capture, normalize_thumbprint, public_blob_of,
                                   public_key_from_blob, thumbprint_of)
from agent.windows.sites import iis_bindings, parse_binding_information, parse_sites
from agent.windows.sslcert import CCS, HOSTNAMEPORT, IPPORT, parse_sslcert, update_sslcert_args


def read(data: Path, name: str) -> str:
    return (data / name).read_bytes().decode("utf-8")


def capture_thumbs(data: Path) -> dict[str, str]:
    """CN -> thumbprint of every certificate in the composed store capture."""
    out = {}
    for records in load_capture(read(data, "store_capture.json")).values():
        for r in records:
            cn = x509.load_der_x509_certificate(r.der).subject.rfc4514_string().removeprefix("CN=")
            out[cn] = r.thumbprint
    return out


def test_sslcert_old_layout_ipport_sni_and_null_store(data: Path) -> None:
    t = capture_thumbs(data)
    bindings = parse_sslcert(read(data, "sslcert_ws2016.txt"))
    assert [(b.kind, b.endpoint) for b in bindings] == [
        (IPPORT, "0.0.0.0:443"), (IPPORT, "10.0.0.5:443"), (HOSTNAMEPORT, "shop.contoso.example:443"),
        (HOSTNAMEPORT, "sts.contoso.example:443"), (IPPORT, "0.0.0.0:8444"),
    ]
    www, shop_ip, shop_sni, sts, gone = bindings
    assert www.certificate_hash == t["www.contoso.example"]           # netsh prints lower case; we keep upper
    assert shop_ip.certificate_hash == shop_sni.certificate_hash == t["shop.contoso.example"]
    assert sts.app_id == "{5d89a20c-beab-4389-9447-324788eb944a}"
    assert ("Ctl Store Name", "AdfsTrustedDevices") in sts.settings
    assert gone.store_name == ""                                       # "(null)": http.sys then uses MY
    assert gone.certificate_hash not in t.values()


def test_sslcert_new_layout_ipv6_ccs_and_flags(data: Path) -> None:
    t = capture_thumbs(data)
    bindings = parse_sslcert(read(data, "sslcert_ws2022.txt"))
    kinds = {b.endpoint: b for b in bindings}
    v6 = kinds["[2001:db8::10]:443"]
    assert (v6.kind, v6.address, v6.port, v6.store_name) == (IPPORT, "2001:db8::10", 443, "WebHosting")
    assert v6.certificate_hash == t["api.contoso.example"]
    ccs = kinds["443"]
    assert (ccs.kind, ccs.certificate_hash, ccs.store_name) == (CCS, "", "")
    www = kinds["0.0.0.0:443"]
    assert ("Disable Legacy TLS Versions", "Set") in www.settings
    # "Extended Properties:" groups do not open a binding of their own
    assert len(bindings) == 5


def test_sslcert_empty_and_unreadable() -> None:
    assert parse_sslcert("\r\nSSL Certificate bindings:\r\n-------------------------\r\n\r\n") == []
    assert parse_sslcert("") == []
    with pytest.raises(RecordFormatError, match="localised"):
        parse_sslcert("\nSSL-Zertifikatbindungen:\n    IP:Port                 : 0.0.0.0:443\n"
                      "    Zertifikathash          : 00112233445566778899aabbccddeeff00112233\n")


def test_update_keeps_the_binding_settings_and_needs_no_quoting(data: Path) -> None:
    b = next(b for b in parse_sslcert(read(data, "sslcert_ws2022.txt")) if b.kind == HOSTNAMEPORT)
    args = update_sslcert_args(b, "ab" * 20, "My")
    assert args[:5] == ["http", "update", "sslcert", "hostnameport=shop.contoso.example:443", "certhash=" + "AB" * 20]
    assert "appid={4dc3e181-e14b-4a21-b022-59fc669b0914}" in args      # one argv element: no shell, no quotes
    assert "certstorename=My" in args
    assert "clientcertnegotiation=enable" in args                       # "Negotiate Client Certificate : Enabled"
    assert not any(a.startswith("disablehttp2") for a in args)           # "Not Set" stays unset
    assert not any(a.startswith("sslctlidentifier") for a in args)       # "(null)"
    v6 = next(b for b in parse_sslcert(read(data, "sslcert_ws2022.txt")) if ":" in b.address)
    assert update_sslcert_args(v6, "cd" * 20, "WebHosting")[3] == "ipport=[2001:db8::10]:443"
    ccs = next(b for b in parse_sslcert(read(data, "sslcert_ws2022.txt")) if b.kind == CCS)
    with pytest.raises(RecordFormatError):
        update_sslcert_args(ccs, "cd" * 20, "My")


def test_appcmd_sites_with_config(data: Path) -> None:
    sites = {s.name: s for s in parse_sites(read(data, "appcmd_sites_config.xml"))}
    assert list(sites) == ["Default Web Site", "Shop", "API", "Assets", "Old Portal", "Intranet"]
    assert sites["Old Portal"].state == "Stopped" and sites["Shop"].id == 2
    dws = sites["Default Web Site"].bindings
    assert [(b.protocol, b.ip, b.port, b.host) for b in dws] == [("http", "*", 80, ""), ("https", "*", 443, "")]
    shop = sites["Shop"].bindings
    assert (shop[1].host, shop[1].sni) == ("shop.contoso.example", True)
    assert sites["API"].bindings[0].ip == "2001:db8::10"
    assert sites["Assets"].bindings[0].central_store and sites["Assets"].bindings[0].sni


def test_appcmd_without_config_uses_the_bindings_attribute(data: Path) -> None:
    sites = parse_sites(read(data, "appcmd_sites_plain.xml"))
    assert [s.name for s in sites] == ["Default Web Site", "Shop", "API"]
    assert [(b.protocol, b.ip, b.port) for b in sites[0].bindings] == [("http", "*", 80), ("https", "*", 443)]


def test_appcmd_errors() -> None:
    with pytest.raises(RecordFormatError, match="no XML"):
        parse_sites('ERROR ( message:Cannot find SITE object with identifier "x". )')
    with pytest.raises(RecordFormatError, match="well-formed"):
        parse_sites('<?xml version="1.0"?><appcmd><SITE SITE.NAME="a"')
    assert parse_sites('<?xml version="1.0" encoding="UTF-8"?>\r\n<appcmd>\r\n</appcmd>\r\n') == []


@pytest.mark.parametrize("info,expected", [
    ("*:443:", ("*", 443, "")),
    ("*:443:www.example.com", ("*", 443, "www.example.com")),
    ("192.168.0.1:80:www.contoso.com", ("192.168.0.1", 80, "www.contoso.com")),
    ("[2001:db8::1]:8443:", ("2001:db8::1", 8443, "")),
    ("[::]:443:v6.example.com", ("::", 443, "v6.example.com")),
])
def test_binding_information(info: str, expected: tuple) -> None:
    assert parse_binding_information("https", info) == expected


def test_linking_sites_to_http_sys(data: Path) -> None:
    t = capture_thumbs(data)
    links = iis_bindings(parse_sites(read(data, "appcmd_sites_config.xml")),
                         parse_sslcert(read(data, "sslcert_ws2016.txt")))
    by = {(b.site, b.ip, b.port, b.host_name): b for b in links}
    assert by[("Default Web Site", "*", 443, "")].certificate_hash == t["www.contoso.example"]
    assert by[("Default Web Site", "*", 443, "")].store_name == "My"                 # "MY" as http.sys shows it
    assert by[("Shop", "10.0.0.5", 443, "")].certificate_hash == t["shop.contoso.example"]
    sni = by[("Shop", "*", 443, "shop.contoso.example")]
    assert sni.sni and sni.certificate_hash == t["shop.contoso.example"]
    assert by[("Intranet", "*", 9443, "")].certificate_hash == ""                     # no http.sys entry at all
    assert by[("Assets", "*", 443, "assets.contoso.example")].certificate_hash == ""  # central store: no hash here
    # the ADFS entry is used by no IIS site: listed with an empty site name
    adfs = [b for b in links if b.site == ""]
    assert [(b.host_name, b.sni, b.certificate_hash) for b in adfs] == [
        ("sts.contoso.example", True, t["sts.contoso.example"])]


def test_linking_falls_back_to_the_wildcard_entry(data: Path) -> None:
    t = capture_thumbs(data)
    links = iis_bindings(parse_sites(read(data, "appcmd_sites_config.xml")),
                         parse_sslcert(read(data, "sslcert_ws2022.txt")))
    by = {(b.site, b.ip, b.port, b.host_name): b for b in links}
    # no 10.0.0.5:443 entry in this capture: http.sys serves the 0.0.0.0:443 certificate there
    assert by[("Shop", "10.0.0.5", 443, "")].certificate_hash == t["www.contoso.example"]
    api = by[("API", "2001:db8::10", 443, "")]
    assert (api.certificate_hash, api.store_name) == (t["api.contoso.example"], "WebHosting")


def test_without_config_sni_is_inferred_from_http_sys(data: Path) -> None:
    t = capture_thumbs(data)
    links = iis_bindings(parse_sites(read(data, "appcmd_sites_plain.xml")),
                         parse_sslcert(read(data, "sslcert_ws2016.txt")))
    shop = next(b for b in links if b.host_name == "shop.contoso.example")
    assert shop.sni and shop.certificate_hash == t["shop.contoso.example"]


def test_thumbprints() -> None:
    assert normalize_thumbprint("\u200e6b da d0 18 ce 51 b7 92 a1 dd 11 bd b4 9a 12 ec d8 57 78 b1") == \
        "6BDAD018CE51B792A1DD11BDB49A12ECD85778B1"
    with pytest.raises(RecordFormatError):
        normalize_thumbprint("6bdad018")
    assert thumbprint_of(b"x") == hashlib.sha1(b"x").hexdigest().upper()


@pytest.mark.parametrize("make", [
    lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    lambda: ec.generate_private_key(ec.SECP256R1()),
    lambda: ec.generate_private_key(ec.SECP384R1()),
    lambda: ec.generate_private_key(ec.SECP521R1()),
])
def test_bcrypt_public_blobs_round_trip(make) -> None:  # noqa: ANN001
    key = make()
    assert same_public_key(key, public_key_from_blob(public_blob_of(key.public_key())))


def test_bcrypt_blob_errors() -> None:
    with pytest.raises(RecordFormatError, match="magic"):
        public_key_from_blob(b"XXXX\x00\x00\x00\x00")
    good = public_blob_of(ec.generate_private_key(ec.SECP256R1()).public_key())
    with pytest.raises(RecordFormatError, match="truncated"):
        public_key_from_blob(good[:40])


def test_capture_round_trip(data: Path) -> None:
    stores = load_capture(read(data, "store_capture.json"))
    assert set(stores) == {("LocalMachine", "My"), ("LocalMachine", "WebHosting")}
    again = load_capture(dump_capture([(loc, name, recs) for (loc, name), recs in stores.items()], "composed"))
    assert again == stores
    with pytest.raises(RecordFormatError):
        load_capture('{"format": "something else"}')
    with pytest.raises(RecordFormatError):
        load_capture('{"format": "certfleet-windows-store-capture/1", "stores": [{"location": "LocalMachine", '
                     '"name": "My", "records": [{"der": "***"}]}]}')
