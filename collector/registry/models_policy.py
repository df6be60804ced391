"""Registry tables for policy (see collector/registry/models.py for the shared metadata)."""
from __future__ import annotations
