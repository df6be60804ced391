"""An internal CA's state in the registry, so that every collector on the database is the same CA.

:class:`SharedCAState` joins the registry room (collector/registry/issuer_state.py, which holds
plain rows) and the key-encryption key (keywrap.py): it turns a row into a
:class:`~collector.issuers.ca_files.Hierarchy` (unwrapping the issuing key, rewrapping it when
the KEK was rotated) and makes the one hierarchy of an issuer when the registry has none,
under the registry's lock:

1. ``<data_dir>/issuers/<name>/`` holds a hierarchy made by a collector before its state moved
   to the registry: it is imported with its serial log and revocations (``state.sqlite3``),
   origin ``migrated``; the files stay where they were (delete them once ``ca status`` shows the
   row, see packaging/DEPLOYMENT.md);
2. imported mode (``root_cert`` etc. in the config): the files are read, origin ``imported``;
3. otherwise a new root and intermediate, origin ``generated``.
"""
from __future__ import annotations

import datetime as dt
import json
import secrets
import sqlite3
from pathlib import Path
from typing import Any, Callable

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from collector.errors import IssuerError
from collector.issuers.ca_files import INTERMEDIATE_CERT_FILE, ROOT_KEY_FILE, Hierarchy, load_generated
from collector.pki.keywrap import KeyWrapper
from collector.pki import read_private_key, same_public_key
from collector.registry.issuer_state import HierarchyRow, IssuedRow, IssuerStateStore, RevokedRow

LEGACY_STATE = "state.sqlite3"


def _pem(certs: tuple[x509.Certificate, ...] | list[x509.Certificate]) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


def _utc(s: str) -> dt.datetime:
    t = dt.datetime.fromisoformat(s)
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


class SharedCAState:
    """One internal CA issuer's hierarchy, serial log and revocations in the registry."""

    def __init__(self, store: IssuerStateStore, wrapper: KeyWrapper, issuer: str, holder: str,
                 legacy_dir: Path, token: Any = None) -> None:
        self.store = store
        self.token = token          # a Pkcs11Token ([keys.pkcs11]): new hierarchies get their keys there
        self.wrapper = wrapper
        self.issuer = issuer
        self.holder = holder
        self.legacy_dir = Path(legacy_dir)

    def __repr__(self) -> str:
        return f"SharedCAState(issuer={self.issuer!r}, kek_id={self.wrapper.kek_id!r})"

    def _aad(self, role: str) -> str:
        return f"certfleet ca {self.issuer} {role}"

    def exists(self) -> bool:
        return self.store.get(self.issuer) is not None

    def load_or_create(self, imported: Callable[[], Hierarchy] | None,
                       generate: Callable[..., tuple[Hierarchy, Any]], now: dt.datetime) -> tuple[Hierarchy, str]:
        """The hierarchy (made once per registry when there is none); (hierarchy, origin)."""
        row = self.store.get(self.issuer)
        if row is None:
            row, _ = self.store.create_once(self.issuer, lambda conn: self._make(conn, imported, generate, now))
        return self._hierarchy(row), row.origin

    def _make(self, conn: Any, imported: Callable[[], Hierarchy] | None,
              generate: Callable[..., tuple[Hierarchy, Any]], now: dt.datetime) -> HierarchyRow:
        root_key = None
        if (self.legacy_dir / INTERMEDIATE_CERT_FILE).exists() and imported is None:
            h, origin = load_generated(self.legacy_dir), "migrated"
            rk = self.legacy_dir / ROOT_KEY_FILE
            if rk.exists():
                root_key = read_private_key(rk, IssuerError, what="a CA key")
            self._import_legacy_log(conn)
        elif imported is not None:
            h, origin = imported(), "imported"
            if (self.legacy_dir / LEGACY_STATE).exists():
                self._import_legacy_log(conn)
        elif self.token is not None:
            (h, root_key), origin = generate(self._token_key), "generated"
            return HierarchyRow(
                issuer=self.issuer, origin=origin, root_pem=_pem([h.root]), chain_pem=_pem(h.intermediates),
                key_store="pkcs11", key_ref=h.key.label.encode(), root_key_ref=root_key.label.encode(),
                kek_id="", created_at=now, created_by=self.holder)
        else:
            (h, root_key), origin = generate(), "generated"
        return HierarchyRow(
            issuer=self.issuer, origin=origin, root_pem=_pem([h.root]), chain_pem=_pem(h.intermediates),
            key_store="kek", key_ref=self.wrapper.wrap_private_key(h.key, self._aad("issuing")),
            root_key_ref=self.wrapper.wrap_private_key(root_key, self._aad("root")) if root_key is not None else None,
            kek_id=self.wrapper.kek_id, created_at=now, created_by=self.holder)

    def _token_key(self, root: bool) -> Any:
        label = f"certfleet-{self.issuer}-{'root' if root else 'issuing'}-{secrets.token_hex(4)}"
        return self.token.generate(label)

    def _import_legacy_log(self, conn: Any) -> None:
        path = self.legacy_dir / LEGACY_STATE
        if not path.exists():
            return
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            issued = [IssuedRow(s, fp, _utc(na), json.loads(names), tpl, _utc(at), "migrated")
                      for s, fp, na, names, tpl, at in db.execute(
                          "SELECT serial, fingerprint, not_after, names, template, issued_at FROM issued")]
            revoked = [RevokedRow(s, int(r), _utc(at), _utc(na)) for s, r, at, na in db.execute(
                "SELECT serial, reason, revoked_at, not_after FROM revoked")]
        except sqlite3.Error as e:
            raise IssuerError(f"{path}: cannot read the old serial log ({e})") from None
        finally:
            db.close()
        IssuerStateStore.import_log(conn, self.issuer, issued, revoked)

    def _hierarchy(self, row: HierarchyRow) -> Hierarchy:
        root = x509.load_pem_x509_certificate(row.root_pem.encode())
        chain = tuple(x509.load_pem_x509_certificates(row.chain_pem.encode()))
        if row.key_store == "pkcs11":
            if self.token is None:
                raise IssuerError(f"issuer {self.issuer!r}: its key is in a PKCS#11 token; give this collector "
                                  "the same [keys.pkcs11] as the others")
            key = self.token.key(bytes(row.key_ref).decode())
            if not same_public_key(key, chain[0]):
                raise IssuerError(f"issuer {self.issuer!r}: the token's key does not belong to its intermediate")
            return Hierarchy(key=key, issuing=chain[0], intermediates=chain, root=root)
        if row.key_store != "kek":
            raise IssuerError(f"issuer {self.issuer!r}: its key is in {row.key_store!r}, which this collector "
                              "does not know")
        key = self.wrapper.unwrap_private_key(row.key_ref, self._aad("issuing"))
        if not same_public_key(key, chain[0]):
            raise IssuerError(f"issuer {self.issuer!r}: the stored key does not belong to its intermediate")
        if row.kek_id != self.wrapper.kek_id:      # KEK rotated: rewrap under the current one
            root_ref = None
            if row.root_key_ref is not None:
                root_ref = self.wrapper.wrap_private_key(
                    self.wrapper.unwrap_private_key(row.root_key_ref, self._aad("root")), self._aad("root"))
            self.store.rewrap(self.issuer, row.kek_id, self.wrapper.wrap_private_key(key, self._aad("issuing")),
                              root_ref, self.wrapper.kek_id)
        return Hierarchy(key=key, issuing=chain[0], intermediates=chain, root=root)  # type: ignore[arg-type]

    # -- the log ------------------------------------------------------------------------------------

    def record_issued(self, serial: str, fingerprint: str, not_after: dt.datetime, names: list[str],
                      template: str, now: dt.datetime) -> bool:
        return self.store.record_issued(self.issuer, IssuedRow(serial, fingerprint, not_after, list(names),
                                                               template, now, self.holder))


def shared_private_key(store: IssuerStateStore, wrapper: KeyWrapper, issuer: str, kind: str,
                       make: Callable[[], Any], legacy_file: Path, now: dt.datetime) -> Any:
    """The issuer's key ``kind`` (e.g. the ACME account key) from the registry, wrapped with the KEK:
    made once per registry (the first insert wins; an older collector's ``legacy_file`` is imported)."""
    aad = f"certfleet {kind} {issuer}"
    for _ in range(3):
        row = store.get_secret(issuer, kind)
        if row is not None:
            wrapped, kek_id, _public = row
            key = wrapper.unwrap_private_key(wrapped, aad)
            if kek_id != wrapper.kek_id:
                store.rewrap_secret(issuer, kind, kek_id, wrapper.wrap_private_key(key, aad), wrapper.kek_id)
            return key
        key = read_private_key(legacy_file, IssuerError, what="a key") if legacy_file.exists() else make()
        store.put_secret_once(issuer, kind, wrapper.wrap_private_key(key, aad), wrapper.kek_id, "", now)
    raise IssuerError(f"issuer {issuer!r}: its {kind} could not be stored in the registry")  # pragma: no cover
