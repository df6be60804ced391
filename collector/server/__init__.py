"""The collector process: its composition root (``server``: the registry, issuers, services and
servicers put together and served), the leased scheduler, and the command line
(``main``: `certfleet-collector serve | init-admin | ...`).

The only room that chooses implementations; nothing else imports it.
"""
