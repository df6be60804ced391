"""Registry tables for scheduler leases (see collector/registry/models.py for the shared metadata)."""
from __future__ import annotations
