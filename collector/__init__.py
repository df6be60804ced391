"""certfleet collector: the registry, the gRPC server and the admin CLI."""

__version__ = "0.1.0"
