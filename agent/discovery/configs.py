"""The certificate files a process names in its configuration or on its command line.

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
"""
from __future__ import annotations

import glob as globmod
import os
import re
import shlex
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

__all__ = [
    "ConfigRef", "Directive", "parse_nginx", "parse_apache", "parse_haproxy", "parse_crt_list", "parse_postfix_main",
    "parse_postfix_master", "parse_tomcat_server_xml", "jvm_refs", "cmdline_paths", "read_nginx", "read_apache",
    "read_haproxy", "read_postfix", "read_tomcat", "FileAccess",
]

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


def _abs(value: str, base: str | None) -> str | None:
    """``value`` made absolute against ``base``; None when relative without a base."""
    if os.path.isabs(value):
        return os.path.normpath(value)
    if not base:
        return None
    return os.path.normpath(os.path.join(base, value))


_VAR = re.compile(r"\$")


# --------------------------------------------------------------------------- nginx

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
            target = _abs(d.value, base)
            if target is None:
                continue
            if d.name == "include":
                for inc in fs.glob(target) if globmod.has_magic(target) else [target]:
                    walk(inc, depth + 1)
            else:
                out.append(ConfigRef(target, "config:nginx", d.name, path, NGINX_PATHS[d.name]))

    walk(os.path.normpath(conf_path), 0)
    return out


# --------------------------------------------------------------------------- Apache httpd

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
            target = _abs(value, state["root"])
            if target is None:
                continue
            if d.name in ("include", "includeoptional"):
                for inc in fs.glob(target) if globmod.has_magic(target) else [target]:
                    walk(inc, depth + 1)
            else:
                out.append(ConfigRef(target, "config:apache", d.name, path, APACHE_PATHS[d.name]))

    walk(os.path.normpath(conf_path), 0)
    return out


# --------------------------------------------------------------------------- HAProxy

# bind/server keywords that take a path, and whether it is served
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
            target = _abs(d.value, bases["ca-base" if word in ("ca-file", "crl-file") else "crt-base"])
            if target is None:
                continue
            serves = (_HAPROXY_BIND if kind == "bind" else _HAPROXY_SERVER)[word]
            if word == "crt-list":
                out.append(ConfigRef(target, "config:haproxy", d.name, path, False))
                listed = fs.read(target)
                for e in parse_crt_list(listed or ""):
                    if _HAPROXY_ENV.search(e.value):
                        continue
                    t = _abs(e.value, bases["crt-base"])
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


# --------------------------------------------------------------------------- Postfix

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


# --------------------------------------------------------------------------- JVM and Tomcat

# -D properties (and Spring Boot arguments) that name key stores; True: the server's own key store
JVM_PROPERTIES = {
    "javax.net.ssl.keyStore": True,
    "javax.net.ssl.trustStore": False,
    "server.ssl.key-store": True,
    "server.ssl.trust-store": False,
    "server.ssl.certificate": True,
    "server.ssl.certificate-private-key": True,
    "server.ssl.trust-certificate": False,
}
_JVM_VAR = re.compile(r"\$\{([^}]+)\}")


def jvm_properties(argv: Sequence[str]) -> dict[str, str]:
    """``-Dname=value`` system properties and ``--name=value`` application arguments of a java command line."""
    props: dict[str, str] = {}
    for a in argv:
        if a.startswith("-D") and "=" in a:
            k, v = a[2:].split("=", 1)
            props[k] = v
        elif a.startswith("--") and "=" in a:
            k, v = a[2:].split("=", 1)
            props.setdefault(k, v)
    return props


def _jvm_path(value: str, props: dict[str, str], base: str | None) -> str | None:
    if value.startswith("classpath:") or not value:
        return None
    if value.startswith("file:"):
        value = value[5:]
        if value.startswith("//"):
            value = value[2:]
    missing = False

    def sub(m: re.Match[str]) -> str:
        nonlocal missing
        if m.group(1) in props:
            return props[m.group(1)]
        missing = True
        return ""

    value = _JVM_VAR.sub(sub, value)
    if missing or "$" in value:
        return None
    return _abs(value, base)


def jvm_refs(argv: Sequence[str], cwd: str | None = None) -> list[ConfigRef]:
    """Key stores a java command line names (``-Djavax.net.ssl.keyStore=``, ``-Dserver.ssl.key-store=``, ...)."""
    props = jvm_properties(argv)
    out = []
    for name, serves in JVM_PROPERTIES.items():
        if name in props:
            path = _jvm_path(props[name], props, cwd)
            if path is not None:
                out.append(ConfigRef(path, "jvm_keystore", name, "", serves))
    return out


# Tomcat attributes naming key material: (element, attribute) -> serves
TOMCAT_ATTRS = {
    ("Connector", "keystoreFile"): True,
    ("Connector", "SSLCertificateFile"): True,
    ("Connector", "truststoreFile"): False,
    ("Certificate", "certificateKeystoreFile"): True,
    ("Certificate", "certificateFile"): True,
    ("Certificate", "certificateKeyFile"): True,
    ("Certificate", "certificateChainFile"): False,
    ("SSLHostConfig", "truststoreFile"): False,
    ("SSLHostConfig", "caCertificateFile"): False,
}


def parse_tomcat_server_xml(text: str) -> list[Directive]:
    """Key material named in a Tomcat server.xml (``Connector keystoreFile=``, ``Certificate certificateKeystoreFile=``, ...).

    Names are ``Element@attribute``; an unparseable file gives nothing.
    """
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return []
    out = []
    for el in root.iter():
        tag = el.tag.rsplit("}", 1)[-1]
        for (etag, attr), _serves in TOMCAT_ATTRS.items():
            if tag == etag and el.get(attr):
                out.append(Directive(f"{etag}@{attr}", el.get(attr, ""), 0))
    return out


def read_tomcat(argv: Sequence[str], fs: FileAccess | None = None) -> list[ConfigRef]:
    """Key material in ``$catalina.base/conf/server.xml`` when the java command line names ``-Dcatalina.base``."""
    props = jvm_properties(argv)
    base = props.get("catalina.base") or props.get("catalina.home")
    if not base or not os.path.isabs(base):
        return []
    props.setdefault("catalina.base", base)
    fs = fs or FileAccess()
    server_xml = os.path.join(base, "conf", "server.xml")
    text = fs.read(server_xml)
    if text is None:
        return []
    out = []
    for d in parse_tomcat_server_xml(text):
        etag, attr = d.name.split("@", 1)
        path = _jvm_path(d.value, props, base)
        if path is not None:
            out.append(ConfigRef(path, "jvm_keystore", d.name, server_xml, TOMCAT_ATTRS[(etag, attr)]))
    return out


# --------------------------------------------------------------------------- any command line

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
            p = _abs(c, cwd)
            if p is not None:
                out.append(p)
    return out


# --------------------------------------------------------------------------- which reader for which process

def _opt(argv: Sequence[str], flag: str) -> list[str]:
    """Values of ``flag VALUE`` and ``flagVALUE`` in ``argv``."""
    out = []
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            out.append(argv[i + 1])
        elif a.startswith(flag) and len(a) > len(flag) and not a.startswith(flag + "-"):
            out.append(a[len(flag):])
    return out


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
        confs = _opt(argv, "-c")
        prefixes = _opt(argv, "-p")
        if confs:
            conf = _abs(confs[-1], cwd) if not os.path.isabs(confs[-1]) else confs[-1]
            prefix = None
        elif prefixes:
            prefix = os.path.join(prefixes[-1], "conf")
            conf = os.path.join(prefix, "nginx.conf")
        else:
            conf, prefix = "/etc/nginx/nginx.conf", None
        return read_nginx(conf, fs, prefix) if conf else []
    if kind == "apache":
        roots = _opt(argv, "-d")
        confs = _opt(argv, "-f")
        root = roots[-1] if roots else None
        if confs:
            conf = confs[-1] if os.path.isabs(confs[-1]) else (_abs(confs[-1], root) if root else None)
        else:
            exe = os.path.basename(argv[0]) if argv else ""
            conf = "/etc/apache2/apache2.conf" if exe.startswith("apache2") else "/etc/httpd/conf/httpd.conf"
        if conf is None:
            return []
        defines = {d: "" for d in _opt(argv, "-D")}
        return read_apache(conf, root, fs, defines)
    if kind == "haproxy":
        confs = [(_abs(c, cwd) or c) for c in _opt(argv, "-f")] or ["/etc/haproxy/haproxy.cfg"]
        return read_haproxy(confs, fs, cwd)
    if kind == "postfix":
        dirs = _opt(argv, "-c")
        return read_postfix(dirs[-1] if dirs and os.path.isabs(dirs[-1]) else "/etc/postfix", fs)
    if kind == "java":
        return jvm_refs(argv, cwd) + read_tomcat(argv, fs)
    return []
