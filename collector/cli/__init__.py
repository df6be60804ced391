"""The admin CLI (`certfleet`): a client of the collector's gRPC admin API, in its own wing.

Holds the command modules (one per command group), their output formatting and the client's
own door to the wire (the request and response messages it builds and reads). It never imports
the registry, the services or the servicers: everything it knows comes over the admin API.
May import: ``certfleet.v1`` (the client side of the wire), ``certfleet.values``,
``collector.config.client``, ``collector.errors`` and the pure ``collector.domain`` /
``collector.reports`` rendering helpers.
"""
