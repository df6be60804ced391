"""A new user's path: collector up, admin identity, token, enroll, scan, report, read back.

Every program runs as a real subprocess; the stores are made with openssl and keytool.
"""
from __future__ import annotations

import pathlib
import time

import grpc
import pytest

from certfleet.v1 import admin_pb2, admin_pb2_grpc
from tests.conftest import need_tools
from tests.e2e.harness import Agent, Collector, load_sample_maker


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory):
    c = Collector(tmp_path_factory.mktemp("collector"))
    c.start()
    r = c.init_admin()
    assert r.code == 0, r.err
    yield c
    c.stop()


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> dict:
    need_tools("openssl", "keytool")
    return load_sample_maker().make_sample_stores(tmp_path_factory.mktemp("stores"))


@pytest.fixture(scope="module")
def enrolled(collector: Collector, sample: dict, tmp_path_factory: pytest.TempPathFactory) -> Agent:
    agent = Agent(tmp_path_factory.mktemp("agent"), sample["config_toml"])
    agent.write_config(hostname="web-01.example.test")
    r = agent.enroll(collector, collector.token())
    assert r.code == 0, r.err
    r = agent.run_once()
    assert r.code == 0, r.err
    assert "full report 1 stored by the collector" in r.out
    return agent


def certs(collector: Collector, *args: str) -> list[dict]:
    r = collector.cli("certs", "list", "--format", "json", *args)
    assert r.code == 0, r.err
    return r.json()


def test_every_store_type_reaches_the_registry(collector: Collector, enrolled: Agent) -> None:
    listed = certs(collector, "--host", "web-01.example.test")
    store_types = {loc["store_type"] for c in listed for loc in c["locations"]}
    assert {"pem", "der", "pkcs12", "jks", "jceks"} <= store_types
    required = {"fingerprint_sha256", "subject", "issuer", "serial", "sans", "not_before", "not_after", "days_left",
                "key_type", "key_size", "signature_algorithm", "is_ca", "self_signed", "locations"}
    for c in listed:
        assert required <= c.keys()
        for loc in c["locations"]:
            assert {"agent", "host", "store_type", "path", "alias", "has_private_key", "status"} <= loc.keys()
            assert loc["host"] == "web-01.example.test"
    # a keystore private-key entry comes with its chain, the key reported present
    jks_entries = [loc for c in listed for loc in c["locations"] if loc["store_type"] == "jks" and loc["has_private_key"]]
    assert jks_entries and all(loc["alias"] for loc in jks_entries)
    # an encrypted PEM key is reported present and encrypted
    assert any(loc["key_encrypted"] for c in listed for loc in c["locations"] if loc["store_type"] == "pem")
    # a CA known to the registry is linked as issuer
    assert any(c["issuer_fingerprint_sha256"] for c in listed if not c["self_signed"])


def test_scan_errors_are_visible_with_reasons(collector: Collector, enrolled: Agent) -> None:
    r = collector.cli("agents", "list", "--format", "json")
    assert r.code == 0, r.err
    agent = next(a for a in r.json() if a["hostname"] == "web-01.example.test")
    reasons = {e["reason"] for e in agent["errors"]}
    assert {"empty", "wrong_password"} <= reasons
    assert reasons & {"corrupt", "truncated"}
    table = collector.cli("agents", "list")
    assert "Scan errors:" in table.out and "wrong_password" in table.out


def test_expiring_filter_and_show_by_prefix(collector: Collector, enrolled: Agent) -> None:
    soon = certs(collector, "--expiring-within", "30d")
    assert soon and all(c["days_left"] < 30 for c in soon)
    fp = soon[0]["fingerprint_sha256"]
    r = collector.cli("certs", "show", fp[:10])
    assert r.code == 0, r.err
    assert fp in r.out and "Locations:" in r.out
    r = collector.cli("certs", "show", "00")
    assert r.code != 0


def test_token_is_single_use(collector: Collector, sample: dict, tmp_path: pathlib.Path) -> None:
    token = collector.token()
    first = Agent(tmp_path / "a1", sample["config_toml"])
    first.write_config()
    assert first.enroll(collector, token).code == 0
    second = Agent(tmp_path / "a2", sample["config_toml"])
    second.write_config()
    r = second.enroll(collector, token)
    assert r.code != 0
    assert "already used" in r.err


def test_expired_token_refused(collector: Collector, sample: dict, tmp_path: pathlib.Path) -> None:
    token = collector.token(ttl="1s")
    time.sleep(1.5)
    agent = Agent(tmp_path / "a", sample["config_toml"])
    agent.write_config()
    r = agent.enroll(collector, token)
    assert r.code != 0 and "expired" in r.err


def test_wrong_ca_fingerprint_refused(collector: Collector, sample: dict, tmp_path: pathlib.Path) -> None:
    token = dict(collector.token(), ca_fingerprint_sha256="ab" * 32)
    agent = Agent(tmp_path / "a", sample["config_toml"])
    agent.write_config()
    r = agent.enroll(collector, token)
    assert r.code != 0 and "fingerprint" in r.err


def test_connection_without_client_certificate_refused(collector: Collector) -> None:
    ca = (collector.admin_config.parent / "ca.pem").read_bytes()
    with grpc.secure_channel(f"127.0.0.1:{collector.port}", grpc.ssl_channel_credentials(root_certificates=ca)) as ch:
        stub = admin_pb2_grpc.AdminServiceStub(ch)
        with pytest.raises(grpc.RpcError) as exc:
            list(stub.ListAgents(admin_pb2.ListAgentsRequest(), timeout=10))
    assert exc.value.code() == grpc.StatusCode.UNAVAILABLE


def test_agent_identity_cannot_make_admin_calls(collector: Collector, enrolled: Agent) -> None:
    ident = enrolled.workdir / "data" / "identity"
    creds = grpc.ssl_channel_credentials(
        root_certificates=(ident / "ca.pem").read_bytes(),
        private_key=(ident / "agent.key").read_bytes(),
        certificate_chain=(ident / "agent.pem").read_bytes(),
    )
    with grpc.secure_channel(f"127.0.0.1:{collector.port}", creds) as ch:
        stub = admin_pb2_grpc.AdminServiceStub(ch)
        with pytest.raises(grpc.RpcError) as exc:
            stub.CreateEnrollmentToken(admin_pb2.CreateEnrollmentTokenRequest(), timeout=10)
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_cli_without_config_says_what_to_do(collector: Collector) -> None:
    env = dict(collector.env)
    env.pop("CERTFLEET_CONFIG")
    r = collector.cli("certs", "list", env=env)
    assert r.code == 2 and "CERTFLEET_CONFIG" in r.err


def test_auditor_reads_but_cannot_create_tokens(collector: Collector, tmp_path: pathlib.Path) -> None:
    r = collector.init_admin(name="audit-1", role="auditor", out=tmp_path / "auditor")
    assert r.code == 0, r.err
    env = dict(collector.env, CERTFLEET_CONFIG=str(tmp_path / "auditor" / "certfleet.toml"))
    assert collector.cli("agents", "list", env=env).code == 0
    r = collector.cli("token", "create", env=env)
    assert r.code == 1 and "permission denied" in r.err
