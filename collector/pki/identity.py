"""Who a client certificate names: an agent or an admin user with a role, carried in one URI
subject alternative name::

    certfleet:agent:<agent_id>           an agent (EKU clientAuth)
    certfleet:admin:<role>:<name>        an admin CLI user with a role
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from cryptography import x509

from collector.errors import PKIError

URI_PREFIX = "certfleet:"
AGENT_URI_PREFIX = "certfleet:agent:"
ADMIN_URI_PREFIX = "certfleet:admin:"
ADMIN_ROLES: tuple[str, ...] = ("admin", "operator", "owner", "auditor", "approver")

# Agent ids are UUIDs in practice; admin names may be e-mail-like. Both go into
# a CN (at most 64 characters) and a URI, so keep them plain printable ASCII.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")  # always used with fullmatch


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a client certificate names.

    ``kind`` is ``"agent"`` or ``"admin"``; ``name`` is the agent id or the admin
    name; ``role`` is the admin's role (``None`` for agents); ``serial`` is the
    certificate serial number as lower-case hex without separators.
    """

    kind: str
    name: str
    role: str | None
    serial: str

def check_name(value: str, what: str) -> str:
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise PKIError(
            f"{what} {value!r} is not usable: use 1-64 characters of letters, digits and . _ @ + - "
            "starting with a letter or digit"
        )
    return value



def identity_from_certificate(cert: x509.Certificate) -> Identity:
    """Who ``cert`` names, from its ``certfleet:`` URI SAN.

    This only parses: it does not check the signature or validity. Use it on
    certificates the mutual-TLS layer has already verified against the CA (or
    check first with :meth:`CollectorCA.issued`). Anything that is not exactly
    one well-formed certfleet identity raises :class:`PKIError`.
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = [u for u in san.get_values_for_type(x509.UniformResourceIdentifier) if u.startswith(URI_PREFIX)]
    except x509.ExtensionNotFound:
        uris = []
    except ValueError:
        raise PKIError("the certificate's subject alternative names cannot be parsed") from None
    if not uris:
        raise PKIError("the certificate carries no certfleet identity (no certfleet: URI name)")
    if len(uris) > 1:
        raise PKIError("the certificate carries more than one certfleet identity")
    uri = uris[0]
    serial = format(cert.serial_number, "x")
    if uri.startswith(AGENT_URI_PREFIX):
        name = uri[len(AGENT_URI_PREFIX):]
        if not NAME_RE.fullmatch(name):
            raise PKIError("the certificate's agent identity is malformed")
        return Identity(kind="agent", name=name, role=None, serial=serial)
    if uri.startswith(ADMIN_URI_PREFIX):
        role, sep, name = uri[len(ADMIN_URI_PREFIX):].partition(":")
        if not sep or role not in ADMIN_ROLES or not NAME_RE.fullmatch(name):
            raise PKIError("the certificate's admin identity is malformed or names an unknown role")
        return Identity(kind="admin", name=name, role=role, serial=serial)
    raise PKIError("the certificate's certfleet identity is of an unknown kind")


def identity_from_pem(pem: bytes | str) -> Identity:
    """:func:`identity_from_certificate` for the first certificate in PEM data
    (for example ``context.auth_context()["x509_pem_cert"][0]`` in a servicer)."""
    data = pem.encode("ascii", "replace") if isinstance(pem, str) else bytes(pem)
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError:
        raise PKIError("the client certificate is not valid PEM") from None
    return identity_from_certificate(cert)
