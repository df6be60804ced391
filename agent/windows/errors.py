"""The Windows layer's errors. Every message is safe to show a user: stores, thumbprints, bindings, never a secret."""
from __future__ import annotations

from agent.errors import AgentError


class WindowsStoreError(AgentError):
    """Root of the Windows layer's deliberate errors."""


class WindowsUnavailable(WindowsStoreError):
    """The Windows API cannot be used here (not Windows, or a DLL or tool is missing)."""


class WindowsApiError(WindowsStoreError):
    """A Windows call failed: ``call`` names it, ``code`` is its error code (GetLastError / HRESULT / exit code)."""

    def __init__(self, call: str, code: int, message: str) -> None:
        super().__init__(message)
        self.call = call
        self.code = code


class StoreNotFound(WindowsApiError):
    """The certificate store does not exist on this host (WebHosting exists only where IIS is installed)."""


class RecordFormatError(WindowsStoreError):
    """Output of appcmd / netsh, or a store capture, is not in the format the parser knows."""
