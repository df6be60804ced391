"""The Windows certificate store as a location source (store_type ``windows``).

Each certificate in a LocalMachine store is one location: path
``LocalMachine\\My``, alias its thumbprint, chain index 0 (the store holds every
certificate separately; intermediates live in their own stores). Each carries
its store facts (:class:`~agent.inventory.WindowsEntry`: friendly name, key
exportable or not, key provider and container) and the IIS / http.sys
bindings that serve it.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
from types import MappingProxyType
from typing import Mapping

from agent.inventory import (CERTIFICATE, MATCHES, MISMATCH, NO_KEY, PRIVATE_KEY_ENTRY, SERVICE, TRUST_ANCHOR,
                             UNKNOWN, FoundCert, IisBinding, LocationKey, ScanProblem, WindowsEntry)
from agent.keys import same_public_key
from agent.sources.base import SourceError, SourceResult
from agent.windows.api import WindowsApi
from agent.windows.errors import RecordFormatError, StoreNotFound, WindowsApiError, WindowsStoreError, \
    WindowsUnavailable
from agent.windows.records import KEY_MISSING_CODES, STORE_LOCATION, StoreRecord, is_exportable, public_key_from_blob
from agent.windows.sites import iis_bindings, parse_sites
from agent.windows.sslcert import parse_sslcert
from agent.windows.settings import TRUST_STORES, WindowsSettings

__all__ = ["WindowsStoreSource", "key_state", "STORE_TYPE"]

log = logging.getLogger(__name__)

STORE_TYPE = "windows"


def key_state(record: StoreRecord) -> tuple[bool, str, str]:
    """``(has_private_key, key_match, note)`` of a store record.

    The key counts as present when it could be opened silently. Its public half
    (exported as a BCRYPT blob) is compared with the certificate's: MATCHES or
    MISMATCH; UNKNOWN when the key opened but its public half could not be read.
    A certificate that names a key container which does not exist any more (the
    classic "there is a key icon but IIS cannot use it") has no key, with a note.
    When the key could not be opened for another reason (access denied, a
    legacy CryptoAPI provider) it is counted present but UNKNOWN, with a note.
    """
    prov, key = record.key_prov_info, record.key
    if prov is None and (key is None or not key.acquired):
        return False, NO_KEY, ""
    if key is None:
        return True, UNKNOWN, "the private key was not opened"
    if not key.acquired:
        if key.error_code in KEY_MISSING_CODES:
            where = f" (container {prov.container!r} of {prov.provider})" if prov else ""
            return False, NO_KEY, f"the certificate names a private key that does not exist{where}: {key.error}"
        return True, UNKNOWN, f"the private key could not be opened: {key.error}"
    if not key.public_blob:
        return True, UNKNOWN, "the key's public half could not be exported"
    try:
        public = public_key_from_blob(key.public_blob)
    except RecordFormatError as e:
        return True, UNKNOWN, str(e)
    return True, (MATCHES if same_public_key(public, record.der) else MISMATCH), ""


class WindowsStoreSource:
    """A :class:`~agent.sources.base.LocationSource` for LocalMachine certificate stores and IIS bindings."""

    name = "windows certificate store"
    store_types = frozenset({STORE_TYPE})

    def __init__(self, settings: WindowsSettings, api: WindowsApi, labels: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.api = api
        merged = dict(labels or {})
        merged.update(settings.labels)
        self.labels = MappingProxyType(merged)

    def bindings(self, problems: list[ScanProblem]) -> list[IisBinding]:
        """IIS site bindings and http.sys SSL bindings; problems reading them are appended to ``problems``."""
        if not self.settings.iis:
            return []
        try:
            sslcerts = parse_sslcert(self.api.show_sslcert())
        except (WindowsStoreError, RecordFormatError) as e:     # netsh missing, failing or localised
            problems.append(ScanProblem(STORE_TYPE, "http.sys", "", "unreadable", f"http.sys SSL bindings: {e}"))
            return []
        sites = []
        try:
            xml = self.api.list_iis_sites_xml()
            if xml is not None:
                sites = parse_sites(xml)
        except (WindowsStoreError, RecordFormatError) as e:
            problems.append(ScanProblem(STORE_TYPE, "IIS", "", "unreadable",
                                        f"IIS sites: {e} (http.sys bindings are still reported, without site names)"))
        return iis_bindings(sites, sslcerts)

    def collect(self, now: dt.datetime) -> SourceResult:
        result = SourceResult()
        found: list[tuple[StoreRecord, str]] = []
        reachable = 0
        for store in self.settings.stores:
            path = f"{STORE_LOCATION}\\{store}"
            try:
                records = self.api.list_store(STORE_LOCATION, store)
            except WindowsUnavailable as e:
                raise SourceError("unsupported", str(e)) from None
            except StoreNotFound:
                log.debug("%s does not exist on this host", path)
                continue
            except WindowsApiError as e:
                result.problems.append(ScanProblem(STORE_TYPE, path, "", "unreadable", str(e)))
                continue
            reachable += 1
            found.extend((r, path) for r in records)
        if result.problems:
            # A store that cannot be read proves nothing gone: keep every location this source last reported
            # (a source cannot keep only some of them) and say why.
            readable = f" ({reachable} other store(s) were readable; their changes wait until this is fixed)" \
                if reachable else ""
            raise SourceError("unreadable", "; ".join(p.message for p in result.problems) + readable)
        bindings = self.bindings(result.problems)

        seen: set[tuple[str, str]] = set()
        for record, path in found:
            thumb = record.thumbprint
            if (path, thumb) in seen:
                continue
            seen.add((path, thumb))
            if record.sha1_hash and record.sha1_hash.upper() != thumb:
                result.problems.append(ScanProblem(
                    STORE_TYPE, path, thumb, "corrupt",
                    f"the store's SHA-1 property {record.sha1_hash} differs from the certificate's thumbprint"))
            has_key, match, note = key_state(record)
            if note:
                level = logging.WARNING if not has_key else logging.INFO
                log.log(level, "%s %s: %s", path, thumb, note)
            if not has_key and record.key_prov_info is not None and match == NO_KEY and note:
                result.problems.append(ScanProblem(STORE_TYPE, path, thumb, "unreadable", note))
            prov = record.key_prov_info
            key = record.key
            entry = WindowsEntry(
                store_location=record.store_location, store_name=record.store_name, thumbprint=thumb,
                friendly_name=record.friendly_name,
                key_exportable=bool(has_key and key is not None and is_exportable(key.export_policy)),
                key_provider=(key.provider if key is not None and key.provider else (prov.provider if prov else "")),
                key_container=prov.container if prov else "",
            )
            mine = tuple(b for b in bindings if b.certificate_hash == thumb
                         and (b.store_name or "My").lower() == record.store_name.lower())
            result.entries.append(FoundCert(
                key=LocationKey(STORE_TYPE, path, thumb, 0), der=record.der,
                fingerprint=hashlib.sha256(record.der).hexdigest(), has_private_key=has_key, key_encrypted=False,
                key_match=match, entry_type=PRIVATE_KEY_ENTRY if has_key else CERTIFICATE,
                file_owner="", file_group="", file_mode=0, file_mtime=0.0, labels=self.labels,
                role=TRUST_ANCHOR if record.store_name.lower() in TRUST_STORES else SERVICE,
                windows=entry, iis_bindings=mine,
            ))
        known = {(r.store_name.lower(), r.thumbprint) for r, _ in found}
        for b in bindings:
            if b.certificate_hash and ((b.store_name or "My").lower(), b.certificate_hash) not in known \
                    and b.store_name.lower() in (s.lower() for s in self.settings.stores):
                where = f"site {b.site!r} " if b.site else ""
                host = f"[{b.ip}]" if ":" in b.ip else b.ip
                result.problems.append(ScanProblem(
                    STORE_TYPE, f"{STORE_LOCATION}\\{b.store_name or 'My'}", b.certificate_hash, "vanished",
                    f"the https binding {where}{b.host_name or host}:{b.port} names certificate {b.certificate_hash}, "
                    f"which is not in {STORE_LOCATION}\\{b.store_name or 'My'}: that binding cannot serve TLS"))
        return result
