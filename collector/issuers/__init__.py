"""Issuers: the certificate authorities the collector asks for service certificates.

- :mod:`collector.issuers.base`: the contract (:class:`Issuer`, :class:`Issued`,
  :class:`RevocationReason`, the optional abilities :class:`SupportsCRL`,
  :class:`SupportsRoot` and :class:`KnowsIssued`) and the checks every issuer runs first.
- :mod:`collector.issuers.settings`: reading an ``[issuers.<name>]`` table (a leaf).
- :mod:`collector.issuers.internal_ca` (+ ``ca_files``): a private root and intermediate.
- :mod:`collector.issuers.acme` (+ ``solvers``): RFC 8555 CAs (needs the ``acme`` package).
- :mod:`collector.issuers.factory`: ``build_issuers(config, data_dir)``, the one chooser: an
  explicit table of issuer types; it imports the issuers and nothing imports it but the
  server's composition root. Importing this package registers nothing.

May import: ``collector.errors``, ``certfleet.values``, the pure ``collector.domain`` (templates)
and ``collector.pki`` (key and certificate files). Never the registry, the services, the api
or the wire.
"""
from collector.issuers.base import (
    Issued, Issuer, IssuerError, KnowsIssued, RevocationReason, SupportsCRL, SupportsRoot,
)

__all__ = ["Issued", "Issuer", "IssuerError", "KnowsIssued", "RevocationReason", "SupportsCRL", "SupportsRoot"]
