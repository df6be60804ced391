"""The metrics room: what the collector tells Prometheus on ``/metrics``.

- ``recorder``: the small :class:`Recorder` contract the services are handed (renewal outcomes,
  report ingest, notification deliveries, scheduler runs, database errors) and a
  :data:`NULL` recorder that does nothing. A leaf: imports nothing else of the collector.
- ``instruments``: :class:`PromRecorder`, the Recorder on ``prometheus_client`` counters and
  histograms, kept per process.
- ``fleet``: :class:`FleetCollector`, the gauges read from the registry at scrape time through
  aggregate queries (collector/registry/fleetstats.py), and the owner/environment breakdown
  refreshed in the background (:class:`OwnerBreakdown`).
- ``interceptor``: the gRPC server interceptor counting calls by method and code.
- the ``/metrics`` listener itself is shared with the agent: certfleet/metricshttp.py.

Label sets are bounded (see README "Metrics and alerts"): never a label per certificate,
location, agent or job. The composition root (collector/server/server.py) builds the
``prometheus_client`` registry and hands the recorder to the services.

May import: prometheus_client, grpc, the registry and the reports' ownership walk
(collector/reports/assigned.py); never the api's servicers, the wire stubs or the server.
"""
