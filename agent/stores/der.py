"""DER files: one certificate, or a DER PKCS#7 bundle (.p7b). Reader and writer.

The writer rewrites single DER certificates (not PKCS#7 bundles); their key lives in a
PEM key file, rewritten as :class:`~agent.stores.pem.PemWriter` does.
"""
from __future__ import annotations

import warnings
from typing import Mapping

from agent.errors import StoreWriteError
from agent.inventory import FoundCert
from agent.stores.base import NewEntry, ReadContext, StoreReader, StoreReadError, WriteTarget, der_length_check
from agent.stores.keys import why as _why
from agent.stores.pem import PemWriter, pem_blocks, rewrite_chain_file, rewrite_pem
from agent.stores.sniff import hint, sniff

__all__ = ["DerReader", "DerWriter"]


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
        except Exception as e:  # noqa: BLE001 - untrusted input: InvalidVersion, DuplicateExtension... too
            raise StoreReadError("corrupt", f"the PKCS#7 bundle cannot be parsed ({_why(e)})", "der") from None
        if not certs:
            raise StoreReadError("no_certificates", "the PKCS#7 bundle holds no certificates", "der")
        enc = serialization.Encoding.DER
        return [ctx.found("der", path, "", i, c.public_bytes(enc)) for i, c in enumerate(certs)]


class DerWriter(PemWriter):
    """A DER certificate file (its key, if any, in a PEM key file)."""

    store_types = ("der",)

    def render(self, target: WriteTarget, current: Mapping[str, bytes], entry: NewEntry) -> dict[str, bytes]:
        loc = target.location
        if loc.chain_index != 0 or current[loc.path][:1] != b"\x30":
            raise StoreWriteError(f"{loc.path}: only single DER certificates are rewritten (not PKCS#7 bundles)")
        if not target.key_file:
            raise StoreWriteError(f"{loc.path}: a DER certificate holds no key and no key file is named; "
                                  "the new key would be lost")
        out = {loc.path: entry.cert_der}
        key_data = current[target.key_file]
        if not any(b.is_key for b in pem_blocks(key_data)):
            raise StoreWriteError(f"{target.key_file}: the key file holds no PEM private key")
        out[target.key_file] = rewrite_pem(key_data, entry, target, target.key_file, replace_certs=False)
        if target.chain_file:
            out[target.chain_file] = rewrite_chain_file(current[target.chain_file], entry, target.chain_file)
        return out
