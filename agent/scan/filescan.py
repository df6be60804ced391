"""What the scanner yields per file, and reading a large PEM file in parts.

:class:`FileScan` is one file's result. A PEM file larger than :data:`STREAM_SIZE` that holds
no private key is read in parts (:func:`read_in_parts`): a few megabytes at a time, one FileScan
per :data:`PART_ENTRIES` certificates, so the agent's memory does not grow with the file (a
100,000-certificate bundle is read like a hundred small files with the same path).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Callable, Iterator

from agent.inventory import FoundCert, ScanProblem
from agent.stores import PemReader, ReadContext, StoreReadError, sniff

__all__ = ["FileScan", "Signature", "STREAM_SIZE", "PART_BYTES", "PART_ENTRIES", "pem_without_keys", "pem_parts",
           "read_in_parts"]

log = logging.getLogger(__name__)

Signature = tuple[int, int, int, int, int]   # st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns

#: PEM files larger than this (and holding no private key) are read in parts, so memory stays bounded
STREAM_SIZE = 8 * 1024 * 1024
PART_BYTES = 4 * 1024 * 1024          # bytes read at a time from such a file
PART_ENTRIES = 1000                   # certificates per FileScan of such a file
_PEM = PemReader()


@dataclass(slots=True)
class FileScan:
    """What one scan found in one file (or the problem with one directory).

    When ``reused`` is True the ``entries`` and ``problems`` lists are the
    scanner's cached ones: treat them as read-only.
    """

    path: str
    store_name: str
    store_type: str                 # detected type (pem, der, pkcs12, jks, jceks) or the configured one
    reused: bool                    # True: unchanged since the last scan, entries come from memory (der=b"")
    entries: list[FoundCert]
    problems: list[ScanProblem]
    signature: Signature | None = None   # None for directories, files that could not be stat'ed, parts after the first


def read_in_parts(path: str, name: str, fd: int, ctx: ReadContext, sig: Signature, limit: int,
                  with_roles: Callable[[list[FoundCert]], list[FoundCert]]) -> Iterator[FileScan]:
    """A large PEM file without keys, read in parts: one FileScan per :data:`PART_ENTRIES` certificates.

    Memory stays bounded by the part size, not the file's. The first part carries the file's
    signature, the others None (so a tally of files counts it once); the last one carries the
    problems. Such a file is not remembered between scans: it is read again each time.
    """
    batch: list[FoundCert] = []
    first = True
    try:
        try:
            for e in _PEM.read_parts(path, pem_parts(fd, limit), ctx):
                batch.append(e)
                if len(batch) >= PART_ENTRIES:
                    yield FileScan(path, name, "pem", False, with_roles(batch), [], sig if first else None)
                    first = False
                    batch = []
            problems = list(ctx.problems)
        except StoreReadError as e:
            problems = ctx.problems + [ScanProblem(e.store_type or "pem", path, e.alias, e.reason, e.message)]
        except OSError as e:
            problems = ctx.problems + [ScanProblem("pem", path, "", "unreadable",
                                                   f"the file cannot be read ({e.strerror or type(e).__name__})")]
        except Exception:  # noqa: BLE001 - a reader bug must not stop the scan
            log.exception("store %r: reading %s failed unexpectedly", name, path)
            problems = ctx.problems + [ScanProblem(
                "pem", path, "", "corrupt", "the file could not be read (unexpected error; see the agent log)")]
    finally:
        os.close(fd)
    yield FileScan(path, name, "pem", False, with_roles(batch), problems, sig if first else None)


def pem_without_keys(fd: int) -> bool:
    """Whether the open file is PEM (by its first bytes) and holds no private key block.

    Leaves the file's position at its start.
    """
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        if sniff(os.read(fd, 4096)) != "pem":
            return False
        tail = b""
        os.lseek(fd, 0, os.SEEK_SET)
        while True:
            chunk = os.read(fd, PART_BYTES)
            if not chunk:
                return True
            if b"PRIVATE KEY-----" in tail + chunk[:64] or b"PRIVATE KEY-----" in chunk:
                return False
            tail = chunk[-32:]
    finally:
        os.lseek(fd, 0, os.SEEK_SET)


def pem_parts(fd: int, limit: int, part_bytes: int = PART_BYTES) -> Iterator[tuple[int, bytes]]:
    """``(offset, bytes)`` parts of a PEM file, each ending just after an END line's closing dashes.

    ``part_bytes`` are read at a time (a part is longer when no END line ends in what was read).
    """
    base, buf, total = 0, b"", 0
    os.lseek(fd, 0, os.SEEK_SET)
    while True:
        chunk = os.read(fd, part_bytes)
        total += len(chunk)
        if total > limit:
            raise StoreReadError("too_large", f"the file grew past max_file_size ({limit} bytes) while it was "
                                 "read; the rest of it is not read", "pem")
        if not chunk:
            if buf:
                yield base, buf
            return
        buf += chunk
        cut = _after_last_end(buf)
        if cut > 0:
            yield base, buf[:cut]
            base += cut
            buf = buf[cut:]


def _after_last_end(buf: bytes) -> int:
    """Where a part may end: after the last complete ``-----END ...`` token of ``buf``, or 0."""
    at = len(buf)
    while True:
        at = buf.rfind(b"-----END ", 0, at)
        if at < 0:
            return 0
        nl = buf.find(b"\n", at)
        if nl < 0:
            continue                              # that END line is not complete yet: the one before
        close = buf.find(b"-----", at + 9, nl)
        return close + 5 if close >= 0 else nl + 1
