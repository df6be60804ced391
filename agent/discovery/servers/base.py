"""What every server config reader shares: the values they return, file access with limits, paths.

:class:`Directive` is one path-bearing directive as a parser found it in text;
:class:`ConfigRef` a file a process uses, with the evidence. :class:`FileAccess` reads
config files for the readers with a size limit and a file budget. Imports nothing of the agent.
"""
from __future__ import annotations

import glob as globmod
import os
from dataclasses import dataclass
from typing import Sequence

__all__ = ["Directive", "ConfigRef", "FileAccess", "MAX_FILES", "MAX_BYTES", "abs_path", "opt", "cmdline_paths"]

MAX_FILES = 200               # config files read per process
MAX_BYTES = 4 * 1024 * 1024   # per config file


@dataclass(frozen=True, slots=True)
class Directive:
    """One path-bearing directive as written in one config text."""

    name: str          # as the server spells it: "ssl_certificate", "SSLCertificateFile", "crt", ...
    value: str         # the argument, unquoted; may still be relative
    line: int          # 1-based


@dataclass(frozen=True, slots=True)
class ConfigRef:
    """A file a process uses, and how we know."""

    path: str          # absolute, normalised
    evidence: str      # config:nginx, config:apache, config:haproxy, config:postfix, jvm_keystore, cmdline
    directive: str
    config_path: str   # the file that names it ("" for command-line arguments)
    serves: bool       # True: the process presents this certificate to its clients


class FileAccess:
    """Reads config files for the readers: a size limit, a file budget, globs; tests may pass another root."""

    def __init__(self, max_files: int = MAX_FILES, max_bytes: int = MAX_BYTES) -> None:
        self.max_files = max_files
        self.max_bytes = max_bytes
        self.read_count = 0

    def read(self, path: str) -> str | None:
        if self.read_count >= self.max_files:
            return None
        self.read_count += 1
        try:
            with open(path, "rb") as f:
                data = f.read(self.max_bytes + 1)
        except OSError:
            return None
        if len(data) > self.max_bytes:
            return None
        return data.decode("utf-8", "replace")

    @staticmethod
    def glob(pattern: str) -> list[str]:
        return sorted(globmod.glob(pattern))

    @staticmethod
    def is_dir(path: str) -> bool:
        return os.path.isdir(path)

    @staticmethod
    def listdir(path: str) -> list[str]:
        try:
            return sorted(os.path.join(path, n) for n in os.listdir(path))
        except OSError:
            return []


def abs_path(value: str, base: str | None) -> str | None:
    """``value`` made absolute against ``base``; None when relative without a base."""
    if os.path.isabs(value):
        return os.path.normpath(value)
    if not base:
        return None
    return os.path.normpath(os.path.join(base, value))


def opt(argv: Sequence[str], flag: str) -> list[str]:
    """Values of ``flag VALUE`` and ``flagVALUE`` in ``argv``."""
    out = []
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            out.append(argv[i + 1])
        elif a.startswith(flag) and len(a) > len(flag) and not a.startswith(flag + "-"):
            out.append(a[len(flag):])
    return out


def cmdline_paths(argv: Sequence[str], cwd: str | None = None) -> list[str]:
    """Paths a command line may name: each argument, and the value of ``--opt=value`` arguments.

    Relative values resolve against ``cwd`` (skipped when it is unknown).
    The caller keeps only paths it knows as certificate files.
    """
    out: list[str] = []
    for a in list(argv)[1:]:
        candidates = []
        if "=" in a:
            candidates.append(a.split("=", 1)[1])
        if not a.startswith("-"):
            candidates.append(a)
        for c in candidates:
            c = c.strip()
            if not c or "\0" in c or c.startswith(("classpath:", "http:", "https:")):
                continue
            if c.startswith("file:"):
                c = c[5:]
            p = abs_path(c, cwd)
            if p is not None:
                out.append(p)
    return out
