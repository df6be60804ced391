"""HAProxy: ``bind ... crt``/``crt-list`` (served), ``ca-file``, ``crl-file``, ``server ... crt``."""
from __future__ import annotations

import os
import re
from typing import Sequence

from agent.discovery.servers.base import ConfigRef, Directive, FileAccess, abs_path

__all__ = ["parse_haproxy", "parse_crt_list", "read_haproxy"]


_HAPROXY_BIND = {"crt": True, "crt-list": True, "ca-file": False, "crl-file": False}
_HAPROXY_SERVER = {"crt": False, "ca-file": False, "crl-file": False}
_HAPROXY_ENV = re.compile(r"\$\{?[A-Za-z_]")


def _haproxy_words(line: str) -> list[str]:
    """HAProxy's word splitting: quotes group, ``#`` outside quotes starts a comment, backslash escapes."""
    words, buf, quote, have = [], [], "", False
    i = 0
    while i < len(line):
        c = line[i]
        if quote:
            if c == quote:
                quote = ""
            elif c == "\\" and quote == '"' and i + 1 < len(line):
                i += 1
                buf.append(line[i])
            else:
                buf.append(c)
        elif c in "\"'":
            quote, have = c, True
        elif c == "\\" and i + 1 < len(line):
            i += 1
            buf.append(line[i])
            have = True
        elif c == "#":
            break
        elif c.isspace():
            if buf or have:
                words.append("".join(buf))
            buf, have = [], False
        else:
            buf.append(c)
            have = True
        i += 1
    if buf or have:
        words.append("".join(buf))
    return words


def parse_haproxy(text: str) -> list[Directive]:
    """Paths on ``bind``/``server``/``default-server`` lines and ``crt-base``/``ca-base`` of one HAProxy config.

    Names are ``bind:crt``, ``bind:crt-list``, ``bind:ca-file``, ``server:crt``,
    ``server:ca-file``, ``crt-base``, ``ca-base``.
    """
    out = []
    for n, raw in enumerate(text.splitlines(), 1):
        words = _haproxy_words(raw)
        if not words:
            continue
        kw = words[0]
        if kw in ("crt-base", "ca-base") and len(words) >= 2:
            out.append(Directive(kw, words[1], n))
            continue
        if kw == "bind":
            table, prefix = _HAPROXY_BIND, "bind"
        elif kw in ("server", "default-server"):
            table, prefix = _HAPROXY_SERVER, "server"
        else:
            continue
        for i in range(1, len(words) - 1):
            if words[i] in table:
                out.append(Directive(f"{prefix}:{words[i]}", words[i + 1], n))
    return out


def parse_crt_list(text: str) -> list[Directive]:
    """The certificate paths of a HAProxy crt-list file (``path [ssl options] [sni filters]`` per line)."""
    out = []
    for n, raw in enumerate(text.splitlines(), 1):
        words = _haproxy_words(raw)
        if words:
            out.append(Directive("crt-list-entry", words[0], n))
    return out


_HAPROXY_SKIP_SUFFIXES = (".key", ".ocsp", ".issuer", ".sctl")


def read_haproxy(conf_paths: Sequence[str], fs: FileAccess | None = None, cwd: str | None = None) -> list[ConfigRef]:
    """Every certificate path named by the HAProxy configs (``-f`` files or directories of ``*.cfg``).

    ``crt`` paths resolve against ``crt-base`` (``ca-file`` against
    ``ca-base``), else the process's working directory ``cwd``; a ``crt``
    naming a directory stands for the certificate files in it.
    """
    fs = fs or FileAccess()
    out: list[ConfigRef] = []
    files: list[str] = []
    for p in conf_paths:
        if fs.is_dir(p):
            files.extend(f for f in fs.listdir(p) if f.endswith(".cfg"))
        else:
            files.append(p)
    bases = {"crt-base": cwd, "ca-base": cwd}
    for path in files:
        text = fs.read(path)
        if text is None:
            continue
        for d in parse_haproxy(text):
            if _HAPROXY_ENV.search(d.value):
                continue
            if d.name in bases:
                if os.path.isabs(d.value):
                    bases[d.name] = d.value
                continue
            kind, _, word = d.name.partition(":")
            target = abs_path(d.value, bases["ca-base" if word in ("ca-file", "crl-file") else "crt-base"])
            if target is None:
                continue
            serves = (_HAPROXY_BIND if kind == "bind" else _HAPROXY_SERVER)[word]
            if word == "crt-list":
                out.append(ConfigRef(target, "config:haproxy", d.name, path, False))
                listed = fs.read(target)
                for e in parse_crt_list(listed or ""):
                    if _HAPROXY_ENV.search(e.value):
                        continue
                    t = abs_path(e.value, bases["crt-base"])
                    if t is not None:
                        out.extend(_haproxy_crt(t, "crt-list", target, True, fs))
            elif word == "crt":
                out.extend(_haproxy_crt(target, d.name, path, serves, fs))
            else:
                out.append(ConfigRef(target, "config:haproxy", d.name, path, serves))
    return out


def _haproxy_crt(target: str, directive: str, config: str, serves: bool, fs: FileAccess) -> list[ConfigRef]:
    if fs.is_dir(target):
        return [ConfigRef(f, "config:haproxy", directive, config, serves) for f in fs.listdir(target)
                if not f.endswith(_HAPROXY_SKIP_SUFFIXES) and not fs.is_dir(f)]
    return [ConfigRef(target, "config:haproxy", directive, config, serves)]
