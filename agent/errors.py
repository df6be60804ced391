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


class EnrollError(AgentError):
    """Enrollment was refused, or could not be attempted (a bad endpoint or token, an unreachable collector)."""


class KeySpecError(AgentError):
    """A requested key type is not one the agent makes (see agent.keys.KEY_SPECS)."""


class ReloadNotAllowed(AgentError):
    """A reload action was named that the agent's own configuration does not define."""


class ReloadFailed(AgentError):
    """A reload action exited non-zero, timed out or could not be started.

    ``exit_code`` is None when the command timed out or could not start;
    ``stderr_tail`` holds the last lines it wrote to stderr (never a secret:
    certfleet passes no secrets on command lines).
    """

    def __init__(self, message: str, exit_code: int | None = None, stderr_tail: str = "",
                 timed_out: bool = False) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.stderr_tail = stderr_tail
        self.timed_out = timed_out


class ProbeError(AgentError):
    """A TLS endpoint could not be reached, timed out or failed the handshake."""


class StoreWriteError(AgentError):
    """A store cannot be rewritten: it changed, holds what cannot be kept, or the write failed."""


class InstallError(AgentError):
    """An install request is inconsistent (for example a certificate that is not for the new key)."""
