"""build_issuers: issuers from the [issuers] table, explicit types, clear config errors."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from collector.issuers.acme import AcmeIssuer
from collector.issuers.solvers import CallbackHttp01Solver, Dns01HookSolver, StandaloneHttp01Solver
from collector.issuers.base import Issuer
from collector.issuers.factory import FACTORIES, build_issuers, check_template_issuers
from collector.issuers.internal_ca import InternalCA
from collector.domain.templates import SubjectNames, TemplateConfigError
from collector.config.templates import load_templates
from tests.helpers.collector_issuers import utcnow
from tests.helpers.collector_issuers import make_csr, new_key


def test_build_issuers_from_toml(tmp_path: Path, openssl_ca_files) -> None:
    conf = tomllib.loads(f"""
[issuers.internal]
type = "internal_ca"
common_name = "Example"
crl_validity = "2d"

[issuers.imported]
type = "internal_ca"
root_cert = "{openssl_ca_files['root_cert'].name}"
intermediate_cert = "{openssl_ca_files['intermediate_cert'].name}"
intermediate_key = "{openssl_ca_files['intermediate_key'].name}"

[issuers.le-http]
type = "acme"
directory_url = "https://acme.example.test/dir"
http01_listen = "127.0.0.1:8080"

[issuers.le-dns]
type = "acme"
directory_url = "https://acme.example.test/dir"
challenge = "dns-01"
dns01_hook = ["/usr/local/bin/hook", "--zone", "example.test"]
dns01_timeout = "30s"
""")
    issuers = build_issuers(conf["issuers"], tmp_path / "data", base_dir=openssl_ca_files["root_cert"].parent)
    assert list(issuers) == ["internal", "imported", "le-http", "le-dns"]
    assert all(isinstance(i, Issuer) for i in issuers.values())
    internal, imported = issuers["internal"], issuers["imported"]
    assert isinstance(internal, InternalCA) and internal.directory == tmp_path / "data" / "issuers" / "internal"
    assert isinstance(imported, InternalCA) and imported.imported
    http, dns = issuers["le-http"], issuers["le-dns"]
    assert isinstance(http, AcmeIssuer) and isinstance(http.solver, StandaloneHttp01Solver)
    assert (http.solver.host, http.solver.port) == ("127.0.0.1", 8080)
    assert isinstance(dns, AcmeIssuer) and isinstance(dns.solver, Dns01HookSolver)
    assert dns.solver.command == ["/usr/local/bin/hook", "--zone", "example.test"] and dns.solver.timeout == 30
    assert not (tmp_path / "data").exists(), "building touches nothing on disk"
    templates = load_templates({"web": {"issuer": "internal", "allowed_san_patterns": ["*.example.test"]}})
    check_template_issuers(templates, issuers)
    with pytest.raises(TemplateConfigError, match="issuer 'nope' is not configured"):
        check_template_issuers(load_templates({"x": {"issuer": "nope", "allowed_san_patterns": ["**"]}}), issuers)


def test_a_solver_from_the_collector_replaces_the_configured_challenge(tmp_path: Path) -> None:
    cfg = {"agent-http": {"type": "acme", "directory_url": "https://acme.example.test/dir"}}
    with pytest.raises(TemplateConfigError, match="http01_listen"):
        build_issuers(cfg, tmp_path)
    solver = CallbackHttp01Solver(lambda *a: None, lambda *a: None)
    issuers = build_issuers(cfg, tmp_path, solvers={"agent-http": solver})
    assert issuers["agent-http"].solver is solver  # type: ignore[attr-defined]


@pytest.mark.parametrize("cfg, words", [
    ({"x": {"type": "vault"}}, ["'x'", "vault", "acme, internal_ca"]),
    ({"x": {}}, ["'x'", "type None"]),
    ({"bad name": {"type": "internal_ca"}}, ["'bad name'", "1-64"]),
    ({"x": {"type": "internal_ca", "colour": 1}}, ["unknown setting", "colour"]),
    ({"x": {"type": "internal_ca", "crl_validity": "soon"}}, ["crl_validity", "not a duration"]),
    ({"x": {"type": "internal_ca", "ca_key_type": "dsa"}}, ["ca_key_type"]),
    ({"x": {"type": "internal_ca", "root_cert": "/r.pem"}}, ["together"]),
    ({"x": {"type": "acme"}}, ["directory_url is required"]),
    ({"x": {"type": "acme", "directory_url": "ftp://x"}}, ["https://"]),
    ({"x": {"type": "acme", "directory_url": "https://a/d", "challenge": "tls-alpn-01"}}, ["http-01", "dns-01"]),
    ({"x": {"type": "acme", "directory_url": "https://a/d", "http01_listen": "80"}}, ["http01_listen", "HOST:PORT"]),
    ({"x": {"type": "acme", "directory_url": "https://a/d", "challenge": "dns-01"}}, ["dns01_hook"]),
    ({"x": {"type": "acme", "directory_url": "https://a/d", "challenge": "dns-01", "dns01_hook": "hook --x"}},
     ["dns01_hook", "argument list"]),
    ({"x": {"type": "acme", "directory_url": "https://a/d", "http01_listen": "127.0.0.1:80", "eab_kid": "k"}},
     ["eab_kid", "eab_hmac_key_file"]),
])
def test_config_errors_are_clear(tmp_path: Path, cfg: dict, words: list[str]) -> None:
    with pytest.raises(TemplateConfigError) as err:
        build_issuers(cfg, tmp_path)
    for w in words:
        assert w in str(err.value), str(err.value)


def test_factories_are_an_explicit_table(tmp_path: Path) -> None:
    assert set(FACTORIES) == {"internal_ca", "acme"}
    made = []

    def fake(name, cfg, data_dir, base_dir, **kw):
        made.append(name)
        return InternalCA(name, data_dir / name)

    assert list(build_issuers({"a": {"type": "fake"}}, tmp_path, factories={"fake": fake})) == ["a"]
    assert made == ["a"]
    assert build_issuers(None, tmp_path) == {} and build_issuers({}, tmp_path) == {}


def test_config_built_acme_issuer_issues_from_pebble(pebble, tmp_path: Path) -> None:
    issuers = build_issuers(
        {"pebble": {"type": "acme", "directory_url": pebble.directory_url, "ca_bundle": str(pebble.ca_bundle),
                    "http01_listen": f"127.0.0.1:{pebble.http01_port}", "email": "pki@example.test",
                    "order_timeout": "30s"}},
        tmp_path,
    )
    from tests.helpers.collector_issuers import make_template

    names = SubjectNames("cfg.example.test", ["cfg.example.test"], [])
    csr = make_csr(new_key(), ["cfg.example.test"], [], "cfg.example.test")
    issued = issuers["pebble"].issue(csr, make_template(issuer="pebble"), names, utcnow())
    assert issued.chain_ders and issued.serial
