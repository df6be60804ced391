"""Apache httpd: ``SSLCertificateFile`` and friends, through ``Include``/``IncludeOptional``, ``Define`` and ``${VAR}``."""
from __future__ import annotations

import glob as globmod
import os
import re
import shlex
from typing import Iterable

from agent.discovery.servers.base import ConfigRef, Directive, FileAccess, abs_path

__all__ = ["parse_apache", "read_apache", "APACHE_PATHS"]


APACHE_PATHS = {
    "sslcertificatefile": True,
    "sslcertificatekeyfile": True,
    "sslcertificatechainfile": False,
    "sslcacertificatefile": False,
    "sslproxymachinecertificatefile": False,
}
_APACHE_KEEP = set(APACHE_PATHS) | {"include", "includeoptional", "serverroot", "define"}
_APACHE_VAR = re.compile(r"\$\{([A-Za-z0-9_.\-]+)\}")


def _apache_lines(text: str) -> Iterable[tuple[int, str]]:
    """Logical lines (backslash continuations joined), comments and blanks dropped."""
    buf, start = "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not buf:
            start = n
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        stripped = buf.strip()
        buf = ""
        if stripped and not stripped.startswith("#"):
            yield start, stripped


def _split_args(rest: str) -> list[str]:
    try:
        return shlex.split(rest, comments=False, posix=True)
    except ValueError:
        return rest.split()


def parse_apache(text: str) -> list[Directive]:
    """Path directives, ``Include``/``IncludeOptional``, ``ServerRoot`` and ``Define`` of one httpd config text.

    Directive names are returned lower-case (httpd ignores their case). For
    ``Define`` the value is ``NAME=value``.
    """
    out = []
    for n, line in _apache_lines(text):
        if line.startswith("<"):
            continue                              # <VirtualHost ...>, <IfModule ...>: their bodies count
        name, _, rest = line.partition(" ")
        if "\t" in name:
            name, _, more = name.partition("\t")
            rest = more + " " + rest
        key = name.lower()
        if key not in _APACHE_KEEP:
            continue
        args = _split_args(rest)
        if not args:
            continue
        if key == "define":
            out.append(Directive(key, f"{args[0]}={args[1] if len(args) > 1 else ''}", n))
        else:
            out.append(Directive(key, args[0], n))
    return out


def read_apache(conf_path: str, server_root: str | None = None, fs: FileAccess | None = None,
                defines: dict[str, str] | None = None) -> list[ConfigRef]:
    """Every certificate path named by the httpd config at ``conf_path`` and what it includes.

    Relative paths resolve against ``ServerRoot`` (``server_root``, else the
    config's own ``ServerRoot``, else the config file's directory).
    ``${NAME}`` resolves from ``Define`` lines met so far (and ``defines``).
    """
    fs = fs or FileAccess()
    variables = dict(defines or {})
    state = {"root": server_root or os.path.dirname(conf_path)}
    fixed_root = server_root is not None
    out: list[ConfigRef] = []
    seen: set[str] = set()

    def expand(value: str) -> str | None:
        missing = False

        def sub(m: re.Match[str]) -> str:
            nonlocal missing
            if m.group(1) in variables:
                return variables[m.group(1)]
            missing = True
            return ""

        result = _APACHE_VAR.sub(sub, value)
        return None if missing or "$" in result else result

    def walk(path: str, depth: int) -> None:
        if path in seen or depth > 16:
            return
        seen.add(path)
        if fs.is_dir(path):
            for f in fs.listdir(path):
                if not fs.is_dir(f):
                    walk(f, depth + 1)
            return
        text = fs.read(path)
        if text is None:
            return
        for d in parse_apache(text):
            if d.name == "define":
                k, _, v = d.value.partition("=")
                if "$" not in v:
                    variables[k] = v
                continue
            value = expand(d.value)
            if value is None:
                continue
            if d.name == "serverroot":
                if not fixed_root and os.path.isabs(value):
                    state["root"] = os.path.normpath(value)
                continue
            target = abs_path(value, state["root"])
            if target is None:
                continue
            if d.name in ("include", "includeoptional"):
                for inc in fs.glob(target) if globmod.has_magic(target) else [target]:
                    walk(inc, depth + 1)
            else:
                out.append(ConfigRef(target, "config:apache", d.name, path, APACHE_PATHS[d.name]))

    walk(os.path.normpath(conf_path), 0)
    return out
