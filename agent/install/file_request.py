"""What a file install needs, and how it is made from the agent's configuration.

:class:`InstallRequest` names the location, the store, the new key, certificate and chain,
the companions of a PEM or DER location (key file, chain file), the reload action and the
endpoints to verify. :meth:`InstallRequest.from_config` fills it in from the store that
covers the location (``AgentConfig.store_for``) and finds a PEM certificate's key file.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

from agent.config import DEFAULT_VERIFY_TIMEOUT, AgentConfig, ReloadAction, Secret, StoreConfig, VerifyEndpoint
from agent.errors import InstallError, PasswordUnavailable
from agent.inventory import LocationKey
from agent.keys import PrivateKey
from agent.stores import ReadContext, StoreReadError, reader_for
from agent.stores.files import find_key_file
from agent.stores.pem import pem_blocks

__all__ = ["InstallRequest", "store_for"]


@dataclass(frozen=True)
class InstallRequest:
    """Everything one install needs. Build it with :meth:`from_config` where a config is at hand.

    ``location`` is where the old certificate was found (its file, for PEM the
    certificate file; ``chain_index`` 0). ``key_file``/``chain_file``: PEM and
    DER only, the files holding the key (when not the certificate file) and a
    separate chain. ``chain_ders``: the issuer chain, issuer first, root last
    when known. ``ca_bundle``: PEM roots for validating what endpoints serve
    (default: the endpoint's ``ca_file``, else the self-signed root at the end
    of ``chain_ders``, else the system trust store). ``key_password``: a
    JKS/JCEKS entry password when it differs from the store password.
    """

    job_id: str
    location: LocationKey
    store: StoreConfig
    key: PrivateKey = field(repr=False, compare=False)
    cert_der: bytes = field(repr=False)
    chain_ders: tuple[bytes, ...] = field(default=(), repr=False)
    expected_old_fingerprint: str = ""
    key_file: str | None = None
    chain_file: str | None = None
    reload: ReloadAction | None = None
    verify: tuple[VerifyEndpoint, ...] = ()
    verify_timeout: float = DEFAULT_VERIFY_TIMEOUT      # seconds, for all endpoints together
    probe_timeout: float = 3.0                          # seconds, one handshake
    ca_bundle: bytes | None = field(default=None, repr=False)
    require_valid_chain: bool = True
    allow_incomplete_chain: bool = True   # a served chain that lacks only intermediates we know: verified, warned
    key_password: Secret | None = field(default=None, repr=False)
    confirmations: int = 3          # handshakes in a row that must agree ...
    settle: float = 0.3             # ... over at least this many seconds (nginx keeps old workers ~0.1 s)

    def __post_init__(self) -> None:
        for name in ("key_file", "chain_file"):           # accept os.PathLike
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                object.__setattr__(self, name, os.fspath(value))
        if not isinstance(self.chain_ders, tuple):
            object.__setattr__(self, "chain_ders", tuple(self.chain_ders))
        if not isinstance(self.verify, tuple):
            object.__setattr__(self, "verify", tuple(self.verify))

    @property
    def new_fingerprint(self) -> str:
        return hashlib.sha256(self.cert_der).hexdigest()

    @classmethod
    def from_config(
        cls,
        config: AgentConfig,
        *,
        job_id: str,
        location: LocationKey,
        key: PrivateKey,
        cert_der: bytes,
        chain_ders: tuple[bytes, ...] | list[bytes] = (),
        expected_old_fingerprint: str,
        store_name: str | None = None,
        reload: str | None | bool = True,
        key_file: str | None = None,
        chain_file: str | None = None,
        ca_bundle: bytes | None = None,
    ) -> "InstallRequest":
        """A request using the agent's configuration for the store of ``location``.

        The store is ``store_name`` or the first store whose paths cover the
        location. ``reload``: True uses the store's configured action, a name
        picks another action (it must be defined in this agent's config:
        :class:`~agent.errors.ReloadNotAllowed` otherwise), False/None runs
        none. The endpoints and verify timeout are the store's. For PEM and DER
        locations without a key in the certificate file, ``key_file`` is found
        with :func:`~agent.stores.files.find_key_file` when not given.
        Raises :class:`~agent.errors.AgentError` subclasses with a clear message.
        """
        store = store_for(config, location, store_name)
        action: ReloadAction | None = None
        if reload is True:
            action = config.reload_action(store.reload) if store.reload else None
        elif isinstance(reload, str):
            action = config.reload_action(reload)
        if location.store_type in ("pem", "der") and key_file is None:
            key_file = _locate_key_file(location, store)
        return cls(
            job_id=job_id, location=location, store=store, key=key, cert_der=cert_der,
            chain_ders=tuple(chain_ders), expected_old_fingerprint=expected_old_fingerprint, key_file=key_file,
            chain_file=chain_file, reload=action, verify=store.verify, verify_timeout=store.verify_timeout,
            ca_bundle=ca_bundle,
        )


def store_for(config: AgentConfig, location: LocationKey, store_name: str | None) -> StoreConfig:
    if store_name is not None:
        try:
            return config.store(store_name)
        except KeyError:
            raise InstallError(f"there is no store called {store_name!r} in this agent's configuration") from None
    store = config.store_for(location.path)
    if store is None:
        raise InstallError(f"{location.path} is not in any store of this agent's configuration")
    return store


def _locate_key_file(location: LocationKey, store: StoreConfig) -> str | None:
    """None when the certificate file holds the key itself; else the key file beside it; InstallError if none."""
    try:
        with open(location.path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise InstallError(f"{location.path} cannot be read ({e.strerror or e})") from None
    if location.store_type == "pem" and any(b.is_key for b in pem_blocks(data)):
        return None
    try:
        password = store.read_password()
    except PasswordUnavailable:
        password = None
    ctx = ReadContext(password=lambda: password)
    try:
        entries = reader_for(location.store_type).read(location.path, data, ctx)
    except StoreReadError as e:
        raise InstallError(f"{location.path} cannot be read: {e}") from None
    old = next((e.der for e in entries if e.key.alias == location.alias
                and e.key.chain_index == location.chain_index), None)
    if old is None:
        raise InstallError(f"{location.path} holds no certificate at the requested location")
    found = find_key_file(location.path, old, None, password)
    if found is None:
        raise InstallError(
            f"no file beside {location.path} holds the key of its certificate; name the key file in the request"
        )
    return None if found == os.path.abspath(location.path) else found
