"""Trust stores: where a host keeps the certificates it trusts, not the ones it serves.

Entries of a trust store are inventoried with role TRUST_ANCHOR: the collector
keeps them apart from service certificates, so they neither flood reports nor
get renewed. A store file is a trust store when

- its ``[[store]]`` says ``role = "trust_anchor"`` (``role = "service"`` says it
  is not, whatever the path), or
- its path is one of the well-known system trust stores (:data:`TRUST_DIRS`,
  :data:`TRUST_FILES`), a JVM's ``cacerts`` (``.../lib/security/cacerts``,
  Debian's ``/etc/ssl/certs/java/cacerts``), or matches one of
  ``[discovery] trust_store_paths``.

A path-recognised trust store can still hold a service certificate (Debian
keeps ``ssl-cert-snakeoil.pem`` in /etc/ssl/certs): an entry with a private key,
or whose certificate says it is not a CA (basicConstraints CA:FALSE), stays a
service certificate there. An explicit ``role`` is taken as is.

JVM ``cacerts`` files open with the JDK's well-known default password
``changeit`` when their store has no password configured (only those files,
and the password is never logged).
"""
from __future__ import annotations

import fnmatch
import os
import re
import warnings
from typing import Iterable

from cryptography import x509

from agent.config import Secret, StoreConfig
from agent.inventory import SERVICE, TRUST_ANCHOR, FoundCert

__all__ = [
    "TRUST_DIRS", "TRUST_FILES", "TrustStores", "is_jvm_cacerts", "default_password", "entry_role",
    "is_hash_link_name",
]

# Directories whose files are all trust material.
TRUST_DIRS = (
    "/etc/ssl/certs",                    # Debian/Ubuntu: hashed links + ca-certificates.crt (and java/cacerts)
    "/usr/share/ca-certificates",        # Debian: the certificates ca-certificates links to
    "/usr/local/share/ca-certificates",  # Debian: local additions
    "/etc/pki/ca-trust",                 # RHEL/Fedora: source/ and extracted/
    "/usr/share/pki/ca-trust-source",    # RHEL/Fedora: the distribution's sources
    "/etc/ca-certificates/trust-source", # Arch
)
# Single files (their directories also hold service certificates, e.g. /etc/pki/tls/certs/localhost.crt).
TRUST_FILES = (
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/tls/certs/ca-bundle.trust.crt",
    "/etc/pki/tls/cert.pem",
    "/etc/pki/java/cacerts",
    "/etc/ssl/cert.pem",                 # Alpine, macOS
    "/etc/ssl/ca-bundle.pem",            # SUSE
)

_CACERTS_PASSWORD = "changeit"           # the JDK's documented default for cacerts
_HASH_LINK = re.compile(r"[0-9a-f]{8}\.r?[0-9]+")


def is_jvm_cacerts(path: str) -> bool:
    """A JVM's system trust store: a file called ``cacerts`` under ``.../lib/security/`` or ``/etc/ssl/certs/java/``."""
    p = path.replace("\\", "/")
    if os.path.basename(p) != "cacerts":
        return False
    parent = os.path.dirname(p)
    return parent.endswith("/lib/security") or parent in ("/etc/ssl/certs/java", "/etc/pki/java")


def default_password(path: str) -> Secret | None:
    """The password to open ``path`` with when its store configures none: ``changeit`` for JVM cacerts only."""
    return Secret(_CACERTS_PASSWORD) if is_jvm_cacerts(path) else None


def is_hash_link_name(name: str) -> bool:
    """An OpenSSL subject-hash name (``5a4d6896.0``, CRLs ``.r0``): a second name for a certificate in the same directory."""
    return bool(_HASH_LINK.fullmatch(name))


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _overlaps(a: str, b: str) -> bool:
    return _under(a, b) or _under(b, a)


def _glob_re(pattern: str) -> re.Pattern[str]:
    """``**`` any depth, ``*``/``?`` within a component; a pattern without wildcards also covers what is below it."""
    if not re.search(r"[*?\[]", pattern):
        return re.compile(re.escape(pattern.rstrip("/")) + r"(?:/.*)?")
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append(r"(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(r".*")
            i += 2
        elif pattern[i] == "*":
            out.append(r"[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append(r"[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def _static_prefix(pattern: str) -> str:
    m = re.search(r"[*?\[]", pattern)
    return os.path.dirname(pattern[: m.start()]) if m else pattern


class TrustStores:
    """Decides which files are trust stores (the built-in list plus ``extra`` paths or globs)."""

    def __init__(self, extra: Iterable[str] = ()) -> None:
        self.extra = tuple(extra)
        self._extra_res = tuple(_glob_re(p) for p in self.extra)
        self._roots = TRUST_DIRS + TRUST_FILES + tuple(_static_prefix(p) for p in self.extra)

    def is_trust_path(self, path: str) -> bool:
        """True when ``path`` (absolute) is a well-known or configured trust store file."""
        if any(_under(path, d) for d in TRUST_DIRS) or path in TRUST_FILES or is_jvm_cacerts(path):
            return True
        return any(r.fullmatch(path) for r in self._extra_res)

    def store_may_hold_trust(self, store: StoreConfig) -> bool:
        """Cheap pre-check: can any file of ``store`` be a trust store? (False: skip per-file checks.)"""
        if store.role is not None:
            return store.role == TRUST_ANCHOR
        for pattern in store.paths:
            base = _static_prefix(pattern)
            if any(_overlaps(base, r) for r in self._roots if r):
                return True
            name = os.path.basename(pattern)
            if name == "**" or fnmatch.fnmatchcase("cacerts", name):   # a JVM's cacerts may be anywhere
                return True
        return False

    def file_role(self, store: StoreConfig, path: str) -> str | None:
        """The store's configured role, else TRUST_ANCHOR for a recognised trust store file, else None.

        :func:`entry_role` then decides per entry.
        """
        if store.role is not None:
            return store.role
        return TRUST_ANCHOR if self.is_trust_path(path) else None


def entry_role(entry: FoundCert, file_role: str | None, explicit: bool) -> str:
    """The role of one entry of a file whose role is ``file_role`` (see :meth:`TrustStores.file_role`)."""
    if file_role != TRUST_ANCHOR:
        return SERVICE
    if explicit:
        return TRUST_ANCHOR
    if entry.has_private_key:
        return SERVICE
    if entry.der:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")      # old roots with non-positive serials are still anchors
                cert = x509.load_der_x509_certificate(entry.der)
                bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
            if not bc.value.ca:
                return SERVICE
        except x509.ExtensionNotFound:
            pass                          # old v1 roots carry no extensions: still anchors
        except Exception:  # noqa: BLE001 - untrusted input (InvalidVersion, DuplicateExtension...): still an anchor
            pass
    return TRUST_ANCHOR
