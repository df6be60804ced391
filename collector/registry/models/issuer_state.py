"""Registry tables for the issuers' own state, shared by every collector on the database
(on the shared ``Base``: models/base.py).

- ``ca_hierarchies``: one row per internal CA issuer (``[issuers.<name>]``): the root and
  intermediate certificates (PEM), where the issuing key lives (``key_store``: ``kek`` for a
  key wrapped with the key-encryption key, ``pkcs11`` for a key in a token, whose label is
  then in ``key_ref``) and the wrapped keys themselves (never the key in the clear),
  the CRL number and the current CRL (DER) with its ``nextUpdate``; ``revision`` moves on
  each revocation so every collector knows its cached CRL is old.
- ``ca_issued``: the serial log: every certificate an internal CA signed (serials are
  unique per issuer: the primary key is the allocation).
- ``ca_revoked``: the revocations, whichever collector recorded them.
- ``issuer_secrets``: other per-issuer secrets (the ACME account key), wrapped like the
  CA keys, one row per (issuer, kind).
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Optional

from sqlalchemy import BigInteger, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from collector.registry.models.base import Base, Blob


class CAHierarchy(Base):
    __tablename__ = "ca_hierarchies"

    issuer: Mapped[str] = mapped_column(String(128), primary_key=True)
    origin: Mapped[str] = mapped_column(String(16))            # generated | imported | migrated
    root_pem: Mapped[str] = mapped_column(Text)
    chain_pem: Mapped[str] = mapped_column(Text)               # the issuing intermediate first
    key_store: Mapped[str] = mapped_column(String(16))         # kek | pkcs11
    key_ref: Mapped[bytes] = mapped_column(Blob)               # wrapped issuing key, or the token label
    root_key_ref: Mapped[Optional[bytes]] = mapped_column(Blob)   # wrapped root key (generated mode)
    kek_id: Mapped[str] = mapped_column(String(64))            # which KEK wrapped the keys ("" for pkcs11)
    created_at: Mapped[dt.datetime]
    created_by: Mapped[str] = mapped_column(String(255))
    crl_number: Mapped[int] = mapped_column(BigInteger)
    revision: Mapped[int] = mapped_column(BigInteger)          # + 1 on each revocation change
    crl_der: Mapped[Optional[bytes]] = mapped_column(Blob)
    crl_revision: Mapped[int] = mapped_column(BigInteger)      # the revision crl_der lists
    crl_next_update: Mapped[Optional[dt.datetime]]


class CAIssued(Base):
    __tablename__ = "ca_issued"

    issuer: Mapped[str] = mapped_column(String(128), primary_key=True)
    serial: Mapped[str] = mapped_column(String(64), primary_key=True)   # hex
    fingerprint: Mapped[str] = mapped_column(String(64))
    not_after: Mapped[dt.datetime]
    names: Mapped[list[Any]]
    template: Mapped[str] = mapped_column(String(128))
    issued_at: Mapped[dt.datetime]
    issued_by: Mapped[str] = mapped_column(String(255))


class CARevoked(Base):
    __tablename__ = "ca_revoked"

    issuer: Mapped[str] = mapped_column(String(128), primary_key=True)
    serial: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[int] = mapped_column(Integer)
    revoked_at: Mapped[dt.datetime]
    not_after: Mapped[dt.datetime]


class IssuerSecret(Base):
    __tablename__ = "issuer_secrets"

    issuer: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)     # e.g. acme_account_key
    wrapped: Mapped[bytes] = mapped_column(Blob)
    kek_id: Mapped[str] = mapped_column(String(64))
    public: Mapped[str] = mapped_column(Text)                           # e.g. the ACME account URL
    created_at: Mapped[dt.datetime]


ca_hierarchies = CAHierarchy.__table__
ca_issued = CAIssued.__table__
ca_revoked = CARevoked.__table__
issuer_secrets = IssuerSecret.__table__
