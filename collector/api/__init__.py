"""The collector's door to the wire: the gRPC servicers, the conversions and the report codec.

A servicer is thin: who is calling (``auth``), then a service or the registry, with messages
converted here (``convert``, ``report_codec``) and domain errors turned into status codes
(``errors``). ``routes`` registers every servicer on a ``grpc.aio`` server for the composition root.

The only room of the collector's server side that imports ``certfleet.v1``. May import the
services, the registry, the domain, ``collector.reports`` and ``collector.pki``; never the server.
"""
