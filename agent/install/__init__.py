"""Installing a renewed certificate where the old one was used: check, back up, write, reload, verify, roll back.

The room:

- :mod:`agent.install.pipeline`: the contract every pipeline follows (:class:`Installer`, the
  steps, :class:`InstallResult`) and the one verify-until-served loop they share. It imports
  no pipeline.
- :mod:`agent.install.files` (+ :mod:`~agent.install.file_request`, :mod:`~agent.install.reverter`):
  store files (PEM, DER, PKCS#12, JKS/JCEKS), backed up and restored on disk.
- :mod:`agent.install.windows`: the Windows certificate store, IIS and http.sys bindings.
- this module: the one dispatch. :func:`installer_for` picks the pipeline by the location's
  store type; :func:`request_for` and :func:`install` go through it. No other module asks
  whether a location is ``windows``; nothing in the room imports this module back.

::

    request = request_for(config, job_id="j-42", location=loc, key=key, cert_der=cert,
                          chain_ders=chain, expected_old_fingerprint=old_fp)
    result = install(request, data_dir=config.data_dir, on_step=report)
    result.state        # "verified", "rolled_back" or "failed"

Adding a pipeline: its module (an :class:`Installer`) and one line in :data:`INSTALLERS`.
May import the agent's config, stores, keys, probe and reload modules; never the wire.
"""
from __future__ import annotations

import os
from typing import Any

from agent.config import AgentConfig
from agent.install.file_request import InstallRequest
from agent.install.files import FileInstaller
from agent.install.pipeline import (FAILED, ROLLED_BACK, STEPS, VERIFIED, Installer, InstallResult, OnStep, Step,
                                    backup_dir)
from agent.install.windows import WindowsInstaller, WindowsInstallRequest
from agent.inventory import LocationKey
from agent.keys import PrivateKey

__all__ = [
    "InstallRequest", "WindowsInstallRequest", "InstallResult", "Installer", "Step", "install", "request_for",
    "installer_for", "VERIFIED", "ROLLED_BACK", "FAILED", "STEPS", "backup_dir", "INSTALLERS",
]

_FILES = FileInstaller()
#: a location's store type -> its pipeline; every store type not named here is a file store
INSTALLERS: dict[str, Installer] = {
    "windows": WindowsInstaller(),
}


def installer_for(store_type: str) -> Installer:
    """The pipeline that installs at locations of ``store_type``."""
    return INSTALLERS.get(store_type, _FILES)


def request_for(config: AgentConfig, *, job_id: str, location: LocationKey, key: PrivateKey, cert_der: bytes,
                chain_ders: tuple[bytes, ...] | list[bytes] = (), expected_old_fingerprint: str,
                ca_bundle: bytes | None = None) -> Any:
    """The install request for ``location``, as this agent's configuration says (its pipeline's kind).

    Raises :class:`~agent.errors.AgentError` subclasses with a clear message.
    """
    return installer_for(location.store_type).request(
        config, job_id=job_id, location=location, key=key, cert_der=cert_der, chain_ders=chain_ders,
        expected_old_fingerprint=expected_old_fingerprint, ca_bundle=ca_bundle)


def install(request: Any, data_dir: str | os.PathLike[str], on_step: OnStep | None = None) -> InstallResult:
    """Run ``request`` through its pipeline; never raises for a failed install: see ``result.state``."""
    return installer_for(request.location.store_type).install(request, data_dir, on_step)
