"""Store readers: one module per store format behind :class:`StoreReader`.

``reader_for(type)`` gives the reader for a configured store type (pem, der,
pkcs12, jks, auto).
"""
from __future__ import annotations

from agent.stores.base import ReadContext, StoreReader, StoreReadError
from agent.stores.der import DerReader
from agent.stores.detect import AutoReader
from agent.stores.jks import JksReader
from agent.stores.pem import PemReader
from agent.stores.pkcs12 import Pkcs12Reader
from agent.stores.sniff import sniff, type_from_name

__all__ = [
    "ReadContext", "StoreReader", "StoreReadError", "reader_for", "sniff", "type_from_name",
    "PemReader", "DerReader", "Pkcs12Reader", "JksReader", "AutoReader",
]

_READERS: dict[str, StoreReader] = {
    "pem": PemReader(), "der": DerReader(), "pkcs12": Pkcs12Reader(), "jks": JksReader(),
    "jceks": JksReader(), "auto": AutoReader(),
}


def reader_for(store_type: str) -> StoreReader:
    """The reader for a configured store type; KeyError for unknown types."""
    return _READERS[store_type]
