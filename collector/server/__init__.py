"""The collector process: its composition root (``server``: the registry, issuers, services and
servicers made from the typed config and served, the servicers registered through
``collector.api.routes``), the leased scheduler, and the command line (``main``:
``certfleet-collector serve | init-admin | ca-fingerprint``).

The only room that chooses implementations (the issuer factory, the channels, the services and
servicers it wires together); it may import every other room of the server side, and nothing
imports it. It imports no wire stubs: ``collector.api`` is the door.
"""
