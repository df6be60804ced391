"""The collector's configuration: the TOML file's tables as typed values (``core``: the
[collector] table and the shared value grammar) and the admin client's config (``client``).

Imports nothing of the collector but ``collector.errors`` and the product's value grammar
(``certfleet.values``); every other room reads its settings from here.
"""
