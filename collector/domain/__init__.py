"""The collector's decisions as pure functions and value types: job states (``jobstates``), agent
commands (``commands``), auto-renewal rules (``autorules``), policy, ownership, owner scope
(``scope``), templates, certificate facts (``certinfo``), the audit chain, network-scan planning
(``netscan``), what serves what (``serving``), notices, tokens.

Nothing here does I/O or reads the clock (``now`` is passed in). May import ``collector.errors``
and ``certfleet.values`` only: never the registry, the services, the api or the wire. Every other
room may import this one.
"""
