"""Enrollment: a key made here, a CSR and a single-use token sent over TLS that trusts only the pinned CA."""
from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from agent.config import AgentConfig
from agent.errors import EnrollError, IdentityError
from agent.host import host_facts
from agent.identity import AgentIdentity, identity_dir, load_identity, make_key_and_csr, save_identity
from agent.pinning import fetch_pinned_ca
from agent.transport import enrollment

__all__ = ["enroll", "read_token", "split_endpoint", "EnrollError", "TOKEN_ENV"]


def split_endpoint(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise EnrollError(f"--collector {value!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


TOKEN_ENV = "CERTFLEET_ENROLL_TOKEN"


def read_token(token: str | None, token_file: str | None, environ: dict[str, str]) -> str:
    """The enrollment token from exactly one of: --token, --token-file (``-`` = standard input), $CERTFLEET_ENROLL_TOKEN.

    A token on the command line is visible in the process list while enrollment runs; the file,
    standard input and the environment are not.
    """
    import sys

    given = [name for name, value in (("--token", token), ("--token-file", token_file), (TOKEN_ENV, environ.get(TOKEN_ENV)))
             if value]
    if not given:
        raise EnrollError(f"no enrollment token: pass --token-file FILE (or - for standard input), set {TOKEN_ENV}, "
                          "or pass --token")
    if len(given) > 1:
        raise EnrollError(f"give the enrollment token once (got {' and '.join(given)})")
    if token:
        value = token
    elif token_file:
        try:
            value = sys.stdin.read() if token_file == "-" else open(token_file, encoding="utf-8").read()
        except OSError as e:
            raise EnrollError(f"cannot read the token file {token_file}: {e.strerror}") from None
    else:
        value = environ[TOKEN_ENV]
    value = value.strip()
    if not value or len(value.split()) != 1:
        raise EnrollError("the enrollment token is empty or not a single word")
    return value


def enroll(
    config: AgentConfig, collector: str, token: str, ca_fingerprint: str, *, force: bool = False, timeout: float = 30.0,
) -> AgentIdentity:
    directory = identity_dir(config.data_dir)
    if not force:
        try:
            existing = load_identity(directory)
        except IdentityError:
            existing = None
        if existing is not None:
            raise EnrollError(
                f"this host is already enrolled as agent {existing.agent_id} (identity in {directory}); "
                "pass --force to enroll again"
            )
    host, port = split_endpoint(collector)
    ca_der = fetch_pinned_ca(host, port, ca_fingerprint, timeout)
    ca_pem = x509.load_der_x509_certificate(ca_der).public_bytes(Encoding.PEM)
    key, csr_der = make_key_and_csr()
    resp = enrollment.enroll(collector, ca_pem, token, csr_der, host_facts(config.hostname, config.labels), timeout)
    endpoint = resp.agent_endpoint or f"{host}:{port}"
    ep_host, _, ep_port = endpoint.rpartition(":")
    if ep_host in ("0.0.0.0", "::", "[::]", ""):
        endpoint = f"{host}:{ep_port}"   # the collector listens on all addresses: reach it where we enrolled
    # the data dir holds the identity key and state: private to the agent's user when we make it
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    return save_identity(directory, key, resp.certificate_der, list(resp.ca_chain_der), resp.agent_id, endpoint)
