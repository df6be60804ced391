"""Real handshakes: CA pinning against a TLS server on 127.0.0.1, and mutual TLS
with a real gRPC server using the collector CA."""
from __future__ import annotations

import datetime as dt
import hashlib
import socket
import threading
from concurrent import futures
from pathlib import Path
from typing import Any, Callable, Iterator

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from agent.errors import IdentityError
from agent.identity import load_identity, make_key_and_csr, save_identity
from agent.pinning import fetch_pinned_ca, normalize_fingerprint
from collector.pki import CollectorCA, identity_from_pem

AGENT_ID = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"


def colons(fp: str) -> str:
    return ":".join(fp[i:i + 2] for i in range(0, len(fp), 2)).upper()


# -- pinning -------------------------------------------------------------------------


def test_right_fingerprint_returns_the_ca(tls_server: Any, ca: CollectorCA) -> None:
    der = fetch_pinned_ca("127.0.0.1", tls_server.port, ca.fingerprint_sha256, timeout=5)
    assert der == ca.cert_der
    # colons and upper case are fine
    assert fetch_pinned_ca("localhost" if _localhost_v4() else "127.0.0.1", tls_server.port,
                           colons(ca.fingerprint_sha256), timeout=5) == ca.cert_der


def _localhost_v4() -> bool:
    try:
        return any(a[4][0] == "127.0.0.1" for a in socket.getaddrinfo("localhost", None, socket.AF_INET))
    except OSError:
        return False


def test_wrong_fingerprint_names_both(tls_server: Any, ca: CollectorCA, tmp_path: Path,
                                      now: dt.datetime) -> None:
    other = CollectorCA.load_or_create(tmp_path / "other", now)
    with pytest.raises(IdentityError) as err:
        fetch_pinned_ca("127.0.0.1", tls_server.port, other.fingerprint_sha256, timeout=5)
    msg = str(err.value)
    assert f"presented CA fingerprint {ca.fingerprint_sha256}" in msg
    assert f"expected {other.fingerprint_sha256}" in msg
    assert "man in the middle" in msg


def test_pinning_the_server_certificate_is_refused(tls_server: Any, server_files: tuple[Path, Path]) -> None:
    leaf = x509.load_pem_x509_certificates(server_files[0].read_bytes())[0]
    leaf_fp = hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest()
    with pytest.raises(IdentityError, match="not a CA certificate"):
        fetch_pinned_ca("127.0.0.1", tls_server.port, leaf_fp, timeout=5)


def test_server_that_sends_no_ca_is_explained(
    server_files: tuple[Path, Path], ca: CollectorCA, tmp_path: Path, start_tls_server: Callable[..., Any]
) -> None:
    chain_path, key_path = server_files
    leaf_only = tmp_path / "leaf.pem"
    leaf_only.write_bytes(x509.load_pem_x509_certificates(chain_path.read_bytes())[0].public_bytes(
        serialization.Encoding.PEM))
    server = start_tls_server(leaf_only, key_path)
    with pytest.raises(IdentityError, match="only its server certificate.*server.pem"):
        fetch_pinned_ca("127.0.0.1", server.port, ca.fingerprint_sha256, timeout=5)


def test_ca_that_did_not_sign_the_server_is_refused(
    ca: CollectorCA, tmp_path: Path, now: dt.datetime, start_tls_server: Callable[..., Any]
) -> None:
    """A man in the middle replaying the real CA certificate after its own server certificate."""
    mitm = CollectorCA.load_or_create(tmp_path / "mitm", now)
    chain_path, key_path = mitm.server_identity(tmp_path / "mitm", ["127.0.0.1"], now)
    leaf_pem = x509.load_pem_x509_certificates(chain_path.read_bytes())[0].public_bytes(serialization.Encoding.PEM)
    forged = tmp_path / "forged.pem"
    forged.write_bytes(leaf_pem + ca.cert_pem)
    server = start_tls_server(forged, key_path)
    with pytest.raises(IdentityError, match="not signed by the pinned CA"):
        fetch_pinned_ca("127.0.0.1", server.port, ca.fingerprint_sha256, timeout=5)


@pytest.mark.parametrize("bad", ["", "abc", "zz" * 32, "ab" * 33])
def test_malformed_fingerprints(bad: str) -> None:
    with pytest.raises(IdentityError, match="64 hexadecimal digits"):
        fetch_pinned_ca("127.0.0.1", 9, bad, timeout=1)


def test_normalize_fingerprint() -> None:
    fp = "ab" * 32
    assert normalize_fingerprint(colons(fp)) == fp
    assert normalize_fingerprint(f" SHA256:{fp.upper()}\n") == fp


def test_unreachable_collector() -> None:
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(IdentityError, match=f"cannot connect to the collector at 127.0.0.1:{port}"):
        fetch_pinned_ca("127.0.0.1", port, "ab" * 32, timeout=2)


def test_not_a_tls_server() -> None:
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    def answer() -> None:
        conn, _ = srv.accept()
        conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
        conn.close()

    t = threading.Thread(target=answer, daemon=True)
    t.start()
    try:
        with pytest.raises(IdentityError, match="TLS handshake with the collector"):
            fetch_pinned_ca("127.0.0.1", port, "ab" * 32, timeout=5)
    finally:
        t.join(5)
        srv.close()


# -- mutual TLS with a real gRPC server ---------------------------------------------

METHOD = "/certfleet.test.Echo/Echo"


def _echo(request: bytes, context: grpc.ServicerContext) -> bytes:
    pems = context.auth_context().get("x509_pem_cert") or []
    who = identity_from_pem(pems[0]) if pems else None
    label = f"{who.kind}:{who.name}" if who else "anonymous"
    return label.encode() + b"|" + request


def _grpc_server(ca: CollectorCA, chain: Path, key: Path, require_client_auth: bool) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "certfleet.test.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(_echo)})])
    creds = grpc.ssl_server_credentials(
        [(key.read_bytes(), chain.read_bytes())],
        root_certificates=ca.cert_pem if require_client_auth else None,
        require_client_auth=require_client_auth,
    )
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    return server, port


@pytest.fixture
def mtls_server(ca: CollectorCA, server_files: tuple[Path, Path]) -> Iterator[int]:
    server, port = _grpc_server(ca, *server_files, require_client_auth=True)
    yield port
    server.stop(None)


def _call(port: int, creds: grpc.ChannelCredentials, payload: bytes = b"ping") -> bytes:
    with grpc.secure_channel(f"127.0.0.1:{port}", creds) as channel:
        return channel.unary_unary(METHOD)(payload, timeout=5)


def test_grpc_accepts_an_enrolled_agent(mtls_server: int, ca: CollectorCA, tmp_path: Path, now: dt.datetime) -> None:
    """The whole path: key + CSR on the agent, certificate from the CA, identity
    saved and loaded, credentials into gRPC, identity read back by the server."""
    key, csr = make_key_and_csr()
    cert = ca.issue_agent_certificate(csr, AGENT_ID, now)
    save_identity(tmp_path / "identity", key, cert.public_bytes(serialization.Encoding.DER), [ca.cert_der],
                  AGENT_ID, f"127.0.0.1:{mtls_server}", now=now)
    ident = load_identity(tmp_path / "identity")
    assert _call(mtls_server, ident.channel_credentials()) == f"agent:{AGENT_ID}|ping".encode()


def test_grpc_accepts_an_admin(mtls_server: int, ca: CollectorCA, now: dt.datetime) -> None:
    cert, key = ca.issue_admin_certificate("alice", "operator", now)
    creds = grpc.ssl_channel_credentials(
        root_certificates=ca.cert_pem,
        private_key=key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()),
        certificate_chain=cert.public_bytes(serialization.Encoding.PEM),
    )
    assert _call(mtls_server, creds) == b"admin:alice|ping"


def test_grpc_refuses_a_client_without_certificate(mtls_server: int, ca: CollectorCA) -> None:
    with pytest.raises(grpc.RpcError) as err:
        _call(mtls_server, grpc.ssl_channel_credentials(root_certificates=ca.cert_pem))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_grpc_refuses_a_certificate_from_another_ca(
    mtls_server: int, ca: CollectorCA, tmp_path: Path, now: dt.datetime
) -> None:
    other = CollectorCA.load_or_create(tmp_path / "other", now)
    key, csr = make_key_and_csr()
    cert = other.issue_agent_certificate(csr, AGENT_ID, now)
    creds = grpc.ssl_channel_credentials(
        root_certificates=ca.cert_pem,
        private_key=key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()),
        certificate_chain=cert.public_bytes(serialization.Encoding.PEM),
    )
    with pytest.raises(grpc.RpcError) as err:
        _call(mtls_server, creds)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_pinning_against_the_grpc_enrollment_listener(
    ca: CollectorCA, server_files: tuple[Path, Path], tmp_path: Path, now: dt.datetime
) -> None:
    """The enrollment listener is a gRPC server without client authentication:
    pin its CA, then talk to it trusting only that CA."""
    server, port = _grpc_server(ca, *server_files, require_client_auth=False)
    try:
        der = fetch_pinned_ca("127.0.0.1", port, colons(ca.fingerprint_sha256), timeout=5)
        assert der == ca.cert_der
        pinned_pem = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
        assert _call(port, grpc.ssl_channel_credentials(root_certificates=pinned_pem)) == b"anonymous|ping"
        other = CollectorCA.load_or_create(tmp_path / "other", now)
        with pytest.raises(IdentityError, match="man in the middle"):
            fetch_pinned_ca("127.0.0.1", port, other.fingerprint_sha256, timeout=5)
    finally:
        server.stop(None)


def test_silent_server_times_out() -> None:
    srv = socket.create_server(("127.0.0.1", 0))  # accepts TCP (backlog) but never speaks TLS
    try:
        with pytest.raises(IdentityError, match="did not answer within 0.5 s"):
            fetch_pinned_ca("127.0.0.1", srv.getsockname()[1], "ab" * 32, timeout=0.5)
    finally:
        srv.close()
