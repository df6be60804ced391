"""TLS endpoints: many handshakes at once, and how they are configured.

- :mod:`agent.endpoints.survey`: :class:`Target`, :class:`Observation`, ``probe_many`` (concurrency,
  rate limit, a hard timeout per handshake) and ``survey`` (a pass without SNI, then one per name).
- :mod:`agent.endpoints.starttls`: SMTP, IMAP and POP3 up to the TLS handshake.
- :mod:`agent.endpoints.settings`: the ``[endpoints]`` section.

Used by the endpoint location source (:mod:`agent.sources.endpoints`), network scans
(:mod:`agent.netscan`) and the stale check (:mod:`agent.discovery`). May import
:mod:`agent.errors` and :mod:`agent.probe`; nothing here imports :mod:`agent.config`.
"""
