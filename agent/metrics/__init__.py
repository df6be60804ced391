"""The agent's metrics room: exporter mode (``[metrics] listen``, off by default).

- ``recorder``: the :class:`ScanObserver` contract the sync loop and the service tell what they
  scanned, reported and installed, and :data:`NULL`, which does nothing. A leaf.
- ``settings``: the ``[metrics]`` table.
- ``exporter``: :class:`Exporter`, the observer that keeps the last scan's certificates and
  serves them like x509-certificate-exporter (``x509_cert_not_after`` ... per certificate,
  ``x509_cert_error`` per unreadable file) with the agent's own figures; :func:`watch`, the
  scan loop of ``certfleet-agent exporter`` for a host that reports to no collector.

May import: prometheus_client, cryptography, :mod:`agent.inventory`, :mod:`agent.scan`,
:mod:`certfleet`; the composition root (agent/service.py) and the CLI choose it.
"""
