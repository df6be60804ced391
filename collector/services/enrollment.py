"""Enrollment and identity renewal of agents: the collector CA issues, the registry records.

:meth:`Enrollment.enroll` consumes a single-use token and makes the agent's client certificate;
:meth:`Enrollment.renew_identity` gives an enrolled agent a new one. Both take the CSR made on
the host (the key never leaves it) and return an :class:`IssuedIdentity` for the api to send.
"""
from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass
from typing import Callable

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from collector import errors
from collector.domain.tokens import hash_token, looks_like_token
from collector.pki import CollectorCA, identity_from_certificate
from collector.registry import Registry
from collector.registry.types import HostFacts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IssuedIdentity:
    """An agent's new client certificate and the CA chain it verifies against."""

    agent_id: str
    certificate_der: bytes
    ca_chain_der: tuple[bytes, ...]
    not_after: dt.datetime


def serial_hex(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "x")


class Enrollment:
    def __init__(self, registry: Registry, ca: CollectorCA, lifetime: dt.timedelta,
                 clock: Callable[[], dt.datetime]) -> None:
        self.registry = registry
        self.ca = ca
        self.lifetime = lifetime        # of an agent's certificate ([collector] agent_cert_lifetime)
        self.clock = clock

    def _issued(self, agent_id: str, cert: x509.Certificate) -> IssuedIdentity:
        return IssuedIdentity(agent_id=agent_id, certificate_der=cert.public_bytes(Encoding.DER),
                              ca_chain_der=(self.ca.cert_der,), not_after=cert.not_valid_after_utc)

    def enroll(self, token: str, csr_der: bytes, host: HostFacts) -> IssuedIdentity:
        """Consume a single-use token and issue the agent's client certificate.

        The token is checked first (a read: nothing is signed or written for a wrong one); the
        certificate is then issued (it checks the CSR) but means nothing until the registry has
        consumed the token and recorded the agent, in one transaction: a token used meanwhile
        or expired leaves no agent behind.
        """
        token = token.strip()
        if not looks_like_token(token):
            raise errors.TokenInvalid("that is not a certfleet enrollment token (they start with 'cfe_')")
        if not host.hostname:
            raise errors.InvalidInput("the enrollment request names no host")
        now = self.clock()
        # the token first, in a read: a wrong one gets nothing signed and takes no write lock
        self.registry.agents.check_token(hash_token(token), now)
        agent_id = str(uuid.uuid4())
        cert = self.ca.issue_agent_certificate(csr_der, agent_id, now, lifetime=self.lifetime)
        self.registry.enroll_agent(hash_token(token), agent_id, host, serial_hex(cert), cert.not_valid_after_utc, now)
        return self._issued(agent_id, cert)

    def renew_identity(self, agent_id: str, csr_der: bytes) -> IssuedIdentity:
        """A new client certificate for an enrolled agent; the registry then accepts only it."""
        now = self.clock()
        cert = self.ca.issue_agent_certificate(csr_der, agent_id, now, lifetime=self.lifetime)
        identity = identity_from_certificate(cert)
        self.registry.update_agent_identity(agent_id, identity.serial, cert.not_valid_after_utc, now)
        log.info("renewed identity of agent %s until %s", agent_id, cert.not_valid_after_utc.isoformat())
        return self._issued(agent_id, cert)
