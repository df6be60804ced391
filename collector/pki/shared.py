"""The collector CA in the registry: every collector on one database signs agent and admin
identities with the same CA, and a client enrolled through one collector is accepted by all.

The registry keeps the CA certificate and its key wrapped with the key-encryption key
(:mod:`collector.pki.keywrap`) as the issuer secret ``collector-ca``/``collector_ca``; this module
takes that store as an argument (``get_secret``/``put_secret_once``, collector/registry/issuer_state.py)
and imports nothing of the registry.

At the first start on a registry without one: a CA already in ``<data_dir>/pki`` (a collector from
before) is imported, else a new one is made; of collectors starting at once, the first insert wins
and the others load the winner's. A collector whose ``pki`` folder holds another CA than the
registry's is refused with what to do. The collector's own TLS server identity stays per collector
in ``pki/`` (signed by the shared CA).
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from collector.errors import PKIError
from collector.pki.ca import CA_CERT_FILE, CA_KEY_FILE, CollectorCA
from collector.pki.files import cert_pem, write_public_file
from collector.pki.keywrap import KeyWrapper

ISSUER, KIND = "collector-ca", "collector_ca"
AAD = "certfleet collector-ca"


def load_or_create_shared(store: Any, wrapper: KeyWrapper, pki_dir: Path, now: dt.datetime) -> CollectorCA:
    for _ in range(3):
        row = store.get_secret(ISSUER, KIND)
        if row is not None:
            return _from_row(row, wrapper, Path(pki_dir), store)
        local = Path(pki_dir)
        if (local / CA_KEY_FILE).exists() or (local / CA_CERT_FILE).exists():
            ca = CollectorCA.load_or_create(local, now)        # the CA a collector made before: imported
        else:
            ca = CollectorCA._create_in_memory(now)
        store.put_secret_once(ISSUER, KIND, wrapper.wrap_private_key(ca._key, AAD), wrapper.kek_id,
                              cert_pem(ca.certificate).decode(), now)
    raise PKIError("the collector CA could not be stored in the registry")  # pragma: no cover


def _from_row(row: tuple[bytes, str, str], wrapper: KeyWrapper, pki_dir: Path, store: Any) -> CollectorCA:
    wrapped, kek_id, public = row
    key = wrapper.unwrap_private_key(wrapped, AAD)
    cert = x509.load_pem_x509_certificate(public.encode())
    ca = CollectorCA(key, cert, pki_dir)  # type: ignore[arg-type]
    local = pki_dir / CA_CERT_FILE
    if local.exists():
        try:
            mine = x509.load_pem_x509_certificate(local.read_bytes())
        except ValueError:
            mine = None
        if mine is not None and mine != cert:
            raise PKIError(
                f"{local} holds another collector CA than the registry's (fingerprint {ca.fingerprint_sha256}): "
                f"this collector's agents enrolled under it would be refused by the others. Move {pki_dir} "
                "away to use the registry's CA (its agents enroll again), or start it on its own database")
    else:   # the public certificate, for operators and tools that read pki/ca.pem (never the key)
        pki_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_public_file(local, cert_pem(cert))
    if kek_id != wrapper.kek_id and hasattr(store, "rewrap_secret"):
        store.rewrap_secret(ISSUER, KIND, kek_id, wrapper.wrap_private_key(key, AAD), wrapper.kek_id)
    return ca


def key_der(ca: CollectorCA) -> bytes:   # for tests that look for the key in the database
    return ca._key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
