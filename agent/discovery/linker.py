"""Which process uses which store file: :class:`ProcessLink` values with their evidence.

:func:`build_index` takes one process snapshot (agent/discovery/processes.py)
and collects, per service root (nginx's master, not each worker), the files it

- names in a known config (``config:nginx``, ``config:apache``,
  ``config:haproxy``, ``config:postfix``; ``jvm_keystore`` for a JVM's key
  store arguments and Tomcat's server.xml) — agent/discovery/servers/,
- has open now (``open_file``; read for listening processes only), or
- names on its command line (``cmdline``: ``openssl s_server -cert FILE``).

:meth:`LinkIndex.uses` then answers, for a store file path, which processes
use it (matched by the path as written and by the file it resolves to, so a
config naming ``/etc/letsencrypt/live/x/cert.pem`` links the scanned archive
file and the other way round). Each link carries the process's listening
sockets, its systemd unit and :func:`suggest_reload`: the name of one of this
agent's ``[reload.<name>]`` actions whose command fits the process.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from agent.config import ReloadAction
from agent.discovery.servers import ConfigRef, FileAccess, cmdline_paths, config_refs, opt, server_kind
from agent.discovery.processes import Listener, ProcessInfo, ProcessTable, listen_text
from agent.inventory import ProcessLink

log = logging.getLogger(__name__)

__all__ = ["Use", "LinkIndex", "build_index", "suggest_reload", "EVIDENCE_ORDER"]

# When one process names a file several ways, the most telling evidence is kept.
EVIDENCE_ORDER = ("config:nginx", "config:apache", "config:haproxy", "config:postfix", "jvm_keystore",
                  "open_file", "cmdline")

# Programs that reload a family of servers, besides the server's own executable.
_RELOADERS = {
    "nginx": {"nginx", "openresty"},
    "apache": {"apachectl", "apache2ctl", "httpd", "apache2"},
    "haproxy": {"haproxy"},
    "postfix": {"postfix"},
}
# systemd unit stems a family's packages use
_UNIT_STEMS = {
    "nginx": {"nginx", "openresty"},
    "apache": {"apache2", "httpd"},
    "haproxy": {"haproxy"},
    "postfix": {"postfix"},
}
_SERVICE_VERBS = {"reload", "restart", "reload-or-restart", "try-reload-or-restart", "try-restart", "force-reload",
                  "graceful"}


@dataclass(frozen=True, slots=True)
class Use:
    """One process (service root) using one file."""

    link: ProcessLink
    serves: bool                              # presents the file's certificate to its clients (as far as we know)
    listeners: tuple[Listener, ...]           # where to probe it (addresses to connect to)
    root: int


@dataclass
class LinkIndex:
    """Files -> the processes that use them, for one snapshot."""

    by_path: dict[str, list[Use]] = field(default_factory=dict)
    paths_by_root: dict[int, set[str]] = field(default_factory=dict)
    _dirs: dict[str, str] = field(default_factory=dict, repr=False)   # directory -> its real path, this snapshot

    def uses(self, path: str) -> tuple[Use, ...]:
        """The processes using ``path`` (as written, or the file it resolves to), one per process."""
        if not self.by_path:
            return ()
        p = os.path.normpath(path)
        found = list(self.by_path.get(p, ()))
        real = self._real(p)
        if real != p:
            found += self.by_path.get(real, ())
        best: dict[int, Use] = {}
        for u in found:
            old = best.get(u.root)
            if old is None or _rank(u.link.evidence) < _rank(old.link.evidence):
                best[u.root] = Use(u.link, u.serves or (old.serves if old else False), u.listeners, u.root)
            elif u.serves and not old.serves:
                best[u.root] = Use(old.link, True, old.listeners, old.root)
        return tuple(best[r] for r in sorted(best))

    def _real(self, p: str) -> str:
        """``os.path.realpath(p)`` for a store file, cheaply: the directory's real path is
        resolved once per directory (a store has thousands of files in few directories); the
        file itself costs one lstat, and a full resolve only when it is a symbolic link."""
        head, tail = os.path.split(p)
        real_dir = self._dirs.get(head)
        if real_dir is None:
            try:
                real_dir = os.path.realpath(head)
            except OSError:
                real_dir = head
            self._dirs[head] = real_dir
        candidate = os.path.join(real_dir, tail)
        try:
            if os.path.islink(candidate):
                return os.path.realpath(candidate)
        except OSError:
            pass
        return candidate

    def paths_of(self, root: int) -> frozenset[str]:
        """Every file the process ``root`` was found to use (configs, open files, command line)."""
        return frozenset(self.paths_by_root.get(root, ()))


def _rank(evidence: str) -> int:
    return EVIDENCE_ORDER.index(evidence) if evidence in EVIDENCE_ORDER else len(EVIDENCE_ORDER)


def _unit_name(arg: str) -> str:
    return arg if "." in arg else arg + ".service"


def _fits(action: ReloadAction, proc: ProcessInfo, kind: str, unit: str, configs: set[str]) -> int:
    """How well ``action`` fits ``proc`` (0: it does not)."""
    cmd = list(action.command)
    prog = os.path.basename(cmd[0])
    names = {proc.exe_name, proc.name} - {""}
    if prog in ("systemctl", "service") or cmd[0].startswith("/etc/init.d/"):
        if prog == "systemctl":
            words = [a for a in cmd[1:] if not a.startswith("-")]
            if len(words) < 2 or words[0] not in _SERVICE_VERBS:
                return 0
            targets = words[1:]
        elif prog == "service":
            targets = cmd[1:2]
        else:
            targets = [prog]
        for t in targets:
            u = _unit_name(t)
            if unit and u == unit:
                return 3
            stem = u.rsplit(".", 1)[0]
            if not unit and (stem in names or stem in _UNIT_STEMS.get(kind, ())):
                return 1
        return 0
    if prog not in names and prog not in _RELOADERS.get(kind, ()):
        return 0
    score = 2
    # an action for a named config must be for this process's config
    flag = {"nginx": "-c", "apache": "-f", "haproxy": "-f", "postfix": "-c"}.get(kind)
    if flag:
        wanted = {os.path.normpath(v) for v in opt(cmd, flag)}
        if wanted:
            if not wanted & configs:
                return 0
            score += 2
    return score


def suggest_reload(proc: ProcessInfo, actions: Mapping[str, ReloadAction], unit: str = "",
                   configs: set[str] | None = None) -> str:
    """The name of the reload action that fits ``proc`` best ("" when none does).

    An action fits when its program is the process's own executable (or the
    family's control program: ``apachectl``, ``postfix``), or when it is
    ``systemctl reload UNIT`` / ``service NAME reload`` for the process's
    systemd unit (or, when the unit is unknown, a unit named like the program).
    An action that names a config file (``nginx -c FILE -s reload``) fits only
    the process started with that config. Ties go to the first name.
    """
    kind = server_kind(proc.exe_name, proc.exe)
    best, best_score = "", 0
    for name in sorted(actions):
        score = _fits(actions[name], proc, kind, unit, configs or set())
        if score > best_score:
            best, best_score = name, score
    return best


def _config_files(kind: str, proc: ProcessInfo, cwd: str) -> set[str]:
    flag = {"nginx": "-c", "apache": "-f", "haproxy": "-f", "postfix": "-c"}.get(kind)
    out = set()
    for v in opt(proc.cmdline, flag) if flag else []:
        p = v if os.path.isabs(v) else (os.path.join(cwd, v) if cwd else "")
        if p:
            out.add(os.path.normpath(p))
    return out


def build_index(table: ProcessTable, actions: Mapping[str, ReloadAction] | None = None,
                fs: FileAccess | None = None, exclude_pids: Sequence[int] = ()) -> LinkIndex:
    """Link every service root of ``table`` to the files it uses (see the module docstring)."""
    actions = actions or {}
    index = LinkIndex()
    skip = set(exclude_pids) | {os.getpid()}
    for root in table.roots():
        proc = table.get(root)
        if proc is None or root in skip or root <= 0:
            continue
        refs: list[ConfigRef] = []
        kind = server_kind(proc.exe_name, proc.exe)
        listeners = table.family_listeners(root)
        cwd = table.cwd(root) if len(proc.cmdline) > 1 else ""     # relative arguments resolve against it
        if kind:
            try:
                refs.extend(config_refs(kind, proc.cmdline, cwd or None, fs))
            except Exception:  # noqa: BLE001 - one odd config must not stop discovery
                log.warning("reading the %s config of pid %d failed", kind, root, exc_info=True)
        for path in table.family_open_files(root):
            refs.append(ConfigRef(os.path.normpath(path), "open_file", "", "", True))
        for path in cmdline_paths(proc.cmdline, cwd or None):
            refs.append(ConfigRef(path, "cmdline", "", "", True))
        if not refs:
            continue
        unit = table.unit(root)
        reload_name = suggest_reload(proc, actions, unit, _config_files(kind, proc, cwd))
        listen = tuple(sorted({listen_text(lst) for lst in listeners}))
        paths = index.paths_by_root.setdefault(root, set())
        for ref in refs:
            link = ProcessLink(
                pid=root, name=proc.name, executable=proc.exe, user=proc.user, service=unit, listen=listen,
                evidence=ref.evidence, config_path=ref.config_path, suggested_reload=reload_name,
            )
            use = Use(link, ref.serves, listeners, root)
            keys = {ref.path}
            try:
                keys.add(os.path.realpath(ref.path))
            except OSError:
                pass
            for k in keys:
                index.by_path.setdefault(k, []).append(use)
                paths.add(k)
    return index
