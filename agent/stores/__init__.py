"""Certificate store formats: read every certificate in a file, write a renewed entry back.

The room:

- :mod:`agent.stores.base`: the contracts, :class:`StoreReader` and :class:`StoreWriter`
  (and :class:`ReadContext`, :class:`NewEntry`, :class:`WriteTarget`); it imports no format.
- one module per format, each with its reader and its writer: :mod:`~agent.stores.pem`,
  :mod:`~agent.stores.der`, :mod:`~agent.stores.pkcs12`, :mod:`~agent.stores.jks` (JKS and
  JCEKS); they import the contracts and the helpers (:mod:`~agent.stores.sniff`,
  :mod:`~agent.stores.keys`, :mod:`~agent.stores.asn1`), never each other's choice.
- :mod:`agent.stores.files`: store files on disk (atomic replace keeping owner and mode,
  finding a certificate's key file), for the install pipeline.
- this module: the only chooser. :func:`reader_for` / :func:`writer_for` give the reader
  and writer of a store type, and route by content where the name and the content
  disagree: ``auto`` detects the format; a JKS/JCEKS file configured as ``pkcs12`` is read
  as JKS, a PKCS#12 file configured or found as ``jks`` (keytool's default since Java 9)
  is read and written as PKCS#12. Nothing imports this module back from inside the room.

Adding a format: a module with its reader and writer, and one line in each table below.
"""
from __future__ import annotations

from typing import Mapping

from agent.errors import StoreWriteError
from agent.inventory import FoundCert
from agent.stores.base import (KeystoreWriter, NewEntry, ReadContext, StoreReader, StoreReadError, StoreWriter,
                               WriteTarget)
from agent.stores.der import DerReader, DerWriter
from agent.stores.jks import JksReader, JksWriter
from agent.stores.pem import PemReader, PemWriter
from agent.stores.pkcs12 import Pkcs12Reader, Pkcs12Writer
from agent.stores.sniff import JCEKS_MAGIC, JKS_MAGIC, sniff, type_from_name

__all__ = [
    "ReadContext", "StoreReader", "StoreReadError", "StoreWriter", "NewEntry", "WriteTarget", "reader_for",
    "writer_for", "sniff", "type_from_name", "PemReader", "DerReader", "Pkcs12Reader", "JksReader", "AutoReader",
    "READERS", "WRITERS",
]

_PEM, _DER, _P12, _JKS = PemReader(), DerReader(), Pkcs12Reader(), JksReader()
_JAVA_MAGICS = (JKS_MAGIC, JCEKS_MAGIC)

#: what ``sniff`` finds -> the reader of that content
_BY_CONTENT: dict[str, StoreReader] = {
    "pem": _PEM, "der": _DER, "pkcs7": _DER, "pkcs12": _P12, "jks": _JKS, "jceks": _JKS,
}


class AutoReader(StoreReader):
    """Detects PEM, DER (and DER PKCS#7), PKCS#12, JKS and JCEKS by content.

    Content no reader recognises is ``corrupt`` when the file's name promises a
    certificate store (``.pem``, ``.p12``, ``.jks`` ...) and ``unsupported``
    otherwise.
    """

    store_type = "auto"

    def read(self, path: str, data: bytes, ctx: ReadContext) -> list[FoundCert]:
        """Entries of ``data``, read by the reader its content calls for."""
        if data.startswith(b"-----BEGIN "):          # the common case, first
            return _PEM.read(path, data, ctx)
        kind = sniff(data)
        if kind is None:
            named = type_from_name(path)
            if named is not None:
                raise StoreReadError(
                    "corrupt", f"the content is not a certificate store, although the name suggests {named}",
                    named,
                )
            raise StoreReadError("unsupported", "the content is not a recognised certificate store format", "auto")
        return _BY_CONTENT[kind].read(path, data, ctx)


class _KeystoreReader(StoreReader):
    """A keystore type as configured, read by the reader its content calls for (JKS/JCEKS <-> PKCS#12)."""

    def __init__(self, configured: StoreReader) -> None:
        self.configured = configured
        self.store_type = configured.store_type

    def read(self, path: str, data: bytes, ctx: ReadContext) -> list[FoundCert]:
        if data[:4] in _JAVA_MAGICS:
            return _JKS.read(path, data, ctx)           # a JKS/JCEKS file configured as pkcs12
        if self.configured is _JKS and sniff(data) == "pkcs12":
            return _P12.read(path, data, ctx)           # keytool's PKCS#12 default in a .jks
        return self.configured.read(path, data, ctx)


class _KeystoreWriter(KeystoreWriter):
    """A JKS/JCEKS location whose file holds PKCS#12 (keytool's default) is rewritten as PKCS#12."""

    store_types = ("jks", "jceks")

    def __init__(self) -> None:
        self._jks, self._p12 = JksWriter(), Pkcs12Writer()

    def render(self, target: WriteTarget, current: Mapping[str, bytes], entry: NewEntry) -> dict[str, bytes]:
        loc = self.entry_location(target)
        writer = self._jks if current[loc.path][:4] in _JAVA_MAGICS else self._p12
        return writer.render(target, current, entry)


#: configured (or found) store type -> reader
READERS: dict[str, StoreReader] = {
    "pem": _PEM, "der": _DER, "pkcs12": _KeystoreReader(_P12), "jks": _KeystoreReader(_JKS),
    "jceks": _KeystoreReader(_JKS), "auto": AutoReader(),
}
#: a location's store type -> writer
WRITERS: dict[str, StoreWriter] = {
    "pem": PemWriter(), "der": DerWriter(), "pkcs12": Pkcs12Writer(), "jks": _KeystoreWriter(),
    "jceks": _KeystoreWriter(),
}


def reader_for(store_type: str) -> StoreReader:
    """The reader for a configured store type; KeyError for unknown types."""
    return READERS[store_type]


def writer_for(store_type: str) -> StoreWriter:
    """The writer for a location's store type (pem, der, pkcs12, jks, jceks)."""
    try:
        return WRITERS[store_type]
    except KeyError:
        raise StoreWriteError(f"certfleet cannot write {store_type!r} stores") from None
