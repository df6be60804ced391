"""Owner webhook URLs (often carrying a secret) are shown in full to the admin role only: an auditor
or an operator sees scheme and host, and the audit trail keeps no more either."""
from __future__ import annotations

import os
import pathlib

from tests.e2e.harness import Collector

SECRET_HOOK = "https://hooks.example.com/services/T000/B000/s3cr3t-path?token=abcdef"


def test_webhook_redacted_for_every_role_but_admin(tmp_path: pathlib.Path) -> None:
    c = Collector(tmp_path / "collector")
    c.start()
    try:
        assert c.init_admin().code == 0
        r = c.cli("owners", "add", "web", "--email", "web@example.com", "--webhook", SECRET_HOOK)
        assert r.code == 0, r.err
        admin = {o["name"]: o for o in c.cli("owners", "list", "--format", "json").json()}
        assert admin["web"]["webhook"] == SECRET_HOOK
        for role in ("auditor", "operator"):
            out = tmp_path / role
            assert c.init_admin(name=f"{role}1", role=role, out=out).code == 0
            env = dict(os.environ, CERTFLEET_CONFIG=str(out / "certfleet.toml"))
            r = c.cli("owners", "list", "--format", "json", env=env)
            assert r.code == 0, r.err
            assert "s3cr3t" not in r.out and "token=" not in r.out
            assert {o["name"]: o for o in r.json()}["web"]["webhook"] == "https://hooks.example.com/..."
            r = c.cli("owners", "list", env=env)            # the table too
            assert "s3cr3t" not in r.out
        r = c.cli("audit", "list", "--format", "json", "--action", "owner")
        assert r.code == 0 and "owner.create" in r.out and "s3cr3t" not in r.out
    finally:
        c.stop()
