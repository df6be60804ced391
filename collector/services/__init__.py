"""The collector's services: renewal (request -> issue -> install -> verified), auto-renewal,
policy runs, notifications, ACME challenge brokering, enrollment, audit retention.

A service composes the pure decisions (``collector.domain``) with the registry
(``collector.registry``) and the issuers; it takes and returns domain values and dataclasses,
never wire messages (``certfleet.v1`` stops at ``collector.api``).
"""
