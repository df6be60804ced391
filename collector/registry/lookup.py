"""Finding a certificate by its SHA-256 fingerprint or a unique prefix of it."""
from __future__ import annotations

import re

from sqlalchemy import Connection, and_, func, select

from collector.errors import Ambiguous, InvalidInput, NotFound
from collector.registry.models.inventory import certificates

MIN_PREFIX = 6
_HEX = re.compile(r"[0-9a-f]+")


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
