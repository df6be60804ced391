"""The install store check is made on the path as it resolves: a symlinked directory inside a store
does not let ``store/link/../x.pem`` land outside the store (real files, real install)."""
from __future__ import annotations

import os
from pathlib import Path

from agent.config import StoreConfig
from agent.install import FAILED, VERIFIED, InstallRequest, install
from agent.inventory import LocationKey
from agent.keys import new_key
from tests.helpers.install_sites import TestCA, make_pem_site


def test_symlinked_directory_cannot_take_an_install_outside_the_store(tmp_path: Path) -> None:
    ca = TestCA()
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    outside = make_pem_site(tmp_path / "outside", ca, "combined")       # outside/<cert>, the victim
    (store_dir / "link").symlink_to(tmp_path / "outside" / "deeper", target_is_directory=True)
    (tmp_path / "outside" / "deeper").mkdir()
    sneaky = f"{store_dir}/link/../{outside.cert_path.name}"            # normalised: store/<cert>
    before = outside.cert_path.read_bytes()
    key = new_key("ec-p256")
    issued = ca.issue(key)
    req = InstallRequest(job_id="j-out", location=LocationKey("pem", sneaky, "", 0),
                         store=StoreConfig("web", "pem", (f"{store_dir}/*.pem",)), key=key, cert_der=issued.cert_der,
                         chain_ders=issued.chain_ders, expected_old_fingerprint=outside.issued.fingerprint)
    res = install(req, tmp_path / "data")
    assert res.state == FAILED and "resolves outside the store" in res.reason, res.reason
    assert outside.cert_path.read_bytes() == before


def test_a_store_reached_through_a_symlinked_directory_still_installs(tmp_path: Path) -> None:
    ca = TestCA()
    site = make_pem_site(tmp_path / "real", ca, "combined")
    os.symlink(tmp_path / "real", tmp_path / "via")                     # the store is configured via a link
    key = new_key("ec-p256")
    issued = ca.issue(key)
    path = str(tmp_path / "via" / site.cert_path.name)
    req = InstallRequest(job_id="j-in", location=LocationKey("pem", path, "", 0),
                         store=StoreConfig("web", "pem", (f"{tmp_path}/via/*.pem",)), key=key,
                         cert_der=issued.cert_der, chain_ders=issued.chain_ders,
                         expected_old_fingerprint=site.issued.fingerprint)
    res = install(req, tmp_path / "data")
    assert res.state == VERIFIED, res.reason
