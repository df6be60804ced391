#!/usr/bin/env python3
"""Make a realistic set of certificate stores with the real tools (openssl, keytool).

    python packaging/dev/make_sample_stores.py DEST

writes, under DEST:

    ca/          the sample CA (root + intermediate) and its working files; not scanned
    secrets/     password files (mode 0600, directory 0700)
    pem/         server/{cert,key,chain,fullchain}.pem, combined.pem (cert + key),
                 encrypted-key.pem (cert + PKCS#8 encrypted key), legacy-encrypted.pem
                 (cert + "Proc-Type: 4,ENCRYPTED" key), mismatch.pem (cert + another key),
                 ca-bundle.pem (3 CA certificates), expired.pem, expiring-soon.pem (~10 days)
    der/         server.der
    keystores/   server.p12 (openssl), app.jks and app.jceks (keytool: a private-key entry with
                 its chain and a trusted-certificate entry), keytool.p12 (keytool genkeypair
                 plus a trusted entry)
    bad/         empty.pem, truncated.pem, corrupt.pem, wrong-password.p12 (its store's
                 password file holds the wrong password)
    agent.toml   a ready agent configuration for all of the above (mode 0600)

and prints that configuration. Commands run with argument lists, never through
a shell; passwords go to the tools as files.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["make_sample_stores", "ToolMissing", "SAMPLE_PASSWORDS"]

# Deliberately full of characters that break shell-quoted commands.
SAMPLE_PASSWORDS = {
    "p12": "p12-s3cret@$!`x`'\"",
    "jks": "jks-pa$$word@1",        # JCEKS needs ASCII
    "key": "key-$ecret@2",
    "wrong": "not-the-password",
}

_TOOLS = {
    "openssl": "openssl",
    "keytool": "default-jre-headless",
}


class ToolMissing(RuntimeError):
    """openssl or keytool is not installed."""


def _check_tools() -> dict[str, str]:
    found = {}
    for tool, package in _TOOLS.items():
        path = shutil.which(tool)
        if path is None:
            raise ToolMissing(
                f"{tool} is not installed or not on PATH; install the Debian package '{package}' "
                f"(apt-get install {package})"
            )
        found[tool] = path
    return found


def _run(args: list[str], cwd: Path | None = None) -> None:
    proc = subprocess.run(args, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"{Path(args[0]).name} {args[1]} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")


def _write_secret(path: Path, value: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(value + "\n")
    os.chmod(path, 0o600)
    return path


def _cat(out: Path, *parts: Path | bytes) -> Path:
    out.write_bytes(b"".join(p if isinstance(p, bytes) else p.read_bytes() for p in parts))
    return out


def _toml(value: str) -> str:
    return json.dumps(value)   # a JSON string is a valid TOML basic string


_CA_CONFIG = """\
[ca]
default_ca = intermediate_ca

[root_ca]
dir = {dir}
certificate = $dir/root.pem
private_key = $dir/root.key
database = $dir/index.txt
new_certs_dir = $dir/newcerts
serial = $dir/serial
default_md = sha256
default_days = 365
policy = policy_any
copy_extensions = copy
unique_subject = no
email_in_dn = no

[intermediate_ca]
dir = {dir}
certificate = $dir/intermediate.pem
private_key = $dir/intermediate.key
database = $dir/index.txt
new_certs_dir = $dir/newcerts
serial = $dir/serial
default_md = sha256
default_days = 365
policy = policy_any
copy_extensions = copy
unique_subject = no
email_in_dn = no

[policy_any]
organizationName = optional
commonName = supplied

[v3_intermediate]
basicConstraints = critical, CA:true, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[v3_server]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""


class _Maker:
    def __init__(self, dest: Path, tools: dict[str, str]) -> None:
        self.dest = dest
        self.openssl = tools["openssl"]
        self.keytool = tools["keytool"]
        self.ca = dest / "ca"
        self.secrets = dest / "secrets"
        self.cnf = self.ca / "ca.cnf"

    def ossl(self, *args: str) -> None:
        _run([self.openssl, *args])

    def kt(self, *args: str) -> None:
        _run([self.keytool, *args])

    def ec_csr(self, name: str, subject: str, sans: str | None = None, rsa: bool = False) -> tuple[Path, Path]:
        key, csr = self.ca / f"{name}.key", self.ca / f"{name}.csr"
        alg = ["-newkey", "rsa:2048"] if rsa else ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        extra = ["-addext", f"subjectAltName={sans}"] if sans else []
        self.ossl("req", "-new", *alg, "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", subject, *extra)
        return key, csr

    def sign(self, csr: Path, out: Path, ca: str = "intermediate_ca", ext: str = "v3_server",
             days: int | None = 90, start: str | None = None, end: str | None = None) -> Path:
        args = ["ca", "-batch", "-notext", "-config", str(self.cnf), "-name", ca, "-extensions", ext,
                "-in", str(csr), "-out", str(out)]
        if start and end:
            args += ["-startdate", start, "-enddate", end]
        else:
            args += ["-days", str(days)]
        self.ossl(*args)
        return out

    def make(self) -> dict:
        d = self.dest
        for sub in ("ca", "ca/newcerts", "pem/server", "der", "keystores", "bad"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        self.secrets.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.secrets, 0o700)
        pw = {k: _write_secret(self.secrets / f"{k}.pass", v) for k, v in SAMPLE_PASSWORDS.items()}
        (self.ca / "index.txt").write_text("")
        (self.ca / "serial").write_text("1000\n")
        self.cnf.write_text(_CA_CONFIG.format(dir=str(self.ca)))
        f: dict[str, str] = {}

        # The CA: root and intermediate.
        root, root_key = self.ca / "root.pem", self.ca / "root.key"
        self.ossl("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                  "-keyout", str(root_key), "-out", str(root), "-days", "3650",
                  "-subj", "/O=Certfleet Sample/CN=Certfleet Sample Root CA",
                  "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        _, icsr = self.ec_csr("intermediate", "/O=Certfleet Sample/CN=Certfleet Sample Intermediate CA")
        inter = self.sign(icsr, self.ca / "intermediate.pem", ca="root_ca", ext="v3_intermediate", days=1825)
        other_root = self.ca / "other-root.pem"
        self.ossl("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384", "-nodes",
                  "-keyout", str(self.ca / "other-root.key"), "-out", str(other_root), "-days", "3650",
                  "-subj", "/O=Certfleet Other/CN=Certfleet Other Root CA",
                  "-addext", "basicConstraints=critical,CA:TRUE")

        # A server (RSA 2048), certbot-style files.
        skey, scsr = self.ec_csr("server", "/O=Example/CN=www.example.test",
                                 "DNS:www.example.test,DNS:example.test", rsa=True)
        srv = d / "pem/server"
        cert = self.sign(scsr, srv / "cert.pem", days=90)
        shutil.copyfile(skey, srv / "key.pem")
        os.chmod(srv / "key.pem", 0o600)
        _cat(srv / "chain.pem", inter)
        _cat(srv / "fullchain.pem", cert, inter)
        f.update(cert=str(cert), key=str(srv / "key.pem"), chain=str(srv / "chain.pem"),
                 fullchain=str(srv / "fullchain.pem"))
        f["combined"] = str(_cat(d / "pem/combined.pem", cert, skey))

        # Encrypted keys next to their certificate: PKCS#8 and legacy PEM encryption.
        enc_key, legacy_key = self.ca / "server-enc.key", self.ca / "server-legacy.key"
        self.ossl("pkcs8", "-topk8", "-in", str(skey), "-v2", "aes-256-cbc", "-passout", f"file:{pw['key']}",
                  "-out", str(enc_key))
        self.ossl("pkey", "-in", str(skey), "-aes256", "-traditional", "-passout", f"file:{pw['key']}",
                  "-out", str(legacy_key))
        f["encrypted_key"] = str(_cat(d / "pem/encrypted-key.pem", cert, enc_key))
        f["legacy_encrypted"] = str(_cat(d / "pem/legacy-encrypted.pem", cert, legacy_key))

        # A certificate with somebody else's key.
        other_key = self.ca / "other.key"
        self.ossl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(other_key))
        f["mismatch"] = str(_cat(d / "pem/mismatch.pem", cert, other_key))

        # A CA bundle, an expired certificate and one that expires in about ten days.
        f["bundle"] = str(_cat(d / "pem/ca-bundle.pem", root, inter, other_root))
        _, ecsr = self.ec_csr("expired", "/O=Example/CN=expired.example.test", "DNS:expired.example.test")
        f["expired"] = str(self.sign(ecsr, d / "pem/expired.pem", start="20200101000000Z", end="20210101000000Z"))
        _, xcsr = self.ec_csr("soon", "/O=Example/CN=soon.example.test", "DNS:soon.example.test")
        f["expiring_soon"] = str(self.sign(xcsr, d / "pem/expiring-soon.pem", days=10))

        # DER and an openssl PKCS#12 with the chain.
        f["der"] = str(d / "der/server.der")
        self.ossl("x509", "-in", str(cert), "-outform", "DER", "-out", f["der"])
        f["p12"] = str(d / "keystores/server.p12")
        self.ossl("pkcs12", "-export", "-in", str(cert), "-inkey", str(skey), "-certfile", str(inter),
                  "-name", "server", "-passout", f"file:{pw['p12']}", "-out", f["p12"])

        # Java keystores with keytool: JKS (key entry + chain, trusted entry), JCEKS, PKCS#12.
        akey, acsr = self.ec_csr("app", "/O=Example/CN=app.example.test", "DNS:app.example.test")
        app = self.sign(acsr, self.ca / "app.pem", days=365)
        src = self.ca / "app-src.p12"
        self.ossl("pkcs12", "-export", "-in", str(app), "-inkey", str(akey),
                  "-certfile", str(_cat(self.ca / "app-chain.pem", inter, root)),
                  "-name", "app", "-passout", f"file:{pw['jks']}", "-out", str(src))
        f["jks"] = str(d / "keystores/app.jks")
        self.kt("-importkeystore", "-noprompt", "-srckeystore", str(src), "-srcstoretype", "PKCS12",
                "-srcstorepass:file", str(pw["jks"]), "-destkeystore", f["jks"], "-deststoretype", "JKS",
                "-deststorepass:file", str(pw["jks"]), "-destkeypass:file", str(pw["jks"]))
        self.kt("-importcert", "-noprompt", "-alias", "sample-root", "-file", str(root),
                "-keystore", f["jks"], "-storetype", "JKS", "-storepass:file", str(pw["jks"]))
        f["jceks"] = str(d / "keystores/app.jceks")
        self.kt("-importkeystore", "-noprompt", "-srckeystore", f["jks"], "-srcstoretype", "JKS",
                "-srcstorepass:file", str(pw["jks"]), "-destkeystore", f["jceks"], "-deststoretype", "JCEKS",
                "-deststorepass:file", str(pw["jks"]))
        f["keytool_p12"] = str(d / "keystores/keytool.p12")
        self.kt("-genkeypair", "-alias", "tomcat", "-keyalg", "EC", "-groupname", "secp256r1",
                "-dname", "CN=tomcat.example.test, O=Example", "-validity", "365", "-storetype", "PKCS12",
                "-keystore", f["keytool_p12"], "-storepass:file", str(pw["p12"]))
        self.kt("-importcert", "-noprompt", "-alias", "sample-root", "-file", str(root),
                "-keystore", f["keytool_p12"], "-storetype", "PKCS12", "-storepass:file", str(pw["p12"]))

        # Bad input.
        f["empty"] = str(_cat(d / "bad/empty.pem", b""))
        text = cert.read_bytes()
        f["truncated"] = str(_cat(d / "bad/truncated.pem", text[: len(text) // 2]))
        f["corrupt"] = str(_cat(d / "bad/corrupt.pem", b"this is not a certificate\n" * 8 + bytes(range(256))))
        f["wrong_password"] = str(d / "bad/wrong-password.p12")
        shutil.copyfile(f["p12"], f["wrong_password"])

        for name in ("key", "combined", "encrypted_key", "legacy_encrypted", "mismatch"):
            os.chmod(f[name], 0o600)
        stores = self.stores_toml(pw)
        config = (
            "# certfleet agent configuration for the sample stores (made by make_sample_stores.py)\n"
            "[agent]\n"
            f"data_dir = {_toml(str(d / 'agent-data'))}\n"
            'scan_interval = "15m"\n'
            'labels = { environment = "sample" }\n\n' + stores
        )
        cfg_path = d / "agent.toml"
        fd = os.open(cfg_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(config)
        os.chmod(cfg_path, 0o600)
        return {
            "dir": str(d), "config_path": str(cfg_path), "config_toml": stores, "stores_toml": stores,
            "agent_toml": config,
            "files": f, "password_files": {k: str(v) for k, v in pw.items()},
            "ca": {"root": str(root), "intermediate": str(inter), "other_root": str(other_root)},
        }

    def stores_toml(self, pw: dict[str, Path]) -> str:
        d = self.dest
        blocks = [
            ("web", "pem", [d / "pem/**/*.pem"], None, 'service = "web", owner = "web-team"'),
            ("der", "der", [d / "der/*.der"], None, 'service = "web", owner = "web-team"'),
            ("pkcs12", "pkcs12", [d / "keystores/*.p12"], pw["p12"], 'service = "tomcat", owner = "app-team"'),
            ("java", "jks", [d / "keystores/*.jks", d / "keystores/*.jceks"], pw["jks"],
             'service = "app", owner = "app-team"'),
            ("bad", "auto", [d / "bad/*"], pw["wrong"], 'owner = "nobody"'),
        ]
        out = []
        for name, stype, paths, password_file, labels in blocks:
            lines = [
                "[[store]]",
                f"name = {_toml(name)}",
                f"type = {_toml(stype)}",
                "paths = [" + ", ".join(_toml(str(p)) for p in paths) + "]",
                f"labels = {{ {labels} }}",
            ]
            if password_file is not None:
                lines.append(f"password_file = {_toml(str(password_file))}")
            out.append("\n".join(lines) + "\n")
        return "\n".join(out)


def make_sample_stores(dest_dir: Path) -> dict:
    """Create the sample stores under ``dest_dir`` with openssl and keytool.

    Returns a dict: ``dir``; ``config_toml`` (the ``[[store]]`` tables with
    their password_file settings, to append to an agent config after its
    ``[agent]`` table; ``stores_toml`` is the same text); ``agent_toml`` (a
    complete agent config: ``[agent]`` + the stores) and ``config_path`` (where
    that was written, DEST/agent.toml, mode 0600);
    ``files`` (logical name -> path: cert, key, chain, fullchain, combined,
    encrypted_key, legacy_encrypted, mismatch, bundle, expired, expiring_soon,
    der, p12, jks, jceks, keytool_p12, empty, truncated, corrupt,
    wrong_password), ``password_files`` (p12, jks, key, wrong) and ``ca``
    (root, intermediate, other_root). Raises ToolMissing when openssl or
    keytool is not installed.
    """
    tools = _check_tools()
    dest = Path(dest_dir).absolute()
    dest.mkdir(parents=True, exist_ok=True)
    return _Maker(dest, tools).make()


def main(argv: list[str] | None = None) -> int:
    """CLI: ``make_sample_stores.py DEST`` -> writes the stores, prints the agent config."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: make_sample_stores.py DEST", file=sys.stderr)
        return 2
    try:
        result = make_sample_stores(Path(args[0]))
    except ToolMissing as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(result["agent_toml"], end="")
    print(f"# written to {result['config_path']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
