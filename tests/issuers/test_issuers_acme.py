"""The ACME issuer beyond the contract: account reuse, dns-01 through a hook, the callback
http-01 solver, and clear errors. Runs against the session's real pebble."""
from __future__ import annotations

import json
import os
import stat
import sys
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509

from collector.errors import IssuerError
from collector.issuers.acme import AcmeIssuer
from collector.issuers.solvers import (
    CallbackHttp01Solver, ChallengeSolver, Dns01HookSolver, StandaloneHttp01Solver, dns01_txt_value,
)
from collector.issuers.base import Issuer, KnowsIssued, RevocationReason, SupportsRoot
from collector.domain.templates import SubjectNames
from tests.helpers.collector_issuers import make_template, utcnow
from tests.helpers.collector_issuers import Pebble, free_port, make_csr, new_key, verify_chain
from tests.helpers.collector_issuers import tls_files

HOOK = [sys.executable, str(Path(__file__).with_name("dns_hook.py"))]


def _acme(pebble: Pebble, tmp_path: Path, solver: ChallengeSolver, **kw) -> AcmeIssuer:
    return AcmeIssuer("pebble", pebble.directory_url, tmp_path / "issuers" / "pebble", solver,
                      ca_bundle=pebble.ca_bundle, **kw)


def _issue(issuer: AcmeIssuer, names: SubjectNames, **tpl):
    csr = make_csr(new_key(), list(names.dns), list(names.ips), names.common_name or None)
    return issuer.issue(csr, make_template(issuer=issuer.name, **tpl), names, utcnow())


def test_an_acme_issuer_cannot_tell_what_it_issued_nor_name_the_root(tmp_path: Path) -> None:
    """Its abilities are declared: the renewal service asks an internal CA first and sends no trust
    anchor for an ACME certificate (the agent's own trust store verifies it)."""
    issuer = AcmeIssuer("le", "https://acme.example.test/dir", tmp_path, StandaloneHttp01Solver("127.0.0.1", 1))
    assert isinstance(issuer, Issuer)
    assert not isinstance(issuer, KnowsIssued) and not isinstance(issuer, SupportsRoot)


def test_account_key_is_private_and_the_account_is_reused(pebble, http01_solver, tmp_path: Path) -> None:
    first = _acme(pebble, tmp_path, http01_solver)
    url = first.account_url()
    key = tmp_path / "issuers" / "pebble" / "account.key"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert json.loads((key.parent / "account.json").read_text())["account_url"] == url
    # a restart (a new issuer object on the same directory) finds the same account by its key
    second = _acme(pebble, tmp_path, http01_solver)
    assert second.account_url() == url
    other = _acme(pebble, tmp_path / "elsewhere", http01_solver)
    assert other.account_url() != url


def test_dns01_through_a_hook_including_a_wildcard(pebble, tmp_path: Path) -> None:
    record = tmp_path / "hook.log"
    solver = Dns01HookSolver([*HOOK, pebble.dns_mgmt_url, "--record", str(record)], timeout=20)
    issuer = _acme(pebble, tmp_path, solver)
    names = SubjectNames("", ["*.dns.example.test", "dns.example.test"], [])
    issued = _issue(issuer, names, allowed_san_patterns=("**.example.test",), allow_wildcards=True)
    san = issued.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"*.dns.example.test", "dns.example.test"}
    verify_chain(issued, pebble.root_der(), "www.dns.example.test", utcnow())
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    actions = [c["env"]["CERTFLEET_ACME_ACTION"] for c in calls]
    assert actions.count("present") == 2 and actions.count("cleanup") == 2  # both authzs: same base domain
    for c in calls:
        env = c["env"]
        assert env["CERTFLEET_ACME_DOMAIN"] == "dns.example.test"
        assert env["CERTFLEET_ACME_TXT_NAME"] == "_acme-challenge.dns.example.test"
        assert len(env["CERTFLEET_ACME_TXT"]) == 43  # base64url SHA-256
        assert c["argv"][0] == pebble.dns_mgmt_url  # the configured arguments, untouched


def test_http01_through_callbacks(pebble, tmp_path: Path) -> None:
    """The callback variant: here the "host" is a responder on pebble's http port."""
    host = StandaloneHttp01Solver("127.0.0.1", pebble.http01_port)
    calls: list[tuple[str, str, str, str]] = []

    def present(token: str, key_authorization: str, domain: str) -> None:
        calls.append(("present", token, key_authorization, domain))
        host.present(token, key_authorization, domain)

    def cleanup(token: str, key_authorization: str, domain: str) -> None:
        calls.append(("cleanup", token, key_authorization, domain))
        host.cleanup(token, key_authorization, domain)

    issuer = _acme(pebble, tmp_path, CallbackHttp01Solver(present, cleanup))
    issued = _issue(issuer, SubjectNames("cb.example.test", ["cb.example.test"], []))
    assert issued.certificate.subject.rfc4514_string() == "CN=cb.example.test"
    assert [c[0] for c in calls] == ["present", "cleanup"]
    assert calls[0][3] == "cb.example.test" and calls[0][2].startswith(calls[0][1] + ".")


def test_a_failing_present_callback_fails_the_issuance_clearly(pebble, tmp_path: Path) -> None:
    def present(*_: str) -> None:
        raise RuntimeError("agent offline")

    issuer = _acme(pebble, tmp_path, CallbackHttp01Solver(present, lambda *_: None))
    with pytest.raises(IssuerError, match="could not place the http-01 challenge for x.example.test"):
        _issue(issuer, SubjectNames("", ["x.example.test"], []))


def test_a_challenge_nobody_answers_reports_the_validation_error(pebble, tmp_path: Path) -> None:
    issuer = _acme(pebble, tmp_path, CallbackHttp01Solver(lambda *_: None, lambda *_: None))
    with pytest.raises(IssuerError) as err:
        _issue(issuer, SubjectNames("", ["nobody.example.test"], []))
    assert "could not validate nobody.example.test (http-01)" in str(err.value)


def test_wildcard_over_http01_explains_dns01_is_needed(pebble, http01_solver, tmp_path: Path) -> None:
    issuer = _acme(pebble, tmp_path, http01_solver)
    with pytest.raises(IssuerError, match="wildcard names need dns-01"):
        _issue(issuer, SubjectNames("", ["*.w.example.test"], []), allowed_san_patterns=("**.example.test",),
               allow_wildcards=True)


def test_csr_must_carry_exactly_the_requested_names(pebble, http01_solver, tmp_path: Path) -> None:
    issuer = _acme(pebble, tmp_path, http01_solver)
    names = SubjectNames("", ["a.example.test", "b.example.test"], [])
    csr = make_csr(new_key(), ["a.example.test"])
    with pytest.raises(IssuerError) as err:
        issuer.issue(csr, make_template(issuer="pebble"), names, utcnow())
    assert "subjectAltNames" in str(err.value) and "b.example.test" in str(err.value)


def test_wrong_ca_bundle_is_a_clear_tls_error(pebble, http01_solver, tmp_path: Path) -> None:
    bundle, _, _ = tls_files(tmp_path)  # a CA that did not sign pebble's certificate
    issuer = AcmeIssuer("pebble", pebble.directory_url, tmp_path / "s", http01_solver, ca_bundle=bundle)
    with pytest.raises(IssuerError, match="cannot verify the TLS certificate"):
        issuer.account_url()


def test_unreachable_server(http01_solver, tmp_path: Path) -> None:
    issuer = AcmeIssuer("gone", f"https://127.0.0.1:{free_port()}/dir", tmp_path, http01_solver)
    with pytest.raises(IssuerError, match="cannot reach the ACME server"):
        issuer.account_url()


def test_revoke_refuses_hold_and_tolerates_repeats(pebble, http01_solver, tmp_path: Path) -> None:
    issuer = _acme(pebble, tmp_path, http01_solver)
    issued = _issue(issuer, SubjectNames("", ["rev.example.test"], []))
    with pytest.raises(IssuerError, match="certificateHold"):
        issuer.revoke(issued.certificate_der, RevocationReason.certificate_hold, utcnow())
    issuer.revoke(issued.certificate_der, RevocationReason.superseded, utcnow())
    issuer.revoke(issued.certificate_der, RevocationReason.superseded, utcnow())
    status = pebble.cert_status(issued.serial)
    assert status["Status"] == "Revoked" and status["Reason"] == 4


# -- solvers on their own (no ACME server) -------------------------------------------------


def test_standalone_responder_serves_only_present_tokens() -> None:
    port = free_port()
    solver = StandaloneHttp01Solver("127.0.0.1", port)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    solver.present("tok", "tok.thumb", "a.example.test")
    try:
        with opener.open(f"http://127.0.0.1:{port}/.well-known/acme-challenge/tok", timeout=5) as r:
            assert r.read() == b"tok.thumb"
        with pytest.raises(urllib.error.HTTPError) as err:
            opener.open(f"http://127.0.0.1:{port}/.well-known/acme-challenge/other", timeout=5)
        assert err.value.code == 404
    finally:
        solver.cleanup("tok", "tok.thumb", "a.example.test")
    with pytest.raises(urllib.error.URLError):  # stopped once nothing is outstanding
        opener.open(f"http://127.0.0.1:{port}/.well-known/acme-challenge/tok", timeout=5)


def test_dns_hook_failure_carries_the_stderr_tail(tmp_path: Path) -> None:
    solver = Dns01HookSolver([*HOOK, "-", "--fail"], timeout=20)
    with pytest.raises(IssuerError) as err:
        solver.present("tok", "tok.thumb", "example.test")
    msg = str(err.value)
    assert "exit 3" in msg and "the zone example.test is not managed here" in msg
    assert "useless on stdout" not in msg


def test_dns_hook_timeout(tmp_path: Path) -> None:
    solver = Dns01HookSolver([*HOOK, "-", "--sleep", "5"], timeout=0.5)
    with pytest.raises(IssuerError, match="did not finish 'present' for example.test within 0.5s"):
        solver.present("tok", "tok.thumb", "example.test")


def test_dns_hook_gets_arguments_verbatim_and_no_shell(tmp_path: Path) -> None:
    record = tmp_path / "rec"
    tricky = "$(touch pwned); `id` & 'q' \"dq\""
    solver = Dns01HookSolver([*HOOK, "-", "--record", str(record), tricky], timeout=20)
    solver.present("tok", "tok.thumb", "example.test")
    call = json.loads(record.read_text())
    assert call["argv"][-1] == tricky
    assert call["env"]["CERTFLEET_ACME_TXT"] == dns01_txt_value("tok.thumb")
    assert not (Path.cwd() / "pwned").exists()


def test_missing_hook_binary(tmp_path: Path) -> None:
    solver = Dns01HookSolver([str(tmp_path / "no-such-hook")])
    with pytest.raises(IssuerError, match="cannot run the dns-01 hook"):
        solver.present("tok", "tok.thumb", "example.test")


def test_dns01_txt_value_matches_rfc8555() -> None:
    # RFC 8555 8.4: base64url(SHA-256(key authorization)), no padding
    import base64
    import hashlib

    ka = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.nP1qzpXGymHBrUEepNY9HCsQk7K8KhOypzEt62jcerQ"
    assert dns01_txt_value(ka) == base64.urlsafe_b64encode(hashlib.sha256(ka.encode()).digest()).decode().rstrip("=")


def test_concurrent_issuances_share_one_issuer(pebble, http01_solver, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    issuer = _acme(pebble, tmp_path, http01_solver)
    names = [SubjectNames("", [f"c{i}.example.test"], []) for i in range(3)]
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda n: _issue(issuer, n), names))
    assert len({r.serial for r in results}) == 3
    for r, n in zip(results, names):
        assert r.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
            .get_values_for_type(x509.DNSName) == list(n.dns)


def test_an_account_the_server_forgot_is_registered_again(pebble, http01_solver, tmp_path: Path) -> None:
    issuer = _acme(pebble, tmp_path, http01_solver)
    url = issuer.account_url()
    key, directory, regr = issuer._account  # type: ignore[misc]
    # as after a restart of a test CA: the cached account URL is unknown to the server
    issuer._account = (key, directory, regr.update(uri=url.rsplit("/", 1)[0] + "/999999999"))
    issued = _issue(issuer, SubjectNames("", ["again.example.test"], []))
    assert issued.serial
    assert issuer.account_url() == url
