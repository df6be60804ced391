"""The collector's own PKI: its certificate authority for agent and admin identities, who a client
certificate names, and how key and certificate files are written and read.

- ``ca``: :class:`CollectorCA` (``<data_dir>/pki``: the CA, the server identity of the listeners;
  agent and admin certificates);
- ``identity``: :class:`Identity`, read from a client certificate's ``certfleet:`` URI;
- ``files``: atomic private and public file writes, key and certificate reading (the issuers'
  CA files use them too).

This package's namespace is its public API (what the api, the services, the issuers and the
server's command line use). Imports nothing of the collector but ``collector.errors``.
"""
from collector.pki.ca import CollectorCA
from collector.pki.files import (
    PrivateKey, check_private_mode, fingerprint_sha256, read_certificates, read_private_key, same_public_key,
    write_private_file, write_public_file,
)
from collector.pki.identity import ADMIN_ROLES, Identity, identity_from_certificate, identity_from_pem

__all__ = [
    "ADMIN_ROLES", "CollectorCA", "Identity", "PrivateKey", "check_private_mode", "fingerprint_sha256", "identity_from_certificate",
    "identity_from_pem", "read_certificates", "read_private_key", "same_public_key", "write_private_file",
    "write_public_file",
]
