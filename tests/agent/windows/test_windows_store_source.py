"""WindowsStoreSource over the recorded store capture, netsh and appcmd output (fake at the boundary only)."""
from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from agent.inventory import CERTIFICATE, MATCHES, MISMATCH, NO_KEY, PRIVATE_KEY_ENTRY, SERVICE, TRUST_ANCHOR, \
    UNKNOWN, LocationKey
from agent.sources.base import SourceError
from agent.windows.records import load_capture
from agent.windows.settings import WindowsSettings
from agent.sources.windows_store import WindowsStoreSource
from tests.helpers.agent_windows_fakes import FakeWindowsApi

NOW = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)


def recorded_api(data: Path, sslcert: str = "sslcert_ws2016.txt", sites: str | None = "appcmd_sites_config.xml"
                 ) -> FakeWindowsApi:
    api = FakeWindowsApi()
    api.stores.update(load_capture((data / "store_capture.json").read_text("utf-8")))
    api.raw_sslcert = (data / sslcert).read_bytes().decode("ascii")
    api.sites_xml = (data / sites).read_text("utf-8") if sites else None
    return api


def by_cn(entries) -> dict:  # noqa: ANN001
    return {x509.load_der_x509_certificate(e.der).subject.rfc4514_string().removeprefix("CN="): e for e in entries}


def test_store_entries_keys_exportability_provider_and_bindings(data: Path) -> None:
    api = recorded_api(data)
    result = WindowsStoreSource(WindowsSettings(enabled=True), api, {"environment": "prod"}).collect(NOW)
    got = by_cn(result.entries)
    assert set(got) == {"www.contoso.example", "shop.contoso.example", "sts.contoso.example",
                        "orphan.contoso.example", "partner.fabrikam.example", "mismatch.contoso.example",
                        "api.contoso.example"}

    www = got["www.contoso.example"]
    thumb = hashlib.sha1(www.der).hexdigest().upper()
    assert www.key == LocationKey("windows", "LocalMachine\\My", thumb, 0)
    assert www.fingerprint == hashlib.sha256(www.der).hexdigest()
    assert (www.has_private_key, www.key_match, www.entry_type) == (True, MATCHES, PRIVATE_KEY_ENTRY)
    assert www.windows.thumbprint == thumb and www.windows.friendly_name == "www 2026"
    assert (www.windows.key_exportable, www.windows.key_provider) == (False, "Microsoft Software Key Storage Provider")
    assert www.windows.key_container == "te-www-5f3c"
    # API's [2001:db8::10]:443 has no entry of its own in this capture: http.sys serves the 0.0.0.0:443 one there
    assert [(b.site, b.ip, b.port) for b in www.iis_bindings] == [("Default Web Site", "*", 443),
                                                                  ("API", "2001:db8::10", 443)]
    assert www.labels["environment"] == "prod" and www.role == SERVICE

    shop = got["shop.contoso.example"]
    assert shop.windows.key_exportable is True and shop.key_match == MATCHES      # EC P-256 key, policy 0x3
    assert sorted((b.site, b.host_name, b.sni) for b in shop.iis_bindings) == [
        ("Shop", "", False), ("Shop", "shop.contoso.example", True)]

    sts = got["sts.contoso.example"]                  # legacy CSP key the agent may not open: present, unknown
    assert (sts.has_private_key, sts.key_match) == (True, UNKNOWN)
    assert sts.windows.key_provider == "Microsoft RSA SChannel Cryptographic Provider"
    assert [(b.site, b.host_name) for b in sts.iis_bindings] == [("", "sts.contoso.example")]   # ADFS, not IIS

    orphan = got["orphan.contoso.example"]            # names a key container that is gone
    assert (orphan.has_private_key, orphan.key_match, orphan.entry_type) == (False, NO_KEY, CERTIFICATE)
    assert got["partner.fabrikam.example"].key_match == NO_KEY
    assert got["mismatch.contoso.example"].key_match == MISMATCH

    api_cert = got["api.contoso.example"]
    assert api_cert.key.path == "LocalMachine\\WebHosting"
    assert api_cert.iis_bindings == ()                # the 2016 capture has no binding for it

    problems = {(p.path, p.reason): p.message for p in result.problems}
    assert any("does not exist" in m and "te-orphan-0d1e" in m for m in problems.values())
    dangling = problems[("LocalMachine\\My", "vanished")]
    assert "Old Portal" in dangling and ":8444" in dangling and "not in LocalMachine\\My" in dangling


def test_ipv6_and_webhosting_binding(data: Path) -> None:
    result = WindowsStoreSource(WindowsSettings(enabled=True), recorded_api(data, "sslcert_ws2022.txt")).collect(NOW)
    api_cert = by_cn(result.entries)["api.contoso.example"]
    assert [(b.site, b.ip, b.port, b.store_name) for b in api_cert.iis_bindings] == [
        ("API", "2001:db8::10", 443, "WebHosting")]
    www = by_cn(result.entries)["www.contoso.example"]
    # Shop's 10.0.0.5:443 has no entry of its own in this capture: http.sys falls back to 0.0.0.0:443
    assert sorted((b.site, b.ip) for b in www.iis_bindings) == [("Default Web Site", "*"), ("Shop", "10.0.0.5")]


def test_without_iis_http_sys_bindings_still_link(data: Path) -> None:
    result = WindowsStoreSource(WindowsSettings(enabled=True), recorded_api(data, sites=None)).collect(NOW)
    www = by_cn(result.entries)["www.contoso.example"]
    assert [(b.site, b.ip, b.port) for b in www.iis_bindings] == [("", "0.0.0.0", 443)]


def test_iis_off_reads_no_bindings(data: Path) -> None:
    api = recorded_api(data)
    result = WindowsStoreSource(WindowsSettings(enabled=True, iis=False), api).collect(NOW)
    assert all(e.iis_bindings == () for e in result.entries)
    assert ("show_sslcert",) not in api.calls and ("list_iis_sites_xml",) not in api.calls


def test_unreadable_bindings_are_a_problem_not_a_failure(data: Path) -> None:
    api = recorded_api(data)
    api.fail_sslcert = True
    result = WindowsStoreSource(WindowsSettings(enabled=True), api).collect(NOW)
    assert len(result.entries) == 7
    assert [(p.path, p.reason) for p in result.problems if p.path == "http.sys"] == [("http.sys", "unreadable")]
    assert "elevation" in next(p.message for p in result.problems if p.path == "http.sys")


def test_missing_store_is_skipped_and_configured_stores_are_read(data: Path, pki) -> None:  # noqa: ANN001
    api = recorded_api(data)
    del api.stores[("LocalMachine", "WebHosting")]                  # no IIS: WebHosting does not exist
    api.add_cert("Root", pki.root.public_bytes(Encoding.DER), None)
    settings = WindowsSettings(enabled=True, stores=("My", "WebHosting", "Root"))
    result = WindowsStoreSource(settings, api).collect(NOW)
    roots = [e for e in result.entries if e.key.path == "LocalMachine\\Root"]
    assert len(roots) == 1 and roots[0].role == TRUST_ANCHOR and roots[0].key_match == NO_KEY
    assert not any(e.key.path == "LocalMachine\\WebHosting" for e in result.entries)
    assert not any(p.path == "LocalMachine\\WebHosting" for p in result.problems)


def test_not_windows_keeps_last_report(data: Path) -> None:
    from agent.windows.api import RealWindowsApi

    with pytest.raises(SourceError) as e:
        WindowsStoreSource(WindowsSettings(enabled=True), RealWindowsApi()).collect(NOW)
    assert e.value.reason == "unsupported" and "only be read on Windows" in e.value.message


def test_a_store_that_cannot_be_read_keeps_last_report(data: Path) -> None:
    from agent.windows.errors import WindowsApiError

    api = recorded_api(data)
    real_list = api.list_store

    def list_store(location: str, name: str):  # noqa: ANN202
        if name == "WebHosting":
            raise WindowsApiError("CertOpenStore", 5, "the store LocalMachine\\WebHosting cannot be opened "
                                  "(error 0x00000005: Access is denied.)")
        return real_list(location, name)

    api.list_store = list_store  # type: ignore[method-assign]
    with pytest.raises(SourceError) as e:
        WindowsStoreSource(WindowsSettings(enabled=True), api).collect(NOW)
    assert e.value.reason == "unreadable" and "Access is denied" in e.value.message
    assert "1 other store(s) were readable" in e.value.message


def test_digest_changes_when_a_binding_changes(data: Path) -> None:
    api = recorded_api(data)
    source = WindowsStoreSource(WindowsSettings(enabled=True), api)
    before = by_cn(source.collect(NOW).entries)["www.contoso.example"].digest()
    api.raw_sslcert = api.raw_sslcert.replace("0.0.0.0:443", "0.0.0.0:4443")
    after = by_cn(source.collect(NOW).entries)["www.contoso.example"].digest()
    assert before != after
