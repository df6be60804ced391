"""The ``certfleet`` parser and dispatch (collector/cli/main.py, command.py): every command there is,
in the order ``--help`` lists them, each resolving to a handler of the one calling convention, every
group's help and usage errors as users see them, and the exit codes of ``main`` when the collector
cannot be used. No collector runs here; tests/e2e calls every command against a real one."""
from __future__ import annotations

import argparse
import inspect
import pathlib
import subprocess
import sys
import typing

import grpc
import pytest

from collector.cli import main as cli

# every command a user can run, as typed; a command that disappears, or a new one not listed, fails
COMMANDS = [
    "token create",
    "certs list", "certs show",
    "agents list", "agents resync", "agents revoke", "agents label", "agents rename",
    "renew",
    "jobs list", "jobs show", "jobs retry", "jobs cancel",
    "revoke",
    "audit verify", "audit export", "audit list", "audit checkpoint export",
    "owners list", "owners add", "owners update", "owners remove",
    "owners rules list", "owners rules add", "owners rules remove", "owners rules reorder",
    "owners orphans", "owners explain", "owners assignments",
    "assign", "unassign",
    "policy show", "policy set",
    "violations list",
    "exceptions add", "exceptions list", "exceptions remove",
    "notify run", "notify deliveries",
    "report",
    "netscan start", "netscan list", "netscan show",
    "stale",
    "names grant", "names allow", "names list", "names revoke", "names check", "names propose", "names adopt",
    "approvals list", "approvals show", "approvals approve", "approvals deny",
]
TOP = ["token", "certs", "agents", "renew", "jobs", "revoke", "audit", "owners", "assign", "unassign", "policy",
       "violations", "exceptions", "notify", "report", "netscan", "stale", "names", "approvals"]
# a group given without its action: argparse names the missing argument by the group's dest
GROUP_DEST = {"token": "action", "certs": "action", "agents": "action", "jobs": "action", "audit": "audit_command", "audit checkpoint": "checkpoint_command",
              "owners": "action", "owners rules": "rules_action", "policy": "action", "violations": "action",
              "exceptions": "action", "notify": "notify_command", "netscan": "netscan_command",
              "names": "action", "approvals": "action"}


def subcommands(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            return dict(a.choices)
    return {}


def walk(p: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    subs = subcommands(p)
    if not subs:
        yield " ".join(path), p
    for name, sp in subs.items():
        yield from walk(sp, path + (name,))


def groups(p: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    subs = subcommands(p)
    if subs:
        yield " ".join(path), p
    for name, sp in subs.items():
        yield from groups(sp, path + (name,))


def test_every_command_is_there_in_the_order_help_lists_them() -> None:
    parser = cli.build_parser()
    assert [path for path, _ in walk(parser)] == COMMANDS
    assert list(subcommands(parser)) == TOP


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_resolves_to_a_handler_of_the_one_convention(command: str) -> None:
    leaf = dict(walk(cli.build_parser()))[command]
    handler = leaf.get_default("func")
    assert callable(handler), f"{command} has no handler"
    assert handler.__module__.startswith("collector.cli."), handler.__module__
    params = list(inspect.signature(handler).parameters)
    assert params == ["channel", "ns"], f"{command}: {handler.__qualname__}{params} is not (channel, ns)"
    assert leaf.get_default("needs_channel") is None         # one convention: no per-command flag
    hints = typing.get_type_hints(handler)
    assert (hints["channel"], hints["ns"], hints["return"]) == (grpc.Channel, argparse.Namespace, int)


def test_every_module_registers_through_register() -> None:
    for module in cli.COMMANDS:
        assert callable(getattr(module, "register", None)), module.__name__
        assert list(inspect.signature(module.register).parameters) == ["subparsers"], module.__name__


@pytest.mark.parametrize("group", ["", *[g for g in GROUP_DEST], "renew", "revoke", "report", "stale", "assign"])
def test_help_of_every_group_and_command(group: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [*group.split(), "--help"]
    with pytest.raises(SystemExit) as e:
        cli.build_parser().parse_args(argv)
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: certfleet {group}".rstrip()), out[:80]
    if group in dict(groups(cli.build_parser())):
        for name in subcommands(dict(groups(cli.build_parser()))[group]):
            assert name in out


@pytest.mark.parametrize("group,dest", sorted(GROUP_DEST.items()))
def test_a_group_without_its_action_is_a_usage_error(group: str, dest: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli.build_parser().parse_args(group.split())
    assert e.value.code == 2
    assert f"the following arguments are required: {dest}" in capsys.readouterr().err


def test_no_command_at_all_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli.build_parser().parse_args([])
    assert e.value.code == 2
    assert "certfleet: error: the following arguments are required: group" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from collector import __version__

    with pytest.raises(SystemExit) as e:
        cli.build_parser().parse_args(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out == f"certfleet {__version__}\n"


@pytest.mark.parametrize("argv,expected", [
    (["certs", "list"], {"format": "table", "expiring_within": None, "include_removed": False}),
    (["certs", "list", "--expiring-within", "30", "--format", "csv"], {"expiring_within": "30", "format": "csv"}),
    (["token", "create"], {"ttl": "1h", "format": "text", "note": None}),
    (["renew", "ab12", "--location", "/etc/ssl/a.pem", "--wait"],
     {"fingerprint": "ab12", "path": "/etc/ssl/a.pem", "wait": True, "timeout": 600}),
    (["jobs", "list"], {"limit": 50, "state": None, "format": "table"}),
    (["jobs", "retry", "j1"], {"job": "j1", "wait": False, "timeout": 600}),
    (["revoke", "ab12", "--reason", "superseded"], {"fingerprint": "ab12", "reason": "superseded"}),
    (["agents", "revoke", "a1"], {"agent": "a1", "reason": ""}),
    (["audit", "list"], {"limit": 50, "format": "table"}),
    (["netscan", "start", "--agent", "a", "--targets", "10.0.0.1", "--targets", "10.0.0.2", "--ports", "443"],
     {"targets": ["10.0.0.1", "10.0.0.2"], "ports": ["443"], "wait_timeout": 600, "format": "text"}),
    (["report", "expiring", "--format", "html", "--out", "r.html"], {"name": "expiring", "format": "html", "out": "r.html"}),
    (["owners", "rules", "reorder", "a", "b"], {"names": ["a", "b"]}),
    (["exceptions", "remove", "7"], {"id": 7}),
    (["policy", "show"], {"format": "text"}),
    (["notify", "deliveries", "--failed"], {"failed": True, "limit": 50, "format": "table"}),
])
def test_flags_keep_their_names_and_defaults(argv: list[str], expected: dict) -> None:
    ns = vars(cli.build_parser().parse_args(argv))
    assert {k: ns[k] for k in expected} == expected


@pytest.mark.parametrize("argv,message", [
    (["revoke", "ab12"], "the following arguments are required: --reason"),
    (["report", "expiring", "--all", "--limit", "5"], "not allowed with argument"),
    (["exceptions", "add", "--rule", "r", "--reason", "x", "--expires", "30d"],
     "one of the arguments --fingerprint --owner --pattern is required"),
    (["certs", "list", "--format", "xml"], "invalid choice: 'xml'"),
    (["owners", "rules", "add", "--name", "n", "--criticality", "extreme"], "invalid choice: 'extreme'"),
])
def test_usage_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli.build_parser().parse_args(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


# -- main: config, channel and exit codes, through the installed console script -------------------


def certfleet(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    exe = pathlib.Path(sys.executable).parent / "certfleet"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", **(env or {})})


def test_without_a_client_config_exit_2_says_how_to_get_one() -> None:
    r = certfleet("certs", "list")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == ("certfleet: no client config: pass --config PATH or set CERTFLEET_CONFIG "
                        "(certfleet-collector init-admin writes one)\n")


def test_a_usage_error_comes_before_the_config(tmp_path: pathlib.Path) -> None:
    r = certfleet("--config", str(tmp_path / "missing.toml"), "certs", "list", "--format", "xml")
    assert r.returncode == 2 and "invalid choice: 'xml'" in r.stderr


def test_a_missing_identity_file_is_named(tmp_path: pathlib.Path) -> None:
    from collector.config.client import write_client_config

    path = write_client_config(tmp_path, "127.0.0.1:1")
    r = certfleet("--config", str(path), "agents", "list")
    assert r.returncode == 2
    assert r.stderr == f"certfleet: cannot read the admin identity ({tmp_path / 'ca.pem'}): No such file or directory\n"


def test_an_unreachable_collector_exit_1_names_it(tmp_path: pathlib.Path, admin_identity: pathlib.Path) -> None:
    from tests.conftest import free_port

    from collector.config.client import write_client_config

    where = f"127.0.0.1:{free_port()}"       # nothing listens there
    path = write_client_config(admin_identity, where, server_name="localhost")
    r = certfleet("--config", str(path), "agents", "list")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith(f"certfleet: cannot reach the collector at {where}: "), r.stderr


def test_the_environment_names_the_config(tmp_path: pathlib.Path) -> None:
    r = certfleet("certs", "list", env={"CERTFLEET_CONFIG": str(tmp_path / "nowhere.toml")})
    assert r.returncode == 2 and r.stderr == f"certfleet: {tmp_path / 'nowhere.toml'}: no such client config\n"


@pytest.fixture
def admin_identity(tmp_path: pathlib.Path) -> pathlib.Path:
    """A CA, and an admin certificate and key it signed, as init-admin writes them (ca.pem, admin.pem, admin.key)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)

    def cert(subject: str, key, issuer: str, signer, ca: bool) -> x509.Certificate:  # noqa: ANN001
        return (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                .sign(signer, hashes.SHA256()))

    ca_key, admin_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    out = tmp_path / "admin"
    out.mkdir()
    pem = serialization.Encoding.PEM
    (out / "ca.pem").write_bytes(cert("test CA", ca_key, "test CA", ca_key, True).public_bytes(pem))
    (out / "admin.pem").write_bytes(cert("admin", admin_key, "test CA", ca_key, False).public_bytes(pem))
    (out / "admin.key").write_bytes(admin_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                            serialization.NoEncryption()))
    return out
