"""Location sources: what a report holds besides the store files.

- :mod:`agent.sources.base`: the contract (:class:`~agent.sources.base.LocationSource`,
  :class:`~agent.sources.base.SourceResult`, :class:`~agent.sources.base.SourceError`).
- :mod:`agent.sources.endpoints`: TLS endpoints (local listeners, ``[endpoints] targets``,
  network scan results).
- :mod:`agent.sources.windows_store`: the Windows certificate store and the IIS / http.sys
  bindings that serve its certificates.

The sources import the contract and their feature (:mod:`agent.endpoints`,
:mod:`agent.netscan`, :mod:`agent.windows`); the contract imports no source. Which
sources run is chosen in one place, the agent's composition root (:mod:`agent.service`).
Adding a source: its module here, and one line in ``agent.service.build_sources``.
"""
