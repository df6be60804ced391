"""Postfix: ``main.cf`` TLS parameters with ``$name`` expansion, ``master.cf`` ``-o`` overrides."""
from __future__ import annotations

import os
import re

from agent.discovery.servers.base import ConfigRef, Directive, FileAccess

__all__ = ["parse_postfix_main", "parse_postfix_master", "read_postfix", "POSTFIX_PATHS"]


POSTFIX_PATHS = {
    "smtpd_tls_cert_file": True,
    "smtpd_tls_key_file": True,
    "smtpd_tls_eccert_file": True,
    "smtpd_tls_eckey_file": True,
    "smtpd_tls_dcert_file": True,
    "smtpd_tls_dkey_file": True,
    "smtpd_tls_chain_files": True,
    "smtpd_tls_CAfile": False,
    "smtp_tls_cert_file": False,        # the client side: presented to other servers, not to our clients
    "smtp_tls_key_file": False,
    "smtp_tls_chain_files": False,
    "smtp_tls_CAfile": False,
    "lmtp_tls_cert_file": False,
    "lmtp_tls_chain_files": False,
}
_LIST_PARAMS = {"smtpd_tls_chain_files", "smtp_tls_chain_files", "lmtp_tls_chain_files"}
_POSTFIX_VAR = re.compile(r"\$(?:\{([A-Za-z0-9_]+)\}|\(([A-Za-z0-9_]+)\)|([A-Za-z0-9_]+))")


def parse_postfix_main(text: str) -> dict[str, tuple[str, int]]:
    """``name = value`` pairs of a main.cf (continuation lines joined; the last one wins): {name: (value, line)}."""
    params: dict[str, tuple[str, int]] = {}
    current: list = []

    def done() -> None:
        if current:
            name, value, line = current
            params[name] = (value.strip(), line)

    for n, raw in enumerate(text.splitlines(), 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        if raw[0].isspace():
            if current:
                current[1] += " " + raw.strip()
            continue
        done()
        current = []
        name, eq, value = raw.partition("=")
        if eq and name.strip():
            current = [name.strip(), value, n]
    done()
    return params


def parse_postfix_master(text: str) -> list[Directive]:
    """``-o name=value`` overrides in a master.cf whose name is a TLS file parameter."""
    out = []
    for n, raw in enumerate(text.splitlines(), 1):
        if raw.lstrip().startswith("#"):
            continue
        words = raw.split()
        for i, w in enumerate(words):
            opt = None
            if w == "-o" and i + 1 < len(words):
                opt = words[i + 1]
            elif w.startswith("-o") and len(w) > 2:
                opt = w[2:]
            if opt and "=" in opt:
                name, value = opt.split("=", 1)
                if name in POSTFIX_PATHS:
                    out.append(Directive(name, value, n))
    return out


def _postfix_expand(value: str, params: dict[str, tuple[str, int]], config_dir: str, depth: int = 0) -> str | None:
    if depth > 8:
        return None
    missing = False

    def sub(m: re.Match[str]) -> str:
        nonlocal missing
        name = m.group(1) or m.group(2) or m.group(3)
        if name == "config_directory":
            return config_dir
        if name in params:
            inner = _postfix_expand(params[name][0], params, config_dir, depth + 1)
            if inner is not None:
                return inner
        missing = True
        return ""

    result = _POSTFIX_VAR.sub(sub, value)
    return None if missing else result


def read_postfix(config_dir: str, fs: FileAccess | None = None) -> list[ConfigRef]:
    """Certificate paths in ``config_dir``/main.cf (and master.cf ``-o`` overrides); only absolute paths count."""
    fs = fs or FileAccess()
    out: list[ConfigRef] = []
    main = os.path.join(config_dir, "main.cf")
    params = parse_postfix_main(fs.read(main) or "")

    def add(name: str, raw: str, where: str) -> None:
        value = _postfix_expand(raw, params, config_dir)
        if value is None:
            return
        items = re.split(r"[\s,]+", value) if name in _LIST_PARAMS else [value]
        for item in items:
            item = item.strip()
            if item and os.path.isabs(item):
                out.append(ConfigRef(os.path.normpath(item), "config:postfix", name, where, POSTFIX_PATHS[name]))

    for name, (value, _line) in params.items():
        if name in POSTFIX_PATHS:
            add(name, value, main)
    master = os.path.join(config_dir, "master.cf")
    for d in parse_postfix_master(fs.read(master) or ""):
        add(d.name, d.value, master)
    return out
