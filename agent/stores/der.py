"""DER files: one certificate, or a DER PKCS#7 bundle (.p7b)."""
from __future__ import annotations

import warnings

from agent.inventory import FoundCert
from agent.stores.base import ReadContext, StoreReader, StoreReadError, der_length_check
from agent.stores.keys import KEY_ERRORS
from agent.stores.sniff import hint, sniff


class DerReader(StoreReader):
    """Reads DER certificates and DER PKCS#7 bundles (``store_type`` "der")."""

    store_type = "der"

    def read(self, path: str, data: bytes, ctx: ReadContext) -> list[FoundCert]:
        """The certificate (or the PKCS#7 bundle's certificates) in ``data``."""
        kind = sniff(data)
        if kind == "pkcs7":
            return self._pkcs7(path, data, ctx)
        problem = der_length_check(data)
        if problem == "truncated":
            raise StoreReadError("truncated", "the DER certificate is cut short", "der")
        if problem is not None or kind != "der":
            raise StoreReadError("corrupt", "the file is not a DER certificate" + hint(data, "der"), "der")
        return [ctx.found("der", path, "", 0, data)]

    @staticmethod
    def _pkcs7(path: str, data: bytes, ctx: ReadContext) -> list[FoundCert]:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.serialization import pkcs7

        if der_length_check(data) == "truncated":
            raise StoreReadError("truncated", "the PKCS#7 bundle is cut short", "der")
        try:
            with warnings.catch_warnings():
                # openssl writes the certificate SET unsorted (BER); cryptography warns and copes
                warnings.simplefilter("ignore", UserWarning)
                certs = pkcs7.load_der_pkcs7_certificates(data)
        except KEY_ERRORS:
            raise StoreReadError("corrupt", "the PKCS#7 bundle cannot be parsed", "der") from None
        if not certs:
            raise StoreReadError("no_certificates", "the PKCS#7 bundle holds no certificates", "der")
        enc = serialization.Encoding.DER
        return [ctx.found("der", path, "", i, c.public_bytes(enc)) for i, c in enumerate(certs)]
