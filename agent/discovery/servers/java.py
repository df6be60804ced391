"""JVMs: ``-Djavax.net.ssl.*`` key and trust stores on the command line, and Tomcat's ``server.xml`` connectors."""
from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from typing import Sequence

from agent.discovery.servers.base import ConfigRef, Directive, FileAccess, abs_path

__all__ = ["jvm_properties", "jvm_refs", "parse_tomcat_server_xml", "read_tomcat", "JVM_PROPERTIES", "TOMCAT_ATTRS"]


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
    return abs_path(value, base)


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
