"""The registry room: the collector's only state, on SQLite or PostgreSQL (SQLAlchemy Core, Alembic).

    from collector.registry import Registry
    reg = Registry.open("sqlite:////var/lib/certfleet/registry.db")
    reg.get_certificate("3f2a9c"), reg.jobs.create_renewals(...), reg.owners.list_rules(), ...

What it holds:

- ``repository.Registry``: the facade; it only composes the stores below on one engine.
- the stores, one per concern, each usable alone on an engine: ``certificates``,
  ``agents``, ``admins``, ``jobs`` (with ``job_requests``, ``job_rows``), ``owners``,
  ``policies``, ``netscans``, ``serving``, ``expiry``, ``notify``, ``leases``, ``audit``,
  ``coverage``; storing an agent's report is ``ingest`` (with ``bulk``, ``issuer_links``).
  A store may use the stores under it (owners reads certificates; policies reads
  certificates, owners and agents), never the facade.
- ``types``: the plain records the registry takes and returns; ``models/``: the tables;
  ``migrations/``: the Alembic scripts that make them; ``db``: engines and migrating;
  ``sql``, ``lookup``: statement helpers and id lookups shared by the stores.

What it may import: SQLAlchemy, Alembic, the pure ``collector.domain`` and
``collector.errors``. Never the wire stubs (``certfleet.v1``), the services, the api or the
server: they call the registry, with and for dataclasses.
"""
from collector.registry.ingest import ReportTxn
from collector.registry.repository import Registry

__all__ = ["Registry", "ReportTxn"]
