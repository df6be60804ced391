"""The seed corpus: real stores made by openssl and keytool at test time.

``make_seeds(directory)`` returns a list of :class:`Seed` (the bytes, the store type a
``[[store]]`` would configure, the password). Everything is made fresh, nothing recorded.
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

PASSWORD = "changeit"


@dataclass(frozen=True)
class Seed:
    name: str
    store_type: str          # pem, der, pkcs12, jks, jceks (as configured)
    data: bytes
    password: str | None = None

    @property
    def suffix(self) -> str:
        return {"pem": ".pem", "der": ".der", "pkcs12": ".p12", "jks": ".jks", "jceks": ".jceks"}[self.store_type]


def _run(*args: str, cwd: Path) -> None:
    p = subprocess.run(list(args), capture_output=True, text=True, cwd=cwd)
    if p.returncode != 0:
        raise RuntimeError(f"{args[0]} failed: {p.stderr or p.stdout}")


def make_seeds(d: Path, java: bool = True) -> list[Seed]:
    """Seeds in every format; JKS/JCEKS only when keytool is there and ``java``."""
    d.mkdir(parents=True, exist_ok=True)
    ossl = lambda *a: _run("openssl", *a, cwd=d)  # noqa: E731
    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "3650",
         "-subj", "/O=Fuzz/CN=Fuzz Root")
    ossl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "leaf.key",
         "-out", "leaf.csr", "-subj", "/O=Fuzz/CN=www.fuzz.example.test")
    (d / "ext.cnf").write_text("subjectAltName=DNS:www.fuzz.example.test,DNS:fuzz.example.test,IP:192.0.2.1\n"
                               "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n")
    ossl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
         "-out", "leaf.crt", "-days", "90", "-extfile", "ext.cnf")
    ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384", "-nodes", "-keyout", "self.key",
         "-out", "self.crt", "-days", "30", "-subj", "/CN=self.fuzz.example.test")
    ossl("pkey", "-in", "leaf.key", "-out", "leaf-enc.key", "-aes256", "-passout", f"pass:{PASSWORD}")
    ossl("x509", "-in", "leaf.crt", "-outform", "DER", "-out", "leaf.der")
    ossl("crl2pkcs7", "-nocrl", "-certfile", "leaf.crt", "-certfile", "ca.crt", "-outform", "DER", "-out", "b.p7b")
    ossl("crl2pkcs7", "-nocrl", "-certfile", "leaf.crt", "-certfile", "ca.crt", "-out", "b.p7b.pem")
    ossl("pkcs12", "-export", "-in", "leaf.crt", "-inkey", "leaf.key", "-certfile", "ca.crt", "-name", "web",
         "-out", "web.p12", "-passout", f"pass:{PASSWORD}")
    ossl("pkcs12", "-in", "web.p12", "-nodes", "-passin", f"pass:{PASSWORD}", "-out", "bag.pem")
    r = lambda n: (d / n).read_bytes()  # noqa: E731
    dh = b"-----BEGIN DH PARAMETERS-----\nMAYCAQI=\n-----END DH PARAMETERS-----\n"
    seeds = [
        Seed("cert", "pem", r("leaf.crt")),
        Seed("fullchain", "pem", r("leaf.crt") + r("ca.crt")),
        Seed("combined", "pem", r("leaf.key") + r("leaf.crt") + r("ca.crt")),
        Seed("combined-enc", "pem", r("leaf.crt") + r("leaf-enc.key"), PASSWORD),
        Seed("bundle3", "pem", r("ca.crt") + r("self.crt") + r("leaf.crt") + dh + r("self.key")),
        Seed("bag-attributes", "pem", r("bag.pem")),
        Seed("pkcs7-pem", "pem", r("b.p7b.pem")),
        Seed("der", "der", r("leaf.der")),
        Seed("pkcs7-der", "der", r("b.p7b")),
        Seed("p12", "pkcs12", r("web.p12"), PASSWORD),
    ]
    if java and shutil.which("keytool"):
        for kind in ("JKS", "JCEKS", "PKCS12"):
            name = f"ks-{kind.lower()}"
            _run("keytool", "-importkeystore", "-noprompt", "-srckeystore", "web.p12", "-srcstoretype", "PKCS12",
                 "-srcstorepass", PASSWORD, "-destkeystore", name, "-deststoretype", kind, "-deststorepass", PASSWORD,
                 cwd=d)
            _run("keytool", "-importcert", "-noprompt", "-alias", "root", "-file", "ca.crt", "-keystore", name,
                 "-storetype", kind, "-storepass", PASSWORD, cwd=d)
            stype = {"JKS": "jks", "JCEKS": "jceks", "PKCS12": "pkcs12"}[kind]
            seeds.append(Seed(name, stype, r(name), PASSWORD))
    return seeds
