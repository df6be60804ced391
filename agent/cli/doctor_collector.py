"""The doctor's check of the collector, step by step, so the failing step is named.

DNS, TCP connect (refused or timed out), TLS handshake with the agent's certificate against
the pinned collector CA (the collector's certificate, its name, and whether the collector
accepts the agent's certificate), then a real call that the collector answers only after it
has checked the agent's identity against its registry (:func:`agent.transport.identity.check_identity`).
"""
from __future__ import annotations

import socket
import ssl

from agent.cli.doctor_checks import DEFAULT_TIMEOUT, FAIL, OK, WARN, CheckResult
from agent.transport.identity import ACCEPTED, CALL_FAILED, NO_ANSWER, REFUSED
from agent.transport.identity import check_identity as collector_check

__all__ = ["check_collector", "split_endpoint"]


def split_endpoint(endpoint: str) -> tuple[str, int]:
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"not HOST:PORT: {endpoint!r}")
    return host.strip("[]"), int(port)


def check_collector(ident, timeout: float = DEFAULT_TIMEOUT):  # noqa: ANN001, ANN201 - (CheckResult, server cert DER | None)
    """DNS, TCP, mutual TLS against the pinned CA, then the collector's own identity check."""
    name = "collector"
    try:
        host, port = split_endpoint(ident.endpoint)
    except ValueError as e:
        return CheckResult(name, FAIL, f"the identity names no usable collector endpoint: {e}",
                           f"enroll again (the endpoint is kept in {ident.meta_path})"), None
    where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"

    # 1. DNS
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)   # a name that does not resolve is told apart
    except socket.gaierror as e:
        return CheckResult(name, FAIL, f"cannot resolve {host}: {e.strerror}",
                           "a DNS problem: check the name and /etc/resolv.conf (the endpoint comes from "
                           f"enrollment, in {ident.meta_path})"), None
    # 2. TCP
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except ConnectionRefusedError:
        return CheckResult(name, FAIL, f"connection refused by {where}: nothing listens there",
                           "is certfleet-collector running, and is this its `listen` (or `advertise`) address?"), None
    except (socket.timeout, TimeoutError):
        return CheckResult(name, FAIL, f"no answer from {where} within {timeout:g} s",
                           "a firewall drops the packets, or the host is down; the agent only dials out, "
                           f"to port {port}"), None
    except OSError as e:
        return CheckResult(name, FAIL, f"cannot connect to {where}: {e.strerror or e}",
                           "check routing and firewalls between this host and the collector"), None
    address = sock.getpeername()[0]

    # 3. TLS, both ways
    with sock:
        try:
            ctx = _tls_context(ident)
        except OSError as e:
            return CheckResult(name, FAIL, f"cannot read the agent's key or certificate: {e.strerror or e}",
                               "run doctor as root, as the service runs"), None
        except ssl.SSLError as e:
            return CheckResult(name, FAIL, f"the agent's key or certificate cannot be used: {e.reason or e}",
                               "enroll again with --force"), None
        sock.settimeout(timeout)
        try:
            tls = ctx.wrap_socket(sock, server_hostname=host)
        except ssl.SSLCertVerificationError as e:
            return _verify_failed(e, host, port, where, timeout), _unverified_server_cert(host, port, timeout)
        except (socket.timeout, TimeoutError):
            return CheckResult(name, FAIL, f"{where} accepted the connection but the TLS handshake timed out "
                                           f"({timeout:g} s)", "is it the collector's mutual-TLS `listen` port?"), None
        except ssl.SSLError as e:
            return _handshake_refused(e, where), _unverified_server_cert(host, port, timeout)
        except OSError as e:
            return CheckResult(name, FAIL, f"the TLS handshake with {where} failed: {e.strerror or e}",
                               "is it the collector's mutual-TLS `listen` port?"), None
        with tls:
            server_der = tls.getpeercert(binary_form=True)
            if tls.selected_alpn_protocol() != "h2":
                return CheckResult(name, FAIL, f"{where} speaks TLS but not HTTP/2: not a gRPC server",
                                   "is it the collector's `listen` port?"), server_der
            refused = _client_cert_refused(tls, where)
            if refused is not None:
                return refused, server_der

    # 4. the collector's own check of this identity (registry: enrolled, not revoked, current)
    return _identity_accepted(ident, where, address, timeout), server_der


def _tls_context(ident) -> ssl.SSLContext:  # noqa: ANN001
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cadata=ident.ca_pem.decode("ascii", "replace"))
    ctx.load_cert_chain(str(ident.cert_path), str(ident.key_path))
    ctx.set_alpn_protocols(["h2"])
    return ctx


_NOT_YET_VALID, _EXPIRED, _HOSTNAME_MISMATCH = 9, 10, 62


def _verify_failed(e: ssl.SSLCertVerificationError, host: str, port: int, where: str, timeout: float) -> CheckResult:
    code = getattr(e, "verify_code", None)
    if code == _NOT_YET_VALID:
        return CheckResult("collector", FAIL, f"the collector's certificate at {where} is not valid yet by this "
                                              "host's clock", "this host's clock is behind: synchronise it (NTP)")
    if code == _EXPIRED:
        return CheckResult("collector", FAIL, f"the collector's certificate at {where} has expired by this host's "
                                              "clock", "check this host's clock; a running collector renews its "
                                                       "certificate 30 days before expiry (restart it)")
    if code == _HOSTNAME_MISMATCH:
        return CheckResult("collector", FAIL, f"the collector's certificate does not name {host}",
                           f"add {host} to server_names in collector.toml (the collector reissues its certificate "
                           "on restart), or enroll again through a name it has")
    return CheckResult("collector", FAIL,
                       f"the server at {where} does not present a certificate of the collector CA this agent enrolled "
                       f"with ({getattr(e, 'verify_message', '') or e.reason})",
                       "another server answers at that address, or the collector's CA was replaced: enroll again")


def _handshake_refused(e: ssl.SSLError, where: str) -> CheckResult:
    reason = (e.reason or str(e)).lower()
    if "alert" in reason:
        return CheckResult("collector", FAIL, f"the collector at {where} refused this agent's TLS certificate "
                                              f"({e.reason})",
                           "the certificate is not from the collector's CA or has expired there: enroll again")
    if "wrong_version" in reason or "record" in reason or "packet" in reason:
        return CheckResult("collector", FAIL, f"{where} does not speak TLS ({e.reason})",
                           "is it the collector's mutual-TLS `listen` port?")
    return CheckResult("collector", FAIL, f"the TLS handshake with {where} failed: {e.reason or e}",
                       "is it the collector's mutual-TLS `listen` port?")


# HTTP/2: the client connection preface and an empty SETTINGS frame.
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def _client_cert_refused(tls: ssl.SSLSocket, where: str) -> CheckResult | None:
    """With TLS 1.3 a server refuses a client certificate after the handshake: read and see."""
    try:
        tls.sendall(_H2_PREFACE)
        head = tls.recv(9)
    except ssl.SSLError as e:
        return CheckResult("collector", FAIL, f"the collector at {where} refused this agent's TLS certificate "
                                              f"({e.reason or e})",
                           "the certificate is not from the collector's CA or has expired there: enroll again")
    except (socket.timeout, TimeoutError):
        return None   # nothing said yet; the gRPC call below decides
    except OSError as e:
        return CheckResult("collector", FAIL, f"the collector at {where} dropped the connection after the "
                                              f"handshake ({e.strerror or e})", "enroll again")
    if not head:
        return CheckResult("collector", FAIL, f"the collector at {where} closed the connection after the TLS "
                                              "handshake: it refused this agent's certificate", "enroll again")
    return None


def _identity_accepted(ident, where: str, address: str, timeout: float) -> CheckResult:  # noqa: ANN001
    check = collector_check(ident, timeout)
    if check.verdict == ACCEPTED:
        return CheckResult("collector", OK, f"{where} ({address}) reachable; mutual TLS works and the "
                                            f"collector accepts agent {ident.agent_id}")
    if check.verdict == REFUSED:
        return CheckResult("collector", FAIL, f"the collector refused agent {ident.agent_id}: {check.details}",
                           "the agent was revoked or is unknown to this collector's registry: create a token "
                           "and enroll again with --force")
    if check.verdict == NO_ANSWER:
        return CheckResult("collector", FAIL, f"the collector at {where} did not answer a call within "
                                              f"{timeout:g} s", "is it overloaded, or its database slow?")
    if check.verdict == CALL_FAILED:
        return CheckResult("collector", FAIL, f"a call to the collector at {where} failed: "
                                              f"{check.code}: {check.details}", "see the collector's log")
    return CheckResult("collector", WARN, f"the collector at {where} stored an empty report; expected a refusal",
                       "is this a certfleet collector?")


def _unverified_server_cert(host: str, port: int, timeout: float) -> bytes | None:
    """The collector's certificate without trusting it (for the clock check only)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname=host) as tls:
                return tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError):
        return None
