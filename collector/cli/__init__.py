"""The admin CLI (`certfleet`): a client of the collector's gRPC admin API, in its own wing.

Holds the command modules, one per concern (``tokens``, ``certs``, ``agents``, ``renew``, ``jobs``,
``revoke``, ``audit``, ``owners``, ``policy``, ``notify``, ``reports``, ``netscan``), each with its
output shaping and its own door to the wire (the request and response messages it builds and
reads); the calling convention they share (``command``: ``register(subparsers)`` and handlers
``(channel, ns) -> exit code``); the values read from the command line (``args``), the shared
output helpers (``format``), the channel (``connect``) and the composition root (``main``: parser,
client config, channel, dispatch, exit codes).

It never imports the registry, the services, the servicers or the server: everything it knows
comes over the admin API. May import: ``certfleet.v1`` (the client side of the wire),
``certfleet.values``, ``collector.config.client`` (its config file) and ``collector.config.core``
(``parse_duration``, the product's one duration grammar), ``collector.errors``, the pure
``collector.domain`` decisions and the ``collector.reports`` model, text helpers, renderer and
wire codec.
"""

import os

# gRPC's C core writes its own lines to stderr (e.g. "I1208 ... chttp2_transport.cc ... Got goaway" when
# the collector goes away mid-call), before the CLI's one plain-words error line: a script reading
# stderr, or a person, gets transport noise. The CLI says what failed itself; GRPC_VERBOSITY set in
# the environment (e.g. "debug" when chasing a transport problem) still wins. Set before grpc loads.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")
