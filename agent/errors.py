"""The agent's error tree.

Every error the agent raises on purpose derives from :class:`AgentError`. Its
message (``str(err)``) is safe to show a user: it names files, stores and
fixes, never a secret. Tracebacks belong in the log.
"""
from __future__ import annotations


class AgentError(Exception):
    """Root of all deliberate agent errors; ``str()`` is safe to show a user."""


class ConfigError(AgentError):
    """The agent's configuration file is missing, malformed or inconsistent."""


class PasswordUnavailable(AgentError):
    """A store's configured password source cannot be read right now.

    ``reason`` is a ScanProblem reason code (``no_password`` or ``unreadable``).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class IdentityError(AgentError):
    """The agent's enrollment identity is missing, inconsistent or cannot be obtained."""
