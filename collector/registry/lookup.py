"""Finding things by the ids people type: a certificate by its SHA-256 fingerprint or a unique
prefix of it, an agent or a network scan by its id or a unique prefix, and serials as they
compare. Clear errors (NotFound, Ambiguous, InvalidInput) for what matches nothing or several."""
from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Connection, and_, func, select

from collector.errors import Ambiguous, InvalidInput, NotFound
from collector.registry.models.inventory import certificates

MIN_PREFIX = 6
_HEX = re.compile(r"[0-9a-f]+")
_ID_CHARS = re.compile(r"[0-9A-Za-z._:-]+")


def normalize_serial(serial: str) -> str:
    """Serials compare as lower-case hex without separators or leading zeros."""
    s = serial.strip().lower().replace(":", "")
    if s.startswith("0x"):
        s = s[2:]
    return s.lstrip("0") or "0"


def resolve_id(conn: Connection, column: Any, value: str, what: str) -> str:
    """The full id in ``column`` (e.g. ``agents.c.agent_id``) for ``value``: the id itself or a
    unique prefix of at least 6 characters; ``what`` names the thing in errors ("agent")."""
    ref = (value or "").strip()
    if not ref:
        raise InvalidInput(f"name the {what}")
    if not _ID_CHARS.fullmatch(ref) or len(ref) > 64:
        raise NotFound(f"no {what} {ref[:80]!r}")
    exact = conn.execute(select(column).where(column == ref)).scalars().first()
    if exact is not None:
        return exact
    if len(ref) < MIN_PREFIX:
        raise InvalidInput(f"give at least {MIN_PREFIX} characters of the {what} id")
    found = [f for f in conn.execute(
        select(column).where(column >= ref, column < ref + "g").order_by(column).limit(2)).scalars()
        if f.startswith(ref)]
    if not found:
        raise NotFound(f"no {what} {ref}")
    if len(found) > 1:
        raise Ambiguous(f"{what} id prefix {ref!r} matches several; give more characters")
    return found[0]


def resolve_fingerprint(conn: Connection, value: str) -> str:
    """The full fingerprint for ``value`` (64 hex digits or a unique prefix of at least 6; case,
    spaces and colons do not matter). NotFound, Ambiguous or InvalidInput with a clear message."""
    prefix = re.sub(r"[\s:]", "", value or "").lower()
    if not prefix or not _HEX.fullmatch(prefix):
        raise InvalidInput(f"{(value or '').strip()[:80]!r} is not a hex SHA-256 fingerprint")
    if len(prefix) > 64:
        raise InvalidInput("a SHA-256 fingerprint has 64 hex digits")
    if len(prefix) < MIN_PREFIX:
        raise InvalidInput(f"give at least {MIN_PREFIX} hex digits of the fingerprint")
    c = certificates.c
    # a range keeps the primary-key index usable whatever the collation
    cond = c.fingerprint == prefix if len(prefix) == 64 else and_(c.fingerprint >= prefix, c.fingerprint < prefix + "g")
    fps = [fp for fp in conn.execute(select(c.fingerprint).where(cond).order_by(c.fingerprint).limit(2)).scalars()
           if fp.startswith(prefix)]
    if not fps:
        raise NotFound(f"no certificate with fingerprint {prefix if len(prefix) == 64 else prefix + '...'}")
    if len(fps) > 1:
        n = conn.execute(select(func.count()).select_from(certificates).where(cond)).scalar_one()
        raise Ambiguous(f"prefix {prefix!r} matches {n} certificates; give more characters")
    return fps[0]
