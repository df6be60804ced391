"""The collector's error tree.

Every error raised on purpose by collector code derives from ``CollectorError``;
its message (``str(err)``) is safe to show to a user: it names what went wrong
and never carries secrets. Tracebacks belong in the log, not in the message.
"""
from __future__ import annotations


class CollectorError(Exception):
    """Root of the collector's errors; ``message`` is safe to show to a user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(CollectorError):
    """The collector's config file is missing, malformed or inconsistent; the message names the file
    and line where it can (collector/config/reader.py)."""


class NotFound(CollectorError):
    """The thing asked for does not exist."""


class Ambiguous(CollectorError):
    """A short reference (e.g. a fingerprint prefix) matches more than one thing."""


class InvalidInput(CollectorError):
    """The input is malformed or inconsistent (bad DER, fingerprint mismatch, ...)."""


class TokenInvalid(CollectorError):
    """The enrollment token is not known."""


class TokenUsed(CollectorError):
    """The enrollment token was already used."""


class TokenExpired(CollectorError):
    """The enrollment token has expired."""


class PermissionDenied(CollectorError):
    """The caller may not do this (revoked agent, unknown identity, wrong role)."""


class Unauthenticated(CollectorError):
    """The caller did not present a usable identity (no or bad client certificate)."""


class PKIError(CollectorError):
    """A key, certificate or CA file of the collector's own PKI is unusable."""


class IssuerError(CollectorError):
    """An issuer (internal CA, ACME, ...) refused or failed a request; the message says why."""


class IssuerUnavailable(IssuerError):
    """The issuer could not be reached or did not answer in time: worth trying again later."""


class DatabaseUnavailable(CollectorError):
    """The registry's database cannot be reached (stopped, restarting, network cut): nothing was
    changed; the same call can be repeated once it is back (collector/registry/db.py). On the wire:
    UNAVAILABLE with :data:`RETRY_AFTER_METADATA` in the trailing metadata."""


#: trailing metadata key of an UNAVAILABLE answer that is the collector's own (its database is
#: down, not the network): seconds to wait before trying again. Set by collector/api/errors.py,
#: read by the CLI (collector/cli/connect.py).
RETRY_AFTER_METADATA = "certfleet-retry-after"


class ResourceExhausted(CollectorError):
    """A caller asked for more than its share: too large, too many, or one already in flight."""


class TooSlow(CollectorError):
    """A stream did not send its next message, or did not end, within the collector's deadline."""
