"""Issuers: the certificate authorities the collector asks for service certificates.

- :mod:`collector.issuers.base`: the interface (:class:`Issuer`, :class:`Issued`,
  :class:`RevocationReason`, optional :class:`SupportsCRL`) and shared checks.
- :mod:`collector.issuers.internal_ca`: a private root and intermediate.
- :mod:`collector.issuers.acme`: RFC 8555 CAs (needs the ``acme`` package).
- :mod:`collector.issuers.factory`: ``build_issuers(config, data_dir)``, an
  explicit table of issuer types; importing this package registers nothing.
"""
from collector.issuers.base import Issued, Issuer, IssuerError, RevocationReason, SupportsCRL

__all__ = ["Issued", "Issuer", "IssuerError", "RevocationReason", "SupportsCRL"]
