"""The boundary: the only module of certfleet that calls Windows.

Everything here is either a ctypes call into ``crypt32.dll`` / ``ncrypt.dll``
or a run of an IIS / http.sys tool as an argument list (never a shell string).
Nothing above this module knows about handles, structures or code pages: it
gets :class:`~agent.windows.records.StoreRecord` objects and the tools' text,
and :mod:`agent.windows.sslcert` and :mod:`agent.windows.sites` parse that text.

**Not run on Windows by certfleet's tests.** The test suite runs on Linux: it
checks that this module imports there and that :class:`RealWindowsApi` refuses
to work with :class:`~agent.windows.errors.WindowsUnavailable`; everything above
it is tested with a fake at this boundary and recorded data (see
``tests/agent/windows/data/README.md``). The calls below follow the Win32
documentation; the README says what has and has not been run on Windows.

Calls made:

* store enumeration: ``CertOpenStore(CERT_STORE_PROV_SYSTEM_W,
  CERT_SYSTEM_STORE_LOCAL_MACHINE | CERT_STORE_OPEN_EXISTING_FLAG |
  CERT_STORE_READONLY_FLAG)``, ``CertEnumCertificatesInStore``,
  ``CertGetCertificateContextProperty`` (``CERT_SHA1_HASH_PROP_ID``,
  ``CERT_FRIENDLY_NAME_PROP_ID``, ``CERT_KEY_PROV_INFO_PROP_ID``);
* the private key, without any UI and without exporting it:
  ``CryptAcquireCertificatePrivateKey(CRYPT_ACQUIRE_SILENT_FLAG |
  CRYPT_ACQUIRE_ONLY_NCRYPT_KEY_FLAG)``, ``NCryptGetProperty("Export Policy")``,
  ``NCryptGetProperty("Provider Handle")`` + ``("Name")``,
  ``NCryptExportKey(BCRYPT_PUBLIC_KEY_BLOB)`` (the public half only);
* install: ``PFXImportCertStore(CRYPT_MACHINE_KEYSET | PKCS12_PREFER_CNG_KSP
  [| CRYPT_EXPORTABLE])``, ``CertAddCertificateContextToStore`` (the leaf into
  the target store, intermediates into ``LocalMachine\\CA`` so http.sys sends the
  full chain), ``CertSetCertificateContextProperty(CERT_FRIENDLY_NAME_PROP_ID)``;
* removal: ``CertFindCertificateInStore(CERT_FIND_SHA1_HASH)``,
  ``NCryptDeleteKey`` (when asked), ``CertDeleteCertificateFromStore``;
* IIS / http.sys: ``%windir%\\system32\\inetsrv\\appcmd.exe list site /config /xml``,
  ``%windir%\\system32\\netsh.exe http show sslcert``,
  ``netsh http update sslcert ipport=|hostnameport=... certhash=... appid=...
  certstorename=...`` (+ the binding's other settings, see
  :func:`~agent.windows.sslcert.update_sslcert_args`).
"""
from __future__ import annotations

import ctypes
import logging
import os
import subprocess
import sys
from typing import Any, Protocol, Sequence

from agent.windows.errors import StoreNotFound, WindowsApiError, WindowsUnavailable
from agent.windows.records import KEY_MISSING_CODES, KeyFacts, KeyProvInfo, StoreRecord, normalize_thumbprint, \
    thumbprint_of
from agent.windows.sslcert import SslBinding, update_sslcert_args

__all__ = ["WindowsApi", "RealWindowsApi", "WindowsUnavailable", "default_api"]

log = logging.getLogger(__name__)


class WindowsApi(Protocol):
    """What the layers above need from Windows. Implemented by :class:`RealWindowsApi` (and by tests' fakes)."""

    def list_store(self, location: str, name: str) -> list[StoreRecord]:
        """Every certificate in the system store ``location\\name``; :class:`StoreNotFound` if it does not exist."""

    def list_iis_sites_xml(self) -> str | None:
        """``appcmd list site /config /xml`` output; None when IIS is not installed."""

    def show_sslcert(self) -> str:
        """``netsh http show sslcert`` output."""

    def import_pfx(self, store: str, pfx: bytes, password: str, exportable: bool, friendly_name: str) -> str:
        """Import the PFX's key and leaf into ``LocalMachine\\store`` (intermediates into ``LocalMachine\\CA``).

        Returns the leaf's thumbprint. ``password`` is the PFX's one-time
        password: never logged, never stored.
        """

    def delete(self, store: str, thumbprint: str, delete_key: bool) -> None:
        """Remove the certificate (and, when ``delete_key``, its private key) from ``LocalMachine\\store``."""

    def update_sslcert(self, binding: SslBinding, thumbprint: str, store: str) -> None:
        """Point the http.sys binding at ``thumbprint`` in ``store``, keeping its other settings."""


# --------------------------------------------------------------------------- constants (wincrypt.h, ncrypt.h)

CERT_STORE_PROV_SYSTEM_W = 10
CERT_SYSTEM_STORE_LOCAL_MACHINE = 0x00020000
CERT_STORE_OPEN_EXISTING_FLAG = 0x00004000
CERT_STORE_READONLY_FLAG = 0x00008000
ENCODING = 0x00010001                       # X509_ASN_ENCODING | PKCS_7_ASN_ENCODING
CERT_KEY_PROV_INFO_PROP_ID = 2
CERT_SHA1_HASH_PROP_ID = 3
CERT_FRIENDLY_NAME_PROP_ID = 11
CRYPT_ACQUIRE_SILENT_FLAG = 0x00000040
CRYPT_ACQUIRE_ONLY_NCRYPT_KEY_FLAG = 0x00040000
CERT_NCRYPT_KEY_SPEC = 0xFFFFFFFF
NCRYPT_SILENT_FLAG = 0x00000040
CRYPT_EXPORTABLE = 0x00000001
CRYPT_MACHINE_KEYSET = 0x00000020
PKCS12_PREFER_CNG_KSP = 0x00000100
CERT_STORE_ADD_USE_EXISTING = 2
CERT_STORE_ADD_REPLACE_EXISTING = 3
CERT_FIND_SHA1_HASH = 0x00010000
ERROR_FILE_NOT_FOUND = 2
CREATE_NO_WINDOW = 0x08000000
TOOL_TIMEOUT = 120.0


def default_api() -> "WindowsApi":
    return RealWindowsApi()


class _Win32:
    """The DLLs and structure types, loaded on first use (and only on Windows)."""

    def __init__(self) -> None:
        from ctypes import wintypes as wt   # noqa: PLC0415 - Windows only

        self.wt = wt

        class CERT_CONTEXT(ctypes.Structure):
            _fields_ = [("dwCertEncodingType", wt.DWORD), ("pbCertEncoded", ctypes.POINTER(ctypes.c_ubyte)),
                        ("cbCertEncoded", wt.DWORD), ("pCertInfo", ctypes.c_void_p), ("hCertStore", ctypes.c_void_p)]

        class CRYPT_DATA_BLOB(ctypes.Structure):
            _fields_ = [("cbData", wt.DWORD), ("pbData", ctypes.POINTER(ctypes.c_ubyte))]

        class CRYPT_KEY_PROV_INFO(ctypes.Structure):
            _fields_ = [("pwszContainerName", wt.LPWSTR), ("pwszProvName", wt.LPWSTR), ("dwProvType", wt.DWORD),
                        ("dwFlags", wt.DWORD), ("cProvParam", wt.DWORD), ("rgProvParam", ctypes.c_void_p),
                        ("dwKeySpec", wt.DWORD)]

        self.CERT_CONTEXT, self.CRYPT_DATA_BLOB, self.CRYPT_KEY_PROV_INFO = \
            CERT_CONTEXT, CRYPT_DATA_BLOB, CRYPT_KEY_PROV_INFO
        PCCERT = ctypes.POINTER(CERT_CONTEXT)
        self.PCCERT = PCCERT
        c = ctypes.WinDLL("crypt32", use_last_error=True)       # type: ignore[attr-defined]
        n = ctypes.WinDLL("ncrypt", use_last_error=True)        # type: ignore[attr-defined]
        self.crypt32, self.ncrypt = c, n
        c.CertOpenStore.argtypes = [ctypes.c_void_p, wt.DWORD, ctypes.c_void_p, wt.DWORD, ctypes.c_void_p]
        c.CertOpenStore.restype = ctypes.c_void_p
        c.CertCloseStore.argtypes = [ctypes.c_void_p, wt.DWORD]
        c.CertCloseStore.restype = wt.BOOL
        c.CertEnumCertificatesInStore.argtypes = [ctypes.c_void_p, PCCERT]
        c.CertEnumCertificatesInStore.restype = PCCERT
        c.CertGetCertificateContextProperty.argtypes = [PCCERT, wt.DWORD, ctypes.c_void_p, ctypes.POINTER(wt.DWORD)]
        c.CertGetCertificateContextProperty.restype = wt.BOOL
        c.CertSetCertificateContextProperty.argtypes = [PCCERT, wt.DWORD, wt.DWORD, ctypes.c_void_p]
        c.CertSetCertificateContextProperty.restype = wt.BOOL
        c.CryptAcquireCertificatePrivateKey.argtypes = [PCCERT, wt.DWORD, ctypes.c_void_p,
                                                        ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(wt.DWORD),
                                                        ctypes.POINTER(wt.BOOL)]
        c.CryptAcquireCertificatePrivateKey.restype = wt.BOOL
        c.PFXImportCertStore.argtypes = [ctypes.POINTER(CRYPT_DATA_BLOB), wt.LPCWSTR, wt.DWORD]
        c.PFXImportCertStore.restype = ctypes.c_void_p
        c.CertAddCertificateContextToStore.argtypes = [ctypes.c_void_p, PCCERT, wt.DWORD, ctypes.POINTER(PCCERT)]
        c.CertAddCertificateContextToStore.restype = wt.BOOL
        c.CertFindCertificateInStore.argtypes = [ctypes.c_void_p, wt.DWORD, wt.DWORD, wt.DWORD, ctypes.c_void_p,
                                                 PCCERT]
        c.CertFindCertificateInStore.restype = PCCERT
        c.CertDeleteCertificateFromStore.argtypes = [PCCERT]
        c.CertDeleteCertificateFromStore.restype = wt.BOOL
        c.CertDuplicateCertificateContext.argtypes = [PCCERT]
        c.CertDuplicateCertificateContext.restype = PCCERT
        c.CertFreeCertificateContext.argtypes = [PCCERT]
        c.CertFreeCertificateContext.restype = wt.BOOL
        n.NCryptGetProperty.argtypes = [ctypes.c_size_t, wt.LPCWSTR, ctypes.c_void_p, wt.DWORD,
                                        ctypes.POINTER(wt.DWORD), wt.DWORD]
        n.NCryptGetProperty.restype = ctypes.c_long
        n.NCryptExportKey.argtypes = [ctypes.c_size_t, ctypes.c_size_t, wt.LPCWSTR, ctypes.c_void_p,
                                      ctypes.c_void_p, wt.DWORD, ctypes.POINTER(wt.DWORD), wt.DWORD]
        n.NCryptExportKey.restype = ctypes.c_long
        n.NCryptFreeObject.argtypes = [ctypes.c_size_t]
        n.NCryptFreeObject.restype = ctypes.c_long
        n.NCryptDeleteKey.argtypes = [ctypes.c_size_t, wt.DWORD]
        n.NCryptDeleteKey.restype = ctypes.c_long


def _hr(code: int) -> int:
    return code & 0xFFFFFFFF


def _describe(code: int) -> str:
    code = _hr(code)
    name = KEY_MISSING_CODES.get(code)
    try:
        text = ctypes.FormatError(code).strip()       # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - a message is a nicety
        text = ""
    return f"{name or 'error'} 0x{code:08X}" + (f": {text}" if text else "")


class RealWindowsApi:
    """The Windows implementation of :class:`WindowsApi` (ctypes + the IIS / http.sys tools).

    Importable and constructible anywhere; every call raises
    :class:`WindowsUnavailable` when not on Windows.
    """

    def __init__(self) -> None:
        self._w: _Win32 | None = None

    # ----------------------------------------------------------------- plumbing

    def _win(self) -> _Win32:
        if sys.platform != "win32":
            raise WindowsUnavailable(
                f"the Windows certificate store and IIS can only be read on Windows (this host runs {sys.platform})"
            )
        if self._w is None:
            try:
                self._w = _Win32()
            except (OSError, AttributeError) as e:
                raise WindowsUnavailable(f"crypt32.dll / ncrypt.dll cannot be loaded ({e})") from None
        return self._w

    def _fail(self, call: str, what: str) -> WindowsApiError:
        code = ctypes.get_last_error()                  # type: ignore[attr-defined]
        return WindowsApiError(call, code, f"{what}: {call} failed ({_describe(code)})")

    def _open(self, name: str, readonly: bool) -> int:
        w = self._win()
        flags = CERT_SYSTEM_STORE_LOCAL_MACHINE | CERT_STORE_OPEN_EXISTING_FLAG
        if readonly:
            flags |= CERT_STORE_READONLY_FLAG
        store_name = ctypes.create_unicode_buffer(name)
        h = w.crypt32.CertOpenStore(CERT_STORE_PROV_SYSTEM_W, 0, None, flags, ctypes.cast(store_name, ctypes.c_void_p))
        if not h:
            code = ctypes.get_last_error()              # type: ignore[attr-defined]
            if _hr(code) in (ERROR_FILE_NOT_FOUND, 0x80070002):
                raise StoreNotFound("CertOpenStore", code, f"the store LocalMachine\\{name} does not exist")
            raise WindowsApiError("CertOpenStore", code,
                                  f"the store LocalMachine\\{name} cannot be opened ({_describe(code)})")
        return h

    def _prop_buffer(self, ctx: Any, prop_id: int) -> tuple[Any, int] | None:
        """The property's buffer (kept alive by the caller: CRYPT_KEY_PROV_INFO points into itself) and size."""
        w = self._win()
        size = w.wt.DWORD(0)
        if not w.crypt32.CertGetCertificateContextProperty(ctx, prop_id, None, ctypes.byref(size)):
            return None                                 # CRYPT_E_NOT_FOUND: the property is not set
        buf = ctypes.create_string_buffer(max(size.value, 1))
        if not w.crypt32.CertGetCertificateContextProperty(ctx, prop_id, buf, ctypes.byref(size)):
            return None
        return buf, size.value

    def _prop(self, ctx: Any, prop_id: int) -> bytes | None:
        found = self._prop_buffer(ctx, prop_id)
        return None if found is None else found[0].raw[:found[1]]

    def _ncrypt_prop(self, handle: int, name: str) -> bytes | None:
        w = self._win()
        size = w.wt.DWORD(0)
        if w.ncrypt.NCryptGetProperty(handle, name, None, 0, ctypes.byref(size), NCRYPT_SILENT_FLAG) != 0:
            return None
        buf = ctypes.create_string_buffer(max(size.value, 1))
        if w.ncrypt.NCryptGetProperty(handle, name, buf, size, ctypes.byref(size), NCRYPT_SILENT_FLAG) != 0:
            return None
        return buf.raw[:size.value]

    def _key_facts(self, ctx: Any) -> KeyFacts:
        w = self._win()
        handle = ctypes.c_size_t(0)
        spec = w.wt.DWORD(0)
        free = w.wt.BOOL(False)
        ok = w.crypt32.CryptAcquireCertificatePrivateKey(
            ctx, CRYPT_ACQUIRE_SILENT_FLAG | CRYPT_ACQUIRE_ONLY_NCRYPT_KEY_FLAG, None,
            ctypes.byref(handle), ctypes.byref(spec), ctypes.byref(free))
        if not ok:
            code = _hr(ctypes.get_last_error())         # type: ignore[attr-defined]
            return KeyFacts(acquired=False, error_code=code, error=_describe(code))
        try:
            policy_raw = self._ncrypt_prop(handle.value, "Export Policy")
            policy = int.from_bytes(policy_raw[:4], "little") if policy_raw and len(policy_raw) >= 4 else None
            provider = ""
            prov_raw = self._ncrypt_prop(handle.value, "Provider Handle")
            if prov_raw and len(prov_raw) >= ctypes.sizeof(ctypes.c_size_t):
                prov = int.from_bytes(prov_raw[:ctypes.sizeof(ctypes.c_size_t)], "little")
                try:
                    name_raw = self._ncrypt_prop(prov, "Name")
                    provider = name_raw.decode("utf-16-le").rstrip("\0") if name_raw else ""
                finally:
                    w.ncrypt.NCryptFreeObject(prov)
            size = w.wt.DWORD(0)
            blob = None
            if w.ncrypt.NCryptExportKey(handle.value, 0, "PUBLICBLOB", None, None, 0, ctypes.byref(size),
                                        NCRYPT_SILENT_FLAG) == 0:
                buf = ctypes.create_string_buffer(size.value)
                if w.ncrypt.NCryptExportKey(handle.value, 0, "PUBLICBLOB", None, buf, size, ctypes.byref(size),
                                            NCRYPT_SILENT_FLAG) == 0:
                    blob = buf.raw[:size.value]
            return KeyFacts(acquired=True, provider=provider, export_policy=policy, public_blob=blob)
        finally:
            if free.value and spec.value == CERT_NCRYPT_KEY_SPEC:
                w.ncrypt.NCryptFreeObject(handle.value)

    def _prov_info(self, ctx: Any) -> KeyProvInfo | None:
        w = self._win()
        found = self._prop_buffer(ctx, CERT_KEY_PROV_INFO_PROP_ID)
        if found is None:
            return None
        buf = found[0]                                  # alive until the strings below are copied out
        info = ctypes.cast(buf, ctypes.POINTER(w.CRYPT_KEY_PROV_INFO)).contents
        return KeyProvInfo(info.pwszContainerName or "", info.pwszProvName or "", int(info.dwProvType),
                           int(info.dwFlags), int(info.dwKeySpec))

    # ----------------------------------------------------------------- the store

    def list_store(self, location: str, name: str) -> list[StoreRecord]:
        if location != "LocalMachine":
            raise WindowsApiError("CertOpenStore", 0, f"only LocalMachine stores are read (not {location})")
        w = self._win()
        h = self._open(name, readonly=True)
        out: list[StoreRecord] = []
        try:
            ctx = w.crypt32.CertEnumCertificatesInStore(h, None)
            while ctx:
                c = ctx.contents
                der = ctypes.string_at(c.pbCertEncoded, c.cbCertEncoded)
                sha1 = self._prop(ctx, CERT_SHA1_HASH_PROP_ID)
                friendly = self._prop(ctx, CERT_FRIENDLY_NAME_PROP_ID)
                prov = self._prov_info(ctx)
                key = self._key_facts(ctx) if prov is not None else None
                out.append(StoreRecord(
                    location, name, der, sha1.hex().upper() if sha1 else thumbprint_of(der),
                    friendly.decode("utf-16-le").rstrip("\0") if friendly else "", prov, key))
                ctx = w.crypt32.CertEnumCertificatesInStore(h, ctx)   # frees the previous context
        finally:
            w.crypt32.CertCloseStore(h, 0)
        return out

    def import_pfx(self, store: str, pfx: bytes, password: str, exportable: bool, friendly_name: str) -> str:
        w = self._win()
        data = (ctypes.c_ubyte * len(pfx)).from_buffer_copy(pfx)
        blob = w.CRYPT_DATA_BLOB(len(pfx), ctypes.cast(data, ctypes.POINTER(ctypes.c_ubyte)))
        pw = ctypes.create_unicode_buffer(password)
        flags = CRYPT_MACHINE_KEYSET | PKCS12_PREFER_CNG_KSP | (CRYPT_EXPORTABLE if exportable else 0)
        try:
            temp = w.crypt32.PFXImportCertStore(ctypes.byref(blob), pw, flags)
        finally:
            ctypes.memset(pw, 0, ctypes.sizeof(pw))
            ctypes.memset(data, 0, len(pfx))
        if not temp:
            raise self._fail("PFXImportCertStore", "the renewed certificate cannot be imported")
        target = ca = None
        leaf_thumb = ""
        try:
            target = self._open(store, readonly=False)
            ca = self._open("CA", readonly=False)
            ctx = w.crypt32.CertEnumCertificatesInStore(temp, None)
            while ctx:
                c = ctx.contents
                der = ctypes.string_at(c.pbCertEncoded, c.cbCertEncoded)
                if self._prop(ctx, CERT_KEY_PROV_INFO_PROP_ID) is not None:      # the leaf: it has the key
                    added = w.PCCERT()
                    if not w.crypt32.CertAddCertificateContextToStore(target, ctx, CERT_STORE_ADD_REPLACE_EXISTING,
                                                                      ctypes.byref(added)):
                        raise self._fail("CertAddCertificateContextToStore",
                                         f"the renewed certificate cannot be added to LocalMachine\\{store}")
                    try:
                        if friendly_name:
                            text = ctypes.create_unicode_buffer(friendly_name)
                            fblob = w.CRYPT_DATA_BLOB(ctypes.sizeof(text), ctypes.cast(text, ctypes.POINTER(ctypes.c_ubyte)))
                            w.crypt32.CertSetCertificateContextProperty(added, CERT_FRIENDLY_NAME_PROP_ID, 0,
                                                                        ctypes.byref(fblob))
                    finally:
                        w.crypt32.CertFreeCertificateContext(added)
                    leaf_thumb = thumbprint_of(der)
                elif not w.crypt32.CertAddCertificateContextToStore(ca, ctx, CERT_STORE_ADD_USE_EXISTING, None):
                    log.warning("an intermediate certificate could not be added to LocalMachine\\CA (%s)",
                                _describe(ctypes.get_last_error()))   # type: ignore[attr-defined]
                ctx = w.crypt32.CertEnumCertificatesInStore(temp, ctx)
        finally:
            for h in (target, ca, temp):
                if h:
                    w.crypt32.CertCloseStore(h, 0)
        if not leaf_thumb:
            raise WindowsApiError("PFXImportCertStore", 0, "the PFX held no certificate with a private key")
        return leaf_thumb

    def delete(self, store: str, thumbprint: str, delete_key: bool) -> None:
        w = self._win()
        digest = bytes.fromhex(normalize_thumbprint(thumbprint))
        buf = (ctypes.c_ubyte * len(digest)).from_buffer_copy(digest)
        blob = w.CRYPT_DATA_BLOB(len(digest), ctypes.cast(buf, ctypes.POINTER(ctypes.c_ubyte)))
        h = self._open(store, readonly=False)
        try:
            ctx = w.crypt32.CertFindCertificateInStore(h, ENCODING, 0, CERT_FIND_SHA1_HASH, ctypes.byref(blob), None)
            if not ctx:
                return                                  # already gone: deleting is idempotent
            if delete_key:
                handle = ctypes.c_size_t(0)
                spec = w.wt.DWORD(0)
                free = w.wt.BOOL(False)
                if w.crypt32.CryptAcquireCertificatePrivateKey(
                        ctx, CRYPT_ACQUIRE_SILENT_FLAG | CRYPT_ACQUIRE_ONLY_NCRYPT_KEY_FLAG, None,
                        ctypes.byref(handle), ctypes.byref(spec), ctypes.byref(free)):
                    status = w.ncrypt.NCryptDeleteKey(handle.value, NCRYPT_SILENT_FLAG)   # frees the handle
                    if status != 0:
                        log.warning("the key of %s could not be deleted (%s)", thumbprint, _describe(status))
            if not w.crypt32.CertDeleteCertificateFromStore(ctx):                  # frees ctx
                raise self._fail("CertDeleteCertificateFromStore",
                                 f"{thumbprint} cannot be removed from LocalMachine\\{store}")
        finally:
            w.crypt32.CertCloseStore(h, 0)

    # ----------------------------------------------------------------- IIS and http.sys

    def _windir(self) -> str:
        self._win()
        return os.environ.get("windir") or os.environ.get("SystemRoot") or r"C:\Windows"

    def _run(self, args: Sequence[str], what: str) -> tuple[int, bytes]:
        try:
            proc = subprocess.run(list(args), capture_output=True, timeout=TOOL_TIMEOUT, check=False,
                                  creationflags=CREATE_NO_WINDOW)
        except FileNotFoundError:
            raise WindowsUnavailable(f"{args[0]} does not exist") from None
        except subprocess.TimeoutExpired:
            raise WindowsApiError(what, -1, f"{what} did not finish within {TOOL_TIMEOUT:g} s") from None
        except OSError as e:
            raise WindowsApiError(what, e.errno or -1, f"{what} cannot be started ({e.strerror or e})") from None
        return proc.returncode, proc.stdout + proc.stderr

    @staticmethod
    def _text(data: bytes) -> str:
        for enc in ("oem", "mbcs", "utf-8"):             # netsh writes the console (OEM) code page
            try:
                return data.decode(enc)
            except (LookupError, UnicodeDecodeError):
                continue
        return data.decode("utf-8", errors="replace")

    def list_iis_sites_xml(self) -> str | None:
        appcmd = os.path.join(self._windir(), "system32", "inetsrv", "appcmd.exe")
        if not os.path.isfile(appcmd):
            return None                                 # IIS is not installed
        code, out = self._run([appcmd, "list", "site", "/config", "/xml"], "appcmd list site")
        if code != 0:
            raise WindowsApiError("appcmd list site", code,
                                  f"appcmd list site exited {code}: {self._text(out).strip()[-300:]}")
        return out.decode("utf-8", errors="replace")    # /xml output is declared UTF-8

    def show_sslcert(self) -> str:
        netsh = os.path.join(self._windir(), "system32", "netsh.exe")
        code, out = self._run([netsh, "http", "show", "sslcert"], "netsh http show sslcert")
        if code != 0:
            raise WindowsApiError("netsh http show sslcert", code,
                                  f"netsh http show sslcert exited {code}: {self._text(out).strip()[-300:]}")
        return self._text(out)

    def update_sslcert(self, binding: SslBinding, thumbprint: str, store: str) -> None:
        netsh = os.path.join(self._windir(), "system32", "netsh.exe")
        args = [netsh, *update_sslcert_args(binding, thumbprint, store)]
        code, out = self._run(args, "netsh http update sslcert")
        if code != 0:
            raise WindowsApiError("netsh http update sslcert", code,
                                  f"netsh could not rebind {binding.endpoint} (exit {code}): "
                                  f"{self._text(out).strip()[-300:]}")
