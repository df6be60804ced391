"""Server configurations: the certificate files a process names in its config or on its command line.

Parsers are pure functions over text: they return :class:`Directive` values
(the directive, its path argument as written, the line) and never touch the
disk. Readers (``read_*``) follow includes on disk and turn what the parsers
found into :class:`ConfigRef` values with absolute paths. Everything is
best effort and conservative:

- comments, quoting and line continuations follow each server's own rules;
- a path holding a variable that cannot be resolved from the same
  configuration (``$ssl_server_name``, ``${APACHE_CERT}``) is skipped, never
  guessed; so are relative paths without a known base;
- a file that cannot be read, a missing include or too many files end the
  walk for that part quietly (the process may still be linked otherwise).

``serves`` on a reference says the process presents that certificate to its
clients (nginx ``ssl_certificate``, Apache ``SSLCertificateFile``, HAProxy
``bind ... crt``, Postfix ``smtpd_tls_cert_file``, a JVM's key store); CA
files, chains and client certificates are linked too, but only served
certificates are compared with what the process's ports present
(agent/discovery/stale.py).

The room: :mod:`~agent.discovery.servers.base` (what every reader returns), one module per
server family (:mod:`~agent.discovery.servers.nginx`, ``apache``, ``haproxy``, ``postfix``,
``java``: JVM key stores and Tomcat), and this module, the only chooser:
:func:`server_kind` names a process's family, :func:`config_refs` runs that family's reader.
The readers import only ``base``; nothing in the room imports this module back.

Adding a server: its module (parser + reader) and one branch in :func:`config_refs`.
"""
from __future__ import annotations

import os
from typing import Callable, Sequence

from agent.discovery.servers.apache import read_apache
from agent.discovery.servers.base import ConfigRef, FileAccess, abs_path, cmdline_paths, opt
from agent.discovery.servers.haproxy import read_haproxy
from agent.discovery.servers.java import jvm_refs, read_tomcat
from agent.discovery.servers.nginx import read_nginx
from agent.discovery.servers.postfix import read_postfix

__all__ = ["ConfigRef", "FileAccess", "cmdline_paths", "config_refs", "opt", "server_kind"]


def server_kind(exe_name: str, exe: str = "") -> str:
    """The config family of a program: nginx, apache, haproxy, postfix, java, or ""."""
    n = exe_name.lower()
    if n.startswith("nginx") or n == "openresty":
        return "nginx"
    if n in ("apache2", "httpd", "httpd2", "httpd-prefork", "httpd-worker", "httpd-event"):
        return "apache"
    if n == "haproxy":
        return "haproxy"
    if n == "master" and "postfix" in exe:
        return "postfix"
    if n == "java" or n.startswith("java"):
        return "java"
    return ""


def config_refs(kind: str, argv: Sequence[str], cwd: str | None, fs: FileAccess | None = None,
                reader: Callable[..., list[ConfigRef]] | None = None) -> list[ConfigRef]:
    """What a process of ``kind`` names in its config (per the command line, else the distribution default)."""
    fs = fs or FileAccess()
    if kind == "nginx":
        confs = opt(argv, "-c")
        prefixes = opt(argv, "-p")
        if confs:
            conf = abs_path(confs[-1], cwd) if not os.path.isabs(confs[-1]) else confs[-1]
            prefix = None
        elif prefixes:
            prefix = os.path.join(prefixes[-1], "conf")
            conf = os.path.join(prefix, "nginx.conf")
        else:
            conf, prefix = "/etc/nginx/nginx.conf", None
        return read_nginx(conf, fs, prefix) if conf else []
    if kind == "apache":
        roots = opt(argv, "-d")
        confs = opt(argv, "-f")
        root = roots[-1] if roots else None
        if confs:
            conf = confs[-1] if os.path.isabs(confs[-1]) else (abs_path(confs[-1], root) if root else None)
        else:
            exe = os.path.basename(argv[0]) if argv else ""
            conf = "/etc/apache2/apache2.conf" if exe.startswith("apache2") else "/etc/httpd/conf/httpd.conf"
        if conf is None:
            return []
        defines = {d: "" for d in opt(argv, "-D")}
        return read_apache(conf, root, fs, defines)
    if kind == "haproxy":
        confs = [(abs_path(c, cwd) or c) for c in opt(argv, "-f")] or ["/etc/haproxy/haproxy.cfg"]
        return read_haproxy(confs, fs, cwd)
    if kind == "postfix":
        dirs = opt(argv, "-c")
        return read_postfix(dirs[-1] if dirs and os.path.isabs(dirs[-1]) else "/etc/postfix", fs)
    if kind == "java":
        return jvm_refs(argv, cwd) + read_tomcat(argv, fs)
    return []
