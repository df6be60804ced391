"""Enrollment and identity renewal: the decisions, apart from the wire."""
from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from cryptography import x509

from collector import errors
from collector.pki import CollectorCA, identity_from_certificate
from collector.registry.repository import Registry
from collector.registry.types import HostFacts
from collector.domain.tokens import hash_token, looks_like_token


@dataclass(frozen=True)
class Enrolled:
    agent_id: str
    certificate: x509.Certificate


def serial_hex(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "x")


def enroll(
    registry: Registry, ca: CollectorCA, token: str, csr_der: bytes, host: HostFacts,
    now: dt.datetime, lifetime: dt.timedelta,
) -> Enrolled:
    """Consume a single-use token and issue the agent's client certificate.

    The certificate is issued first (it checks the CSR) but means nothing until
    the registry has consumed the token and recorded the agent, in one
    transaction: a used or expired token leaves no agent behind.
    """
    token = token.strip()
    if not looks_like_token(token):
        raise errors.TokenInvalid("that is not a certfleet enrollment token (they start with 'cfe_')")
    if not host.hostname:
        raise errors.InvalidInput("the enrollment request names no host")
    agent_id = str(uuid.uuid4())
    cert = ca.issue_agent_certificate(csr_der, agent_id, now, lifetime=lifetime)
    registry.enroll_agent(hash_token(token), agent_id, host, serial_hex(cert), cert.not_valid_after_utc, now)
    return Enrolled(agent_id=agent_id, certificate=cert)


def renew_identity(
    registry: Registry, ca: CollectorCA, agent_id: str, csr_der: bytes, now: dt.datetime, lifetime: dt.timedelta,
) -> x509.Certificate:
    cert = ca.issue_agent_certificate(csr_der, agent_id, now, lifetime=lifetime)
    identity = identity_from_certificate(cert)
    registry.update_agent_identity(agent_id, identity.serial, cert.not_valid_after_utc, now)
    return cert
