"""Scanning the file stores: which files the configured globs name, walking to them, reading them.

- :mod:`agent.scan.globs`: globs and excludes, compiled for a pruning walk; which store covers
  a path (``AgentConfig.store_for``). Imports nothing of the agent.
- :mod:`agent.scan.walk`: the walk of one store's globs (links, loops, unreadable directories).
- :mod:`agent.scan.trust`: trust stores (/etc/ssl/certs, a JVM's cacerts) and the role of their entries.
- :mod:`agent.scan.scanner`: :class:`~agent.scan.scanner.Scanner`, one ``FileScan`` per file, with the
  unchanged-file cache.
- :mod:`agent.scan.filescan`: ``FileScan``, and a large PEM file read in parts (bounded memory).

May import: :mod:`agent.config`, :mod:`agent.inventory`, :mod:`agent.errors` and the store
formats' chooser (:mod:`agent.stores`). Nothing here talks to the collector.
"""
