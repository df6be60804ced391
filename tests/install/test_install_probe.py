"""TLS probes: a real handshake with nginx, the presented chain, validation against a CA bundle."""
from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Callable

import pytest

from agent.errors import ProbeError
from agent.probe import probe

from tests.helpers.install_sites import Nginx, TestCA, free_port, make_pem_site


def test_probe_sees_the_chain_and_validates_it(tmp_path: Path, ca: TestCA, other_ca: TestCA,
                                               nginx: Callable[..., Nginx]) -> None:
    site = make_pem_site(tmp_path / "site", ca, "fullchain")
    n = nginx(site.nginx_cert, site.nginx_key)

    ok = probe("127.0.0.1", n.port, "www.example.test", timeout=5, ca_bundle=ca.root_pem)
    assert ok.fingerprint == site.issued.fingerprint and ok.leaf_der == site.issued.cert_der
    assert ok.chain_ders == site.issued.chain_ders[:1]          # nginx sends the intermediate from fullchain.pem
    assert ok.validated and ok.validation_error == ""
    assert ok.protocol in ("TLSv1.2", "TLSv1.3") and ok.cipher and ok.endpoint == f"127.0.0.1:{n.port}"

    wrong_name = probe("127.0.0.1", n.port, "mail.example.test", timeout=5, ca_bundle=ca.root_pem)
    assert wrong_name.fingerprint == ok.fingerprint and not wrong_name.validated
    assert wrong_name.validation_error.startswith("the chain does not validate for mail.example.test:")

    untrusted = probe("127.0.0.1", n.port, "www.example.test", timeout=5, ca_bundle=other_ca.root_pem)
    assert not untrusted.validated and "does not validate for www.example.test" in untrusted.validation_error

    system = probe("127.0.0.1", n.port, "www.example.test", timeout=5)       # the system trust store
    assert not system.validated and system.validation_error

    no_sni = probe("127.0.0.1", n.port, None, timeout=5, ca_bundle=ca.root_pem)
    assert not no_sni.validated and "for 127.0.0.1" in no_sni.validation_error   # the certificate has no IP SAN


def test_missing_intermediate_does_not_validate(tmp_path: Path, ca: TestCA, nginx: Callable[..., Nginx]) -> None:
    site = make_pem_site(tmp_path / "site", ca, "fullchain")
    leaf_only = site.directory / "leaf.pem"
    leaf_only.write_bytes(site.issued.cert_pem)
    n = nginx(leaf_only, site.key_path)
    r = probe("127.0.0.1", n.port, "www.example.test", timeout=5, ca_bundle=ca.root_pem)
    assert r.fingerprint == site.issued.fingerprint and r.chain_ders == ()
    assert not r.validated and "does not validate" in r.validation_error


def test_refused_and_silent_endpoints_give_clear_errors() -> None:
    port = free_port()
    with pytest.raises(ProbeError, match=rf"^127.0.0.1:{port}: connection refused"):
        probe("127.0.0.1", port, "x.example.test", timeout=2)
    with socket.socket() as silent:            # accepts connections (kernel backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(5)
        port = silent.getsockname()[1]
        t0 = time.monotonic()
        with pytest.raises(ProbeError, match=rf"^127.0.0.1:{port}: no TLS answer within 0.5 s$"):
            probe("127.0.0.1", port, "x.example.test", timeout=0.5)
        assert time.monotonic() - t0 < 3
