"""Stale services: the file holds the renewed certificate, the port still serves the old one.

For a certificate file used by a process that listens on TCP, the agent
handshakes with each of the process's ports, sending as SNI each of the
file certificate's DNS names (a few at most), and compares what is served
(:func:`decide`, a pure function):

- some port serves the file's certificate for some name: **ok** (the file is
  in use; a state entry is cleared);
- otherwise, a port serves a certificate that shares a name (DNS or IP SAN)
  with the file's and is not the certificate of another file the same
  process uses: **stale** (typically a renewal without a reload);
- anything else (unrelated certificates on other vhosts, failed handshakes):
  **unknown** — nothing is flagged, nothing is cleared.

:class:`StaleState` remembers since when each location is stale in
``data_dir/stale.json``, so ``since`` survives agent restarts; an entry is
kept while the same file certificate and served certificate are seen, and
dropped as soon as the port serves the file's certificate again (or the
location disappears). The clock is injected.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import pathlib
import warnings
from dataclasses import dataclass
from typing import Iterable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from agent.fsutil import atomic_write
from agent.inventory import StaleService

log = logging.getLogger(__name__)

__all__ = ["Served", "Verdict", "OK", "STALE", "UNKNOWN", "cert_names", "probe_names", "decide", "StaleState",
           "disk_fingerprints", "shares_name"]

OK = "ok"
STALE = "stale"
UNKNOWN = "unknown"

MAX_NAMES = 3                       # SNI names tried per file certificate
_WILDCARD_LABEL = "certfleet-stale-check"   # stands for "*" when a certificate only has wildcard names
STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class Served:
    """What one handshake (endpoint, SNI) presented."""

    endpoint: str                   # "127.0.0.1:8443"
    sni: str                        # "" when none was sent
    fingerprint: str                # "" when the handshake failed
    names: tuple[str, ...] = ()     # the served certificate's names (see cert_names)
    error: str = ""


@dataclass(frozen=True, slots=True)
class Verdict:
    state: str                      # OK, STALE, UNKNOWN
    served: Served | None = None    # for STALE: the mismatching observation


def cert_names(der: bytes) -> tuple[str, ...]:
    """A certificate's names for matching: DNS SANs lower-cased, IP SANs as ``ip:ADDR``; the CN when it has no SANs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # odd old certificates still have names
        return _cert_names(der)


def _cert_names(der: bytes) -> tuple[str, ...]:
    try:
        cert = x509.load_der_x509_certificate(der)
    except Exception:  # noqa: BLE001 - untrusted input (InvalidVersion...): no names
        return ()
    out: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        for n in san:
            if isinstance(n, x509.DNSName):
                out.append(n.value.lower().rstrip("."))
            elif isinstance(n, x509.IPAddress):
                out.append(f"ip:{n.value}")
    except Exception:  # noqa: BLE001 - no SAN, a duplicate or unparseable extension: use the CN
        pass
    if not out:
        try:
            cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        except Exception:  # noqa: BLE001 - untrusted input
            cns = []
        if cns and isinstance(cns[0].value, str) and cns[0].value.strip():
            out.append(cns[0].value.strip().lower())
    return tuple(dict.fromkeys(out))


def _is_host_name(name: str) -> bool:
    if name.startswith("ip:") or not name:
        return False
    try:
        ipaddress.ip_address(name)
        return False
    except ValueError:
        return "." in name or name.isalnum()


def probe_names(names: Sequence[str], limit: int = MAX_NAMES) -> list[str]:
    """The SNI names to try for a certificate with ``names``: its DNS names in order (a wildcard
    ``*.example.com`` becomes a host under it), at most ``limit``; ``[""]`` (no SNI) when it has none."""
    out: list[str] = []
    for n in names:
        if not _is_host_name(n):
            continue
        sni = f"{_WILDCARD_LABEL}.{n[2:]}" if n.startswith("*.") else n
        if "*" in sni or sni in out:
            continue
        out.append(sni)
        if len(out) >= limit:
            break
    return out or [""]


def _matches(a: str, b: str) -> bool:
    """Two certificate names that can stand for the same host (a wildcard covers one label)."""
    if a == b:
        return True
    for wild, other in ((a, b), (b, a)):
        if wild.startswith("*.") and "." in other and other.split(".", 1)[1] == wild[2:]:
            return True
    return False


def shares_name(a: Iterable[str], b: Iterable[str]) -> bool:
    bl = list(b)
    return any(_matches(x, y) for x in a for y in bl)


def decide(file_fingerprint: str, file_names: Sequence[str], observations: Sequence[Served],
           other_fingerprints: Iterable[str] = ()) -> Verdict:
    """Is the file's certificate served, stale, or unknown? (see the module docstring)

    ``observations`` are the handshakes with the ports of the processes that
    use the file; ``other_fingerprints`` the certificates of the other files
    those processes use (a port serving one of those is not serving an old copy).
    """
    seen = [o for o in observations if o.fingerprint]
    if any(o.fingerprint == file_fingerprint for o in seen):
        return Verdict(OK)
    others = set(other_fingerprints)
    candidates = [o for o in seen
                  if o.fingerprint not in others and file_names and shares_name(file_names, o.names)]
    if candidates:
        return Verdict(STALE, sorted(candidates, key=lambda o: (o.endpoint, o.sni, o.fingerprint))[0])
    return Verdict(UNKNOWN)


class StaleState:
    """``data_dir/stale.json``: since when each location has been stale."""

    def __init__(self, path: pathlib.Path | None) -> None:
        self.path = path
        self.entries: dict[str, dict] = {}
        self._dirty = False
        if path is not None:
            try:
                raw = json.loads(path.read_text())
                if raw.get("version") == STATE_VERSION and isinstance(raw.get("entries"), dict):
                    self.entries = {k: v for k, v in raw["entries"].items() if isinstance(v, dict)}
            except FileNotFoundError:
                pass
            except (OSError, ValueError, AttributeError) as e:
                log.warning("stale-service state %s unreadable (%s); stale times start again", path, e)

    def apply(self, key: str, file_fingerprint: str, verdict: Verdict, pid: int, process_name: str,
              now: float) -> StaleService | None:
        """Record ``verdict`` for location ``key``; the StaleService to report (None when not stale)."""
        old = self.entries.get(key)
        if verdict.state == OK:
            if old is not None:
                del self.entries[key]
                self._dirty = True
            return None
        if verdict.state != STALE or verdict.served is None:
            return None
        served = verdict.served
        if (old is not None and old.get("file_fingerprint") == file_fingerprint
                and old.get("served_fingerprint") == served.fingerprint
                and isinstance(old.get("since"), (int, float))):
            since = float(old["since"])
            if old.get("endpoint") != served.endpoint:
                old["endpoint"] = served.endpoint
                self._dirty = True
        else:
            since = float(now)
            self.entries[key] = {"file_fingerprint": file_fingerprint, "served_fingerprint": served.fingerprint,
                                 "endpoint": served.endpoint, "since": since}
            self._dirty = True
        return StaleService(endpoint=served.endpoint, served_fingerprint=served.fingerprint, pid=pid,
                            process_name=process_name, since=since)

    def keep_only(self, keys: Iterable[str]) -> None:
        """Forget locations that no longer exist."""
        keep = set(keys)
        for k in [k for k in self.entries if k not in keep]:
            del self.entries[k]
            self._dirty = True

    def save(self) -> None:
        if self.path is None or not self._dirty:
            return
        data = json.dumps({"version": STATE_VERSION, "entries": self.entries}, indent=1, sort_keys=True)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, data.encode("utf-8"), 0o600)
            self._dirty = False
        except OSError as e:
            log.warning("cannot write the stale-service state %s: %s", self.path, e)


def disk_fingerprints(path: str, max_bytes: int = 1024 * 1024) -> frozenset[str]:
    """SHA-256 fingerprints of the certificates in a PEM or DER file (empty when unreadable or another format)."""
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError:
        return frozenset()
    if len(data) > max_bytes:
        return frozenset()
    out = set()
    if b"-----BEGIN CERTIFICATE-----" in data:
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError:
            certs = []
        for c in certs:
            out.add(hashlib.sha256(c.public_bytes(Encoding.DER)).hexdigest())
    else:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                x509.load_der_x509_certificate(data)
            out.add(hashlib.sha256(data).hexdigest())
        except ValueError:
            pass
    return frozenset(out)
