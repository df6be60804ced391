"""Registry tables for audit (see collector/registry/models.py for the shared metadata)."""
from __future__ import annotations
