"""nginx: ``ssl_certificate`` and friends, through ``include``; paths relative to the prefix."""
from __future__ import annotations

import glob as globmod
import os
import re
from typing import Iterable

from agent.discovery.servers.base import ConfigRef, Directive, FileAccess, abs_path

__all__ = ["parse_nginx", "read_nginx", "NGINX_PATHS"]


_VAR = re.compile(r"\$")

NGINX_PATHS = {
    # directive: serves
    "ssl_certificate": True,
    "ssl_certificate_key": True,
    "ssl_trusted_certificate": False,
    "ssl_client_certificate": False,
    "proxy_ssl_certificate": False,
    "proxy_ssl_certificate_key": False,
    "proxy_ssl_trusted_certificate": False,
}


def _nginx_tokens(text: str) -> Iterable[tuple[str, int, bool]]:
    """(token, line, quoted) with "{", "}" and ";" as their own tokens; comments dropped."""
    i, n, line = 0, len(text), 1
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif c.isspace():
            i += 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif c in "{};":
            yield c, line, False
            i += 1
        elif c in "\"'":
            quote, i, start_line, buf = c, i + 1, line, []
            while i < n and text[i] != quote:
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                if text[i] == "\n":
                    line += 1
                buf.append(text[i])
                i += 1
            i += 1
            yield "".join(buf), start_line, True
        else:
            buf = []
            while i < n and not text[i].isspace() and text[i] not in ";}":
                if text[i] == "{":
                    if not (buf and buf[-1] == "$"):
                        break
                    while i < n and text[i] != "}":      # ${var}: the braces belong to the word
                        buf.append(text[i])
                        i += 1
                    if i < n:
                        buf.append("}")
                        i += 1
                    continue
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                buf.append(text[i])
                i += 1
            yield "".join(buf), line, False


def parse_nginx(text: str) -> list[Directive]:
    """Path directives and ``include`` patterns of one nginx config text, in order."""
    out: list[Directive] = []
    words: list[tuple[str, int, bool]] = []
    for tok, line, quoted in _nginx_tokens(text):
        if not quoted and tok in "{};" and len(tok) == 1:
            if tok == ";" and words:
                name = words[0][0]
                if (name in NGINX_PATHS or name == "include") and len(words) >= 2:
                    out.append(Directive(name, words[1][0], words[0][1]))
            words = []
        else:
            words.append((tok, line, quoted))
    return out


def read_nginx(conf_path: str, fs: FileAccess | None = None, prefix: str | None = None) -> list[ConfigRef]:
    """Every certificate path named by the nginx config at ``conf_path`` and what it includes.

    Relative paths resolve like nginx does: against the directory of the main
    config file (``prefix`` overrides, e.g. ``-p``'s ``conf/`` when no ``-c`` was given).
    """
    fs = fs or FileAccess()
    base = prefix or os.path.dirname(conf_path)
    out: list[ConfigRef] = []
    seen: set[str] = set()

    def walk(path: str, depth: int) -> None:
        if path in seen or depth > 16:
            return
        seen.add(path)
        text = fs.read(path)
        if text is None:
            return
        for d in parse_nginx(text):
            if _VAR.search(d.value) or d.value.startswith(("data:", "engine:", "store:")):
                continue
            target = abs_path(d.value, base)
            if target is None:
                continue
            if d.name == "include":
                for inc in fs.glob(target) if globmod.has_magic(target) else [target]:
                    walk(inc, depth + 1)
            else:
                out.append(ConfigRef(target, "config:nginx", d.name, path, NGINX_PATHS[d.name]))

    walk(os.path.normpath(conf_path), 0)
    return out
