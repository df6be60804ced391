"""The registry: models, repository and migrations.

    from collector.registry import Registry
    reg = Registry.open("sqlite:////var/lib/certfleet/registry.db")
"""
from collector.registry.ingest import ReportTxn
from collector.registry.repository import Registry

__all__ = ["Registry", "ReportTxn"]
