"""The ``auto`` store type: pick the reader from the file's content."""
from __future__ import annotations

from agent.inventory import FoundCert
from agent.stores.base import ReadContext, StoreReader, StoreReadError
from agent.stores.der import DerReader
from agent.stores.jks import JksReader
from agent.stores.pem import PemReader
from agent.stores.pkcs12 import Pkcs12Reader
from agent.stores.sniff import sniff, type_from_name

_PEM = PemReader()
_DER = DerReader()
_P12 = Pkcs12Reader()
_JKS = JksReader()
_BY_KIND: dict[str, StoreReader] = {
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
        return _BY_KIND[kind].read(path, data, ctx)
