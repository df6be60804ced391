#!/usr/bin/python3
"""Describe how a systemd service unit starts its process, as JSON on stdout.

    certfleet-unit-describe.py UNIT[.service]

Used by the certfleet Ansible roles in ``certfleet_service_manager: direct`` mode
(hosts where systemd is not PID 1): the role starts the unit's own ExecStart,
as the unit's User/Group, with start-stop-daemon. This script only reads files;
it never starts anything.

It reads the unit the way systemd would find it (``/etc/systemd/system``,
``/run/systemd/system``, ``/usr/local/lib/systemd/system``,
``/lib/systemd/system``, ``/usr/lib/systemd/system``, first found wins) plus its
drop-ins (``UNIT.d/*.conf`` in the same directories, applied in file-name
order), and prints::

    {"unit": ..., "path": ..., "dropins": [...],
     "argv": [...],                 # ExecStart, environment and specifiers expanded
     "pre": [[...], ...],           # ExecStartPre command lines (each an argv)
     "user": "certfleet", "group": "certfleet",   # "root" when not set
     "working_directory": "/",
     "umask": "0022",
     "environment": {...},          # Environment= and EnvironmentFile= merged
     "directories": [{"path", "mode", "owner"}...],  # RuntimeDirectory=, StateDirectory=, ...
     "ignored": ["ProtectSystem", ...]}   # settings direct mode cannot apply

Exit status 0 with the JSON; 2 with a one-line reason on stderr when the unit is
missing, masked, or uses something direct mode cannot do (Type=forking, an
unknown specifier, no ExecStart).
"""
from __future__ import annotations

import json
import os
import pwd
import re
import shlex
import sys
from pathlib import Path

UNIT_DIRS = (
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
)
# settings whose value is a list: an empty assignment resets it
LIST_KEYS = {
    "ExecStart", "ExecStartPre", "Environment", "EnvironmentFile", "RuntimeDirectory", "StateDirectory",
    "LogsDirectory", "CacheDirectory", "ConfigurationDirectory",
}
DIRECTORY_KINDS = {
    "RuntimeDirectory": "/run",
    "StateDirectory": "/var/lib",
    "LogsDirectory": "/var/log",
    "CacheDirectory": "/var/cache",
    "ConfigurationDirectory": "/etc",
}
# sandboxing and privilege settings a plain start-stop-daemon cannot reproduce
NOT_APPLIED = (
    "NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "ProtectKernelTunables",
    "ProtectKernelModules", "ProtectControlGroups", "ReadWritePaths", "ReadOnlyPaths", "InaccessiblePaths",
    "CapabilityBoundingSet", "AmbientCapabilities", "SystemCallFilter", "RestrictAddressFamilies",
    "MemoryDenyWriteExecute", "LockPersonality", "RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID",
    "ProtectClock", "ProtectHostname", "ProtectKernelLogs", "ProtectProc", "ProcSubset", "PrivateUsers",
    "SystemCallArchitectures", "DevicePolicy", "Restart", "LimitNOFILE", "MemoryMax", "TasksMax",
)


class UnitError(Exception):
    pass


def find_unit(name: str) -> tuple[Path, list[Path]]:
    main: Path | None = None
    for d in UNIT_DIRS:
        p = Path(d) / name
        if p.exists() or p.is_symlink():
            if p.is_symlink() and os.path.realpath(p) == "/dev/null":
                raise UnitError(f"{name} is masked ({p} -> /dev/null)")
            main = p
            break
    if main is None:
        raise UnitError(f"no unit file {name} in {', '.join(UNIT_DIRS)} (is the package installed?)")
    # drop-ins: by file name across all directories; a name in an earlier directory hides later ones
    dropins: dict[str, Path] = {}
    for d in UNIT_DIRS:
        dd = Path(d) / f"{name}.d"
        if dd.is_dir():
            for f in sorted(dd.glob("*.conf")):
                dropins.setdefault(f.name, f)
    return main, [dropins[k] for k in sorted(dropins)]


def read_service_section(paths: list[Path]) -> dict[str, list[str]]:
    """The [Service] settings of the unit and its drop-ins, list settings accumulated (empty resets)."""
    settings: dict[str, list[str]] = {}
    for path in paths:
        section = None
        pending = ""
        for raw in path.read_text(encoding="utf-8").splitlines():
            line = pending + raw.strip() if pending else raw.strip()
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            pending = ""
            if not line or line[0] in "#;":
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
                continue
            if section != "Service" or "=" not in line:
                continue
            key, value = (s.strip() for s in line.split("=", 1))
            if key in LIST_KEYS:
                if value == "":
                    settings[key] = []
                else:
                    settings.setdefault(key, []).append(value)
            else:
                settings[key] = [value]
    return settings


def last(settings: dict[str, list[str]], key: str, default: str = "") -> str:
    values = settings.get(key) or []
    return values[-1] if values else default


def expand_specifiers(text: str, unit: str) -> str:
    prefix = unit.rsplit(".", 1)[0]
    table = {
        "%": "%", "n": unit, "N": prefix, "p": prefix.split("@", 1)[0], "t": "/run", "S": "/var/lib",
        "L": "/var/log", "C": "/var/cache", "E": "/etc", "T": "/tmp", "V": "/var/tmp",
    }

    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in table:
            raise UnitError(f"{unit}: specifier %{key} is not supported in direct mode")
        return table[key]

    return re.sub(r"%(.)", sub, text)


def parse_environment(settings: dict[str, list[str]], unit: str) -> dict[str, str]:
    env: dict[str, str] = {}
    # systemd applies EnvironmentFile= after Environment=: files win
    for value in settings.get("Environment", []):
        for word in shlex.split(expand_specifiers(value, unit)):
            if "=" in word:
                k, v = word.split("=", 1)
                env[k] = v
    for value in settings.get("EnvironmentFile", []):
        optional = value.startswith("-")
        path = Path(expand_specifiers(value.lstrip("-"), unit))
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            if optional:
                continue
            raise UnitError(f"{unit}: EnvironmentFile {path} does not exist") from None
        for line in text.splitlines():
            line = line.strip()
            if not line or line[0] in "#;" or "=" not in line:
                continue
            k, v = line.split("=", 1)
            v = v.strip()
            if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
                v = v[1:-1]
            env[k.strip()] = v
    return env


_VAR_WORD = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)$")
_VAR_BRACED = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def command_line(value: str, env: dict[str, str], unit: str) -> tuple[list[str], bool]:
    """An Exec line as an argv: (argv, run_as_root). Handles the -, :, +, ! prefixes."""
    expand, as_root = True, False
    while value and value[0] in "-@:+!":
        c = value[0]
        if c == "@":
            raise UnitError(f"{unit}: Exec lines with '@' (a different argv[0]) are not supported in direct mode")
        if c == ":":
            expand = False
        if c == "+":
            as_root = True
        value = value[1:]
    words = shlex.split(expand_specifiers(value, unit))
    if not words:
        raise UnitError(f"{unit}: empty Exec line")
    if not expand:
        return words, as_root
    argv: list[str] = []
    for w in words:
        m = _VAR_WORD.match(w)
        if m:   # $VAR alone: split on white space, dropped when empty
            argv.extend(env.get(m.group(1), "").split())
        else:
            argv.append(_VAR_BRACED.sub(lambda mm: env.get(mm.group(1), ""), w))
    return argv, as_root


def describe(unit: str) -> dict:
    if "." not in unit:
        unit += ".service"
    main, dropins = find_unit(unit)
    settings = read_service_section([main, *dropins])
    kind = last(settings, "Type", "simple")
    if kind not in ("simple", "exec", "notify", "notify-reload", "idle"):
        raise UnitError(f"{unit}: Type={kind} cannot be run in direct mode (simple, exec or notify only)")
    env = parse_environment(settings, unit)
    starts = settings.get("ExecStart") or []
    if len(starts) != 1:
        raise UnitError(f"{unit}: needs exactly one ExecStart line, has {len(starts)}")
    argv, as_root = command_line(starts[0], env, unit)
    if not os.path.isabs(argv[0]):
        raise UnitError(f"{unit}: ExecStart must start with an absolute path, not {argv[0]!r}")
    user = "root" if as_root else (last(settings, "User") or "root")
    group = "root" if as_root else last(settings, "Group")
    if not group:
        try:
            import grp

            group = grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name
        except KeyError:
            raise UnitError(f"{unit}: User={user} does not exist on this host") from None
    workdir = last(settings, "WorkingDirectory", "/").lstrip("-")
    if workdir == "~":
        try:
            workdir = pwd.getpwnam(user).pw_dir
        except KeyError:
            raise UnitError(f"{unit}: User={user} does not exist on this host") from None
    directories = []
    for key, base in DIRECTORY_KINDS.items():
        mode = last(settings, f"{key}Mode", "0755")
        for value in settings.get(key, []):
            for rel in value.split():
                directories.append({
                    "path": os.path.join(base, expand_specifiers(rel, unit)),
                    "mode": mode,
                    "owner": user,
                    "group": group,
                })
    return {
        "unit": unit,
        "path": str(main),
        "dropins": [str(p) for p in dropins],
        "type": kind,
        "argv": argv,
        "pre": [command_line(v, env, unit)[0] for v in settings.get("ExecStartPre", [])],
        "user": user,
        "group": group,
        "working_directory": workdir,
        "umask": last(settings, "UMask", "0022"),
        "environment": env,
        "directories": directories,
        "ignored": sorted(k for k in NOT_APPLIED if k in settings),
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: certfleet-unit-describe.py UNIT", file=sys.stderr)
        return 2
    try:
        print(json.dumps(describe(argv[1]), indent=1, sort_keys=True))
    except (UnitError, OSError, ValueError) as e:
        print(f"certfleet-unit-describe: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
