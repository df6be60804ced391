"""The collector's decisions as pure functions and value types: job states, policy, ownership,
owner scope, templates, certificate facts, the audit chain, network-scan planning, notices, tokens.

Nothing here does I/O or reads the clock (``now`` is passed in), and nothing imports the
registry, the services, the api or the wire: every other room may import this one.
"""
