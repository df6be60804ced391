"""Registry tables for notify (see collector/registry/models.py for the shared metadata)."""
from __future__ import annotations
