"""The Windows platform layer: the one boundary that calls Windows, and pure parsers of what it returns.

- :mod:`agent.windows.api`: the boundary (:class:`~agent.windows.api.WindowsApi`): crypt32/ncrypt
  through ctypes, ``appcmd`` and ``netsh`` as argument lists. The only module that calls Windows.
- :mod:`agent.windows.records`: certificate store records, captures, thumbprints, key blobs.
- :mod:`agent.windows.sslcert`: http.sys SSL bindings (``netsh http show sslcert``).
- :mod:`agent.windows.sites`: IIS sites (``appcmd``) and the bindings they serve.
- :mod:`agent.windows.settings`: the ``[windows]`` section.
- :mod:`agent.windows.errors`: this layer's error tree.

Platform only: what uses it lives in its own room (the store as a location source,
:mod:`agent.sources.windows_store`; installing into it, :mod:`agent.install.windows`).
Everything but ``api`` is plain Python, imported and tested anywhere. May import
:mod:`agent.errors` and :mod:`agent.inventory`.
"""
