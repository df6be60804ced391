"""What the agent and the collector share: the wire contract (``v1``: generated stubs beside the
.proto files), the value grammar (``values``), the log formats (``logformat``) and the
``/metrics`` listener (``metricshttp``)."""
