"""The processes on this host that may use certificates: who runs, what it listens on, what it has open.

:func:`snapshot` walks the process table once with psutil and returns a
:class:`ProcessTable`. It never fails because of one process: a process that
vanishes, is a zombie or may not be inspected (``AccessDenied`` without root)
keeps whatever could be read (its name, at least) or is left out.

Cost (measured on this development machine, 126 processes, root): the walk of
names, executables, users and command lines takes about 20 ms of CPU, the
socket table about 18 ms; listing the open files of *every* process would add
about 30 ms and grows with the number of descriptors on busy hosts, so open
files are read only for processes that listen on TCP (and their worker
children): the servers, which are what the links are for. Working
directories and systemd units are read on demand, for the processes a link
is made for. The snapshot runs once per report (every ``scan_interval``);
nothing runs between reports.

A *service root* groups a master and its workers (nginx, Apache, HAProxy
master-worker, Postfix's master and its daemons, pre-forked workers that keep
their master's command line): :meth:`ProcessTable.root` walks up while the
parent is the same service. A program started by another instance of the same
program with other arguments (a python started by a python) is a service of
its own. Links are made for roots; their listening sockets and open files are
the union over the root and its family.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Callable, Iterable

import psutil

log = logging.getLogger(__name__)

__all__ = ["ProcessInfo", "ProcessTable", "Listener", "snapshot", "unit_from_cgroup", "listeners_now"]

try:  # the endpoint scanner's socket table (agent/discovery/listeners.py)
    from agent.discovery.listeners import Listener, local_listeners
except ImportError:  # pragma: no cover - only while that module does not exist
    @dataclass(frozen=True, slots=True)
    class Listener:  # type: ignore[no-redef]
        ip: str
        port: int
        pid: int | None
        process_name: str
        bound: str = ""

        @property
        def endpoint(self) -> str:
            return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"

    def local_listeners() -> list[Listener]:  # type: ignore[misc]
        out: dict[tuple[str, int], Listener] = {}
        for c in psutil.net_connections("tcp"):
            if c.status == psutil.CONN_LISTEN and c.laddr:
                bound = c.laddr[0]
                ip = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(bound, bound)
                out.setdefault((ip, int(c.laddr[1])), Listener(ip, int(c.laddr[1]), c.pid or None, "", bound))
        return sorted(out.values(), key=lambda x: (x.port, x.ip))


# Servers whose workers run the master's program (with another command line)
_MASTER_WORKER = {"nginx", "openresty", "apache2", "httpd", "haproxy", "php-fpm", "dovecot"}

_ATTRS = ["pid", "ppid", "name", "exe", "username", "cmdline"]


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """One process as seen by one snapshot. Fields that could not be read are empty."""

    pid: int
    ppid: int
    name: str
    exe: str = ""
    user: str = ""
    cmdline: tuple[str, ...] = ()
    listeners: tuple[Listener, ...] = ()      # TCP sockets in LISTEN state this process holds
    open_files: tuple[str, ...] = ()          # regular files open now (read for listening processes only)

    @property
    def exe_name(self) -> str:
        """The executable's file name ("nginx"), else the process name."""
        return os.path.basename(self.exe) if self.exe else self.name


def listen_text(lst: Listener) -> str:
    """``"0.0.0.0:443"``: the address the socket is bound to (the probe address when unknown)."""
    addr = getattr(lst, "bound", "") or lst.ip
    return f"[{addr}]:{lst.port}" if ":" in addr else f"{addr}:{lst.port}"


def unit_from_cgroup(text: str) -> str:
    """The systemd unit in a /proc/<pid>/cgroup text ("nginx.service"), "" when the process is in none.

    The unified (``0::``) and the ``name=systemd`` hierarchies are looked at;
    the innermost ``.service`` wins (a service in a user manager:
    ``user@1000.service/app.slice/web.service`` -> ``web.service``).
    """
    best = ""
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3 or not (parts[0] == "0" or parts[1] == "name=systemd"):
            continue
        for comp in parts[2].split("/"):
            if comp.endswith(".service"):
                best = comp
        if best and parts[0] == "0":
            break
    return best


def _is_postfix(p: ProcessInfo) -> bool:
    return "/postfix/" in p.exe or p.exe.startswith("/usr/libexec/postfix")


@dataclass
class ProcessTable:
    """The processes of one snapshot, by pid, with the host's listening sockets."""

    processes: dict[int, ProcessInfo] = field(default_factory=dict)
    listeners: tuple[Listener, ...] = ()
    problems: list[str] = field(default_factory=list)   # why parts could not be read (for the log)
    _cwd: dict[int, str] = field(default_factory=dict, repr=False)
    _unit: dict[int, str] = field(default_factory=dict, repr=False)
    _children: dict[int, list[int]] | None = field(default=None, repr=False)

    def __contains__(self, pid: int) -> bool:
        return pid in self.processes

    def get(self, pid: int) -> ProcessInfo | None:
        return self.processes.get(pid)

    def children(self, pid: int) -> list[int]:
        if self._children is None:
            kids: dict[int, list[int]] = {}
            for p in self.processes.values():
                kids.setdefault(p.ppid, []).append(p.pid)
            self._children = kids
        return sorted(self._children.get(pid, []))

    def _same_family(self, parent: ProcessInfo, child: ProcessInfo) -> bool:
        """A worker of ``parent``: a known master/worker server (same program, or Postfix daemons), or the same
        program with the same (or a blanked) command line (pre-forked workers). A python started by another
        python, a shell by a shell, are separate programs."""
        if parent.pid <= 1 or parent.pid == child.pid:
            return False
        if parent.exe and child.exe:
            if _is_postfix(parent) and _is_postfix(child):
                return True
            same = parent.exe == child.exe
        else:
            same = bool(parent.name) and parent.name == child.name
        if not same:
            return False
        return (os.path.basename(parent.exe or parent.name) in _MASTER_WORKER
                or not child.cmdline or child.cmdline == parent.cmdline)

    def root(self, pid: int) -> int:
        """The service root of ``pid``: its topmost ancestor running the same program."""
        p = self.processes.get(pid)
        seen = {pid}
        while p is not None:
            parent = self.processes.get(p.ppid)
            if parent is None or parent.pid in seen or not self._same_family(parent, p):
                break
            seen.add(parent.pid)
            p = parent
        return p.pid if p is not None else pid

    def family(self, root: int) -> list[int]:
        """``root`` and its descendants of the same program (nginx's workers), root first."""
        out, todo = [], [root]
        while todo:
            pid = todo.pop(0)
            if pid in out:
                continue
            out.append(pid)
            p = self.processes.get(pid)
            for kid in self.children(pid):
                k = self.processes.get(kid)
                if p is not None and k is not None and self._same_family(p, k):
                    todo.append(kid)
        return out

    def roots(self) -> list[int]:
        return sorted({self.root(pid) for pid in self.processes})

    def family_listeners(self, root: int) -> tuple[Listener, ...]:
        seen: dict[tuple[str, int], Listener] = {}
        for pid in self.family(root):
            p = self.processes.get(pid)
            for lst in p.listeners if p else ():
                seen.setdefault((lst.ip, lst.port), lst)
        return tuple(sorted(seen.values(), key=lambda x: (x.port, x.ip)))

    def family_open_files(self, root: int) -> tuple[str, ...]:
        out: set[str] = set()
        for pid in self.family(root):
            p = self.processes.get(pid)
            if p:
                out.update(p.open_files)
        return tuple(sorted(out))

    def cwd(self, pid: int) -> str:
        """The process's working directory ("" when it cannot be read); read once per snapshot."""
        if pid not in self._cwd:
            try:
                self._cwd[pid] = psutil.Process(pid).cwd() or ""
            except (psutil.Error, OSError):
                self._cwd[pid] = ""
        return self._cwd[pid]

    def unit(self, pid: int) -> str:
        """The systemd unit that runs ``pid`` ("" when none or unknown); read once per snapshot."""
        if pid not in self._unit:
            try:
                with open(f"/proc/{pid}/cgroup", encoding="utf-8", errors="replace") as f:
                    self._unit[pid] = unit_from_cgroup(f.read(65536))
            except OSError:
                self._unit[pid] = ""
        return self._unit[pid]


def listeners_now() -> tuple[tuple[Listener, ...], str]:
    """The host's listening TCP sockets, and why not ("" when read)."""
    try:
        return tuple(local_listeners()), ""
    except (psutil.Error, OSError) as e:
        return (), f"the socket table cannot be read ({type(e).__name__}: {e})"


def _open_files(proc: psutil.Process) -> tuple[str, ...]:
    try:
        return tuple(sorted({f.path for f in proc.open_files() if f.path}))
    except (psutil.Error, OSError):
        return ()


def snapshot(open_files: bool = True,
             listeners: Callable[[], tuple[tuple[Listener, ...], str]] = listeners_now,
             iterate: Callable[..., Iterable[psutil.Process]] = psutil.process_iter) -> ProcessTable:
    """Walk the process table once (see the module docstring for what is read and what it costs)."""
    table = ProcessTable()
    socks, why = listeners()
    if why:
        table.problems.append(why)
        log.info("process discovery: %s", why)
    table.listeners = socks
    by_pid: dict[int, list[Listener]] = {}
    for lst in socks:
        if lst.pid is not None:
            by_pid.setdefault(lst.pid, []).append(lst)
    handles: dict[int, psutil.Process] = {}
    for proc in iterate(_ATTRS, ad_value=None):
        try:
            info = proc.info
            pid = int(info["pid"])
            cmd = info.get("cmdline") or []
            handles[pid] = proc
            table.processes[pid] = ProcessInfo(
                pid=pid, ppid=int(info.get("ppid") or 0), name=info.get("name") or "",
                exe=info.get("exe") or "", user=info.get("username") or "",
                cmdline=_split_rewritten(tuple(str(a) for a in cmd)),
                listeners=tuple(by_pid.get(pid, ())),
            )
        except (psutil.Error, OSError, KeyError, TypeError, ValueError):
            continue      # gone or unreadable: not a reason to stop
    # Sockets whose process the walk did not see (it exited in between) are kept in table.listeners only.
    if open_files:
        listening_roots = {table.root(pid) for pid in by_pid if pid in table.processes}
        for root in listening_roots:
            for pid in table.family(root):
                proc = handles.get(pid)
                if proc is None:
                    continue
                files = _open_files(proc)
                if files:
                    table.processes[pid] = _with_files(table.processes[pid], files)
    return table


def _with_files(p: ProcessInfo, files: tuple[str, ...]) -> ProcessInfo:
    return ProcessInfo(p.pid, p.ppid, p.name, p.exe, p.user, p.cmdline, p.listeners, files)


def _split_rewritten(cmd: tuple[str, ...]) -> tuple[str, ...]:
    """Arguments of a process that may have rewritten its title.

    nginx turns its arguments into ``"nginx: master process /usr/sbin/nginx -c /x.conf"`` (psutil splits
    that on spaces) and its workers into ``"nginx: worker process"`` padded with empty strings: the
    ``name: role process`` prefix and the padding are dropped, leaving the original command line.
    """
    args = [a for a in cmd if a]
    if len(args) == 1 and " " in args[0] and len(cmd) > 1:
        args = args[0].split()
    if args and args[0].endswith(":"):
        for i in (1, 2, 3):
            if i < len(args) and args[i] == "process":
                return tuple(args[i + 1:])
    return tuple(args)
