"""``certfleet-collector``: run the collector and set up its admin identities."""
from __future__ import annotations

import argparse
import asyncio
import logging
import pathlib
import sys

from collector import __version__
from certfleet.logformat import configure
from collector.errors import CollectorError

log = logging.getLogger("certfleet.collector")

ROLES = ("admin", "operator", "owner", "auditor", "approver")


def _setup_logging(verbose: bool, fmt: str = "plain") -> None:
    configure(fmt, logging.DEBUG if verbose else logging.INFO)   # certfleet/logformat.py: plain or json lines
    if not verbose:
        logging.getLogger("alembic").setLevel(logging.WARNING)


# Each command imports what it runs when it runs (start-up time: `certfleet-collector --help` and a
# mistyped command answer without loading grpc, SQLAlchemy and the issuers).


def cmd_serve(ns: argparse.Namespace) -> int:
    # start-up time: each command loads only what it needs (see above)
    from collector.config.core import load_config
    from collector.server.server import serve

    config = load_config(ns.config)
    if (ns.log_format or config.log.format) != "plain":   # --log-format, else [log] format
        _setup_logging(ns.verbose, ns.log_format or config.log.format)

    def ready(server) -> None:  # noqa: ANN001
        print(
            f"certfleet-collector {__version__} ready: agents/admin on {config.listen}, "
            f"enrollment on {config.enroll_listen}, CA fingerprint {server.state.ca.fingerprint_sha256}",
            flush=True,
        )

    asyncio.run(serve(config, ready))
    return 0


def _local_actor() -> str:
    """Who runs a command on the collector host, for the audit trail: ``local:<OS user>``."""
    import getpass

    try:
        return f"local:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no user name (e.g. a container without one)
        import os

        return f"local:uid{os.getuid()}" if hasattr(os, "getuid") else "local"


def cmd_init_admin(ns: argparse.Namespace) -> int:
    import datetime as dt

    from cryptography.hazmat.primitives import serialization

    # start-up time: each command loads only what it needs (see above)
    from collector.config.client import write_client_config
    from collector.config.core import load_config
    from collector.services.enrollment import serial_hex
    from collector.pki import write_private_file
    from collector.errors import InvalidInput
    from collector.server.server import prepare, utcnow

    team = (ns.team or "").strip().lower() or None
    if ns.role == "owner" and team is None:
        raise InvalidInput("role owner needs --team: the owner (team) it acts for (see: certfleet owners list)")
    if ns.role != "owner" and team is not None:
        raise InvalidInput(f"--team is only for role owner, not role {ns.role}")
    config = load_config(ns.config)
    state = prepare(config)
    try:
        if team is not None:
            known = [o.name for o in state.registry.owners.list_owners()]
            if team not in known:
                raise InvalidInput(
                    f"no owner {team!r} to act for (owners: {', '.join(known) or 'none yet'}); "
                    f"add it first with: certfleet owners add {team} --email ...")
        now = utcnow()
        cert, key = state.ca.issue_admin_certificate(
            ns.name, ns.role, now, lifetime=dt.timedelta(seconds=config.admin_cert_lifetime)
        )
        state.registry.record_admin_identity(serial_hex(cert), ns.name, ns.role, cert.not_valid_after_utc, now,
                                             actor=_local_actor(), team=team)
    finally:
        state.registry.close()
    out = pathlib.Path(ns.out)
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_private_file(
        out / "admin.key",
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    (out / "admin.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (out / "ca.pem").write_bytes(state.ca.cert_pem)
    host = config.agent_endpoint
    path = write_client_config(out, host)
    print(f"admin identity {ns.name!r} (role {ns.role}{f', team {team}' if team else ''}) written to {out}")
    print(f"use it with: certfleet --config {path} ...   (or export CERTFLEET_CONFIG={path})")
    return 0


def cmd_ca_fingerprint(ns: argparse.Namespace) -> int:
    # start-up time: each command loads only what it needs (see above)
    from collector.config.core import load_config
    from collector.server.server import prepare

    config = load_config(ns.config)
    state = prepare(config)     # the collector CA is the registry's (collector/pki/shared.py)
    state.registry.close()
    print(state.ca.fingerprint_sha256)
    return 0


def cmd_ca_status(ns: argparse.Namespace) -> int:
    """Where each CA's key lives: the collector CA (files in data_dir/pki) and every internal CA issuer
    (the registry: wrapped with which KEK, or in which token), with its origin and root fingerprint."""
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    # start-up time: each command loads only what it needs (see above)
    from collector.config.core import load_config
    from collector.pki.keywrap import load_key_wrapper
    from collector.registry import Registry

    config = load_config(ns.config)
    wrapper = load_key_wrapper(config.keys, config.data_dir, config.base_dir)
    print(f"key-encryption key: id {wrapper.kek_id} from {wrapper.source}")
    print(f"collector CA (agent and admin identities): files in {config.pki_dir}")
    with Registry.open(config.database_url) as registry:
        rows = {r.issuer: r for r in registry.issuer_state.list()}
        for name, cfg in sorted(config.issuers.items()):
            if cfg.get("type") != "internal_ca":
                print(f"issuer {name}: type {cfg.get('type')}, no CA key held")
                continue
            row = rows.get(name)
            if row is None:
                print(f"issuer {name}: internal CA, not made yet (made at the first collector start)")
                continue
            root = x509.load_pem_x509_certificate(row.root_pem.encode())
            fp = root.fingerprint(hashes.SHA256()).hex()
            where = (f"registry, wrapped with KEK {row.kek_id}" + ("" if row.kek_id == wrapper.kek_id
                                                                   else " (not this collector's KEK)")
                     if row.key_store == "kek" else f"{row.key_store} token, label "
                     f"{bytes(row.key_ref).decode(errors='replace')} (never exported)")
            root_key = ("registry, wrapped" if row.root_key_ref is not None else "not held (offline)")
            issued = registry.issuer_state.issued_count(name)
            revoked = len(registry.issuer_state.revocations(name))
            print(f"issuer {name}: internal CA ({row.origin}, made {row.created_at:%Y-%m-%d %H:%M} UTC by "
                  f"{row.created_by}); root SHA-256 {fp}; issuing key: {where}; root key: {root_key}; "
                  f"{issued} issued, {revoked} revoked; key ref digest "
                  f"{hashlib.sha256(bytes(row.key_ref)).hexdigest()[:12]}")
    return 0


def cmd_ca_new_kek(ns: argparse.Namespace) -> int:
    # start-up time: each command loads only what it needs (see above)
    from collector.pki.keywrap import generate_kek_file

    print(f"new key-encryption key {generate_kek_file(pathlib.Path(ns.out))} written to {ns.out} (mode 0600)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="certfleet-collector", description="certfleet collector")
    p.add_argument("--version", action="version", version=f"certfleet-collector {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the collector")
    s.add_argument("--config", required=True, help="collector TOML config")
    s.add_argument("--log-format", choices=("plain", "json"), default=None,
                   help="log lines as text (default) or one JSON object per line; overrides [log] format")
    s.set_defaults(func=cmd_serve)
    s = sub.add_parser("init-admin", help="write an admin identity and a client config for the certfleet CLI")
    s.add_argument("--config", required=True, help="collector TOML config")
    s.add_argument("--out", required=True, help="folder for admin.pem, admin.key, ca.pem and certfleet.toml")
    s.add_argument("--name", default="admin", help="name of this admin identity (default: admin)")
    s.add_argument("--role", default="admin", choices=ROLES, help="role (default: admin)")
    s.add_argument("--team", default=None,
                   help="role owner only (and required for it): the owner, as in `certfleet owners list`, "
                        "whose certificates this identity may read and renew")
    s.set_defaults(func=cmd_init_admin)
    s = sub.add_parser("ca-fingerprint", help="print the SHA-256 fingerprint of the collector CA (creates it on first use)")
    s.add_argument("--config", required=True, help="collector TOML config")
    s.set_defaults(func=cmd_ca_fingerprint)
    s = sub.add_parser("ca", help="the CAs' keys: where they live, a new key-encryption key")
    ca = s.add_subparsers(dest="ca_command", required=True)
    c = ca.add_parser("status", help="where each CA key lives (registry wrapped with a KEK, or files)")
    c.add_argument("--config", required=True, help="collector TOML config")
    c.set_defaults(func=cmd_ca_status)
    c = ca.add_parser("new-kek", help="write a new key-encryption key file (0600) for [keys] kek_file")
    c.add_argument("--out", required=True, help="the file to write (must not exist)")
    c.set_defaults(func=cmd_ca_new_kek)
    return p


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    _setup_logging(ns.verbose)
    try:
        return ns.func(ns)
    except CollectorError as e:
        print(f"certfleet-collector: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
