"""Exporter mode as a host's operator uses it: ``certfleet-agent exporter`` on real files made with
openssl (a PEM chain, a PKCS#12 with and without its password, a corrupt file), scraped over HTTP and
read back with prometheus_client's parser; the series follow the files as they change."""
from __future__ import annotations

import os
import pathlib
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port, need_tools
from tests.e2e.harness import BIN


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def self_signed(d: pathlib.Path, name: str, days: int, cn: str) -> tuple[pathlib.Path, pathlib.Path]:
    cert, key = d / f"{name}.crt", d / f"{name}.key"
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key),
            "-out", str(cert), "-days", str(days), "-subj", f"/CN={cn}/O=certfleet tests")
    return cert, key


def scrape(port: int, token: str | None = None) -> dict[str, list]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=10) as r:
        text = r.read().decode()
    out: dict[str, list] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append(s)
    return out


def wait_scrape(port: int, pred, token: str | None = None, timeout: float = 30):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = scrape(port, token)
            if pred(last):
                return last
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.3)
    raise AssertionError(f"timed out; last scrape: {last}")


@pytest.fixture()
def host_files(tmp_path: pathlib.Path) -> dict[str, pathlib.Path]:
    need_tools("openssl")
    d = tmp_path / "tls"
    d.mkdir()
    web, web_key = self_signed(tmp_path, "web", 10, "www.example.test")
    app, app_key = self_signed(tmp_path, "app", 400, "app.example.test")
    (d / "web.pem").write_bytes(web.read_bytes() + web_key.read_bytes())
    pw = tmp_path / "p12.pass"
    pw.write_text("right-pass\n")
    openssl("pkcs12", "-export", "-in", str(app), "-inkey", str(app_key), "-out", str(d / "app.p12"),
            "-passout", "pass:right-pass", "-name", "app")
    openssl("pkcs12", "-export", "-in", str(app), "-inkey", str(app_key), "-out", str(d / "locked.p12"),
            "-passout", "pass:other-pass", "-name", "locked")
    (d / "broken.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    return {"dir": d, "web": d / "web.pem", "app": d / "app.p12", "locked": d / "locked.p12", "pw": pw,
            "web_cert": web, "app_cert": app}


def start_exporter(tmp_path: pathlib.Path, files: dict, port: int, extra: str = "") -> subprocess.Popen:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[agent]\ndata_dir = "{tmp_path / "data"}"\nscan_interval = "1s"\n\n'
        f'[[store]]\nname = "web"\ntype = "pem"\npaths = ["{files["dir"]}/*.pem"]\n\n'
        f'[[store]]\nname = "p12"\ntype = "pkcs12"\npaths = ["{files["dir"]}/*.p12"]\n'
        f'password_file = "{files["pw"]}"\n\n'
        f'[metrics]\nlisten = "127.0.0.1:{port}"\n{extra}'
    )
    config.chmod(0o600)
    log = open(tmp_path / "exporter.log", "w")
    return subprocess.Popen([str(BIN / "certfleet-agent"), "exporter", "--config", str(config)], stdout=log, stderr=log)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def by_path(samples: list) -> dict[str, dict]:
    return {s.labels["filepath"]: {**s.labels, "value": s.value} for s in samples}


def test_exporter_series_per_certificate_and_per_unreadable_file(tmp_path, host_files) -> None:  # noqa: ANN001
    port = free_port()
    proc = start_exporter(tmp_path, host_files, port)
    try:
        got = wait_scrape(port, lambda m: m.get("certfleet_agent_scans_total", [None])[0] is not None
                          and m["certfleet_agent_scans_total"][0].value >= 1)
        after = by_path(got["x509_cert_not_after"])
        assert set(after) == {str(host_files["web"]), str(host_files["app"])}
        web = x509.load_pem_x509_certificate(host_files["web_cert"].read_bytes())
        w = after[str(host_files["web"])]
        assert w["value"] == web.not_valid_after_utc.timestamp()
        assert (w["store_type"], w["filename"], w["alias"], w["chain_index"]) == ("pem", "web.pem", "", "0")
        assert w["subject_CN"] == "www.example.test" and w["subject"] == "O=certfleet tests,CN=www.example.test"
        assert w["issuer_CN"] == "www.example.test"
        assert w["serial_number"] == format(web.serial_number, "x")
        a = after[str(host_files["app"])]
        assert (a["store_type"], a["alias"], a["subject_CN"]) == ("pkcs12", "app", "app.example.test")
        before = by_path(got["x509_cert_not_before"])
        assert before[str(host_files["web"])]["value"] == web.not_valid_before_utc.timestamp()
        assert {s.value for s in got["x509_cert_expired"]} == {0}
        errors = {(s.labels["filepath"], s.labels["reason"]) for s in got["x509_cert_error"]}
        assert errors == {(str(host_files["locked"]), "wrong_password"),
                          (str(host_files["dir"] / "broken.pem"), "corrupt")}
        assert got["x509_read_errors"][0].value == 2
        assert got["certfleet_agent_scan_duration_seconds"][0].value > 0
        assert got["certfleet_agent_certificates"][0].value == 2
        # the password is in no label and no value
        assert "right-pass" not in repr(got) and "other-pass" not in repr(got)

        # the host changes: the web certificate is renewed in place, the corrupt file removed
        renewed, renewed_key = self_signed(tmp_path, "web2", 90, "www.example.test")
        host_files["web"].write_bytes(renewed.read_bytes() + renewed_key.read_bytes())
        os.unlink(host_files["dir"] / "broken.pem")
        new = x509.load_pem_x509_certificate(renewed.read_bytes()).not_valid_after_utc.timestamp()
        got = wait_scrape(port, lambda m: by_path(m["x509_cert_not_after"]).get(str(host_files["web"]), {})
                          .get("value") == new)
        assert len(got["x509_cert_not_after"]) == 2                   # the old series is gone, not kept beside
        assert {s.labels["reason"] for s in got["x509_cert_error"]} == {"wrong_password"}
        assert got["x509_read_errors"][0].value == 1
    finally:
        stop(proc)


def test_exporter_bearer_token(tmp_path, host_files) -> None:  # noqa: ANN001
    port = free_port()
    token = tmp_path / "token"
    token.write_text("exporter-token-42\n")
    proc = start_exporter(tmp_path, host_files, port, f'bearer_token_file = "{token}"\n')
    try:
        wait_scrape(port, lambda m: "x509_cert_not_after" in m, token="exporter-token-42")
        for wrong in (None, "exporter-token-4", "exporter-token-42x"):
            with pytest.raises(urllib.error.HTTPError) as e:
                scrape(port, wrong)
            assert e.value.code == 401
    finally:
        stop(proc)
    assert "exporter-token-42" not in (tmp_path / "exporter.log").read_text()


def test_metrics_section_is_checked(tmp_path) -> None:  # noqa: ANN001
    from agent.config import ConfigError, parse_config   # the config reader alone

    parse_config('[metrics]\nlisten = "127.0.0.1:9793"\n')
    assert parse_config("").metrics.enabled is False                 # off by default
    with pytest.raises(ConfigError, match=r"\[metrics\] listen: '9793' is not HOST:PORT"):
        parse_config('[metrics]\nlisten = "9793"\n')
    with pytest.raises(ConfigError, match="unknown key 'port'"):
        parse_config('[metrics]\nport = 9793\n')
    with pytest.raises(ConfigError, match=r"\[log\] format: must be one of plain, json"):
        parse_config('[log]\nformat = "xml"\n')
