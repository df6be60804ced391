"""Single-use enrollment tokens.

A token is ``cfe_`` followed by 32 random bytes in unpadded URL-safe base64
(256 bits of entropy). The collector stores only :func:`hash_token` of it; with
that much entropy a plain SHA-256 is enough (no salt or slow hash needed), and
a leaked registry does not reveal usable tokens.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets

TOKEN_PREFIX = "cfe_"
TOKEN_BYTES = 32
_TOKEN_RE = re.compile(r"cfe_[A-Za-z0-9_-]{43}")


def new_token() -> str:
    """A fresh enrollment token: ``cfe_`` + 43 URL-safe base64 characters."""
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """Lower-case hex SHA-256 of the token, the only form the collector stores.

    Surrounding whitespace is ignored (a token pasted with a newline still
    matches); tokens themselves never contain whitespace.
    """
    return hashlib.sha256(token.strip().encode("utf-8")).hexdigest()


def looks_like_token(s: str) -> bool:
    """Whether ``s`` (surrounding whitespace ignored) has the shape of a token.

    A cheap check to give a clear error for a mistyped or truncated token
    before any lookup; it says nothing about whether the token is valid.
    """
    return isinstance(s, str) and bool(_TOKEN_RE.fullmatch(s.strip()))


def token_matches(token: str, stored_hash: str) -> bool:
    """Whether ``token`` hashes to ``stored_hash``, compared in constant time."""
    return hmac.compare_digest(hash_token(token), stored_hash.lower())
