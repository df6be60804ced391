"""Registry tables for owners (see collector/registry/models.py for the shared metadata)."""
from __future__ import annotations
