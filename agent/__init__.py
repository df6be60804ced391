"""certfleet agent: reads the host's certificate stores and reports them to the collector."""

__version__ = "0.1.0"
