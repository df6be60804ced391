"""Regenerate the Windows fixtures in this directory (see README.md for what is recorded and what is composed).

    .venv/bin/python tests/agent/windows/data/make_fixtures.py

The certificates are new each run, so every thumbprint in the text fixtures
changes with them: the netsh and appcmd fixtures are written from the
templates below with the thumbprints of the certificates in
``store_capture.json``. The tests derive their expectations from the files,
never from this script.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from agent.windows.records import KeyFacts, KeyProvInfo, StoreRecord, dump_capture, public_blob_of, thumbprint_of

HERE = Path(__file__).resolve().parent

IIS_APPID = "{4dc3e181-e14b-4a21-b022-59fc669b0914}"     # the application id IIS registers its bindings with
ADFS_APPID = "{5d89a20c-beab-4389-9447-324788eb944a}"    # AD FS (as in the published ADFS output)
KSP = "Microsoft Software Key Storage Provider"
SCHANNEL_CSP = "Microsoft RSA SChannel Cryptographic Provider"
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def issue(subject: str, key, issuer_name: x509.Name, issuer_key, ca: bool = False, sans=()) -> x509.Certificate:
    b = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(issuer_name).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(NOW - dt.timedelta(days=30))
         .not_valid_after(NOW + dt.timedelta(days=365 if not ca else 3650))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def der(c: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return c.public_bytes(Encoding.DER)


def main() -> None:
    root_key = ec.generate_private_key(ec.SECP384R1())
    root = issue("Contoso Test Root", root_key, name("Contoso Test Root"), root_key, ca=True)
    ica_key = ec.generate_private_key(ec.SECP256R1())
    ica = issue("Contoso Test Issuing CA", ica_key, root.subject, root_key, ca=True)

    def leaf(cn: str, key=None):
        key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return key, der(issue(cn, key, ica.subject, ica_key, sans=[cn]))

    www_key, www = leaf("www.contoso.example")
    shop_key, shop = leaf("shop.contoso.example", ec.generate_private_key(ec.SECP256R1()))
    api_key, api = leaf("api.contoso.example", ec.generate_private_key(ec.SECP384R1()))
    _, sts = leaf("sts.contoso.example")
    _, orphan = leaf("orphan.contoso.example")
    _, partner = leaf("partner.fabrikam.example")
    _, mism = leaf("mismatch.contoso.example")
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _, gone = leaf("old-portal.contoso.example")

    def prov(container: str, provider: str = KSP, prov_type: int = 0, spec: int = 0) -> KeyProvInfo:
        return KeyProvInfo(container, provider, prov_type, 0x20, spec)    # 0x20 CRYPT_MACHINE_KEYSET

    my = [
        StoreRecord("LocalMachine", "My", www, thumbprint_of(www), "www 2026", prov("te-www-5f3c"),
                    KeyFacts(True, KSP, 0, public_blob_of(www_key.public_key()))),
        StoreRecord("LocalMachine", "My", shop, thumbprint_of(shop), "shop", prov("te-shop-91aa"),
                    KeyFacts(True, KSP, 0x3, public_blob_of(shop_key.public_key()))),
        StoreRecord("LocalMachine", "My", sts, thumbprint_of(sts), "ADFS SSL", prov("{8F1C...}", SCHANNEL_CSP, 12, 1),
                    KeyFacts(False, error_code=0x80070005, error="error 0x80070005: Access is denied.")),
        StoreRecord("LocalMachine", "My", orphan, thumbprint_of(orphan), "", prov("te-orphan-0d1e"),
                    KeyFacts(False, error_code=0x80090016, error="NTE_BAD_KEYSET 0x80090016: Keyset does not exist")),
        StoreRecord("LocalMachine", "My", partner, thumbprint_of(partner), "partner (no key)", None, None),
        StoreRecord("LocalMachine", "My", mism, thumbprint_of(mism), "", prov("te-mism-77b0"),
                    KeyFacts(True, KSP, 0, public_blob_of(other_key.public_key()))),
    ]
    hosting = [
        StoreRecord("LocalMachine", "WebHosting", api, thumbprint_of(api), "api", prov("te-api-1c2d"),
                    KeyFacts(True, KSP, 0, public_blob_of(api_key.public_key()))),
    ]
    note = ("COMPOSED, not captured: the DER certificates were made by make_fixtures.py with cryptography; the "
            "property values (key provider info, export policy, error codes, public key blobs) were written to "
            "follow the Win32 structures and documented values, not read from a Windows host.")
    (HERE / "store_capture.json").write_text(dump_capture([("LocalMachine", "My", my),
                                                           ("LocalMachine", "WebHosting", hosting)], "composed", note))
    t = {k: thumbprint_of(v).lower() for k, v in
         dict(www=www, shop=shop, api=api, sts=sts, gone=gone).items()}
    for template, out in ((SSLCERT_2016, "sslcert_ws2016.txt"), (SSLCERT_2022, "sslcert_ws2022.txt")):
        text = template.format(iis=IIS_APPID, adfs=ADFS_APPID, **t)
        (HERE / out).write_bytes(text.replace("\n", "\r\n").encode("ascii"))
    (HERE / "appcmd_sites_config.xml").write_bytes(APPCMD_CONFIG.replace("\n", "\r\n").encode("utf-8"))
    (HERE / "appcmd_sites_plain.xml").write_bytes(APPCMD_PLAIN.replace("\n", "\r\n").encode("utf-8"))
    print("fixtures written to", HERE)


_OLD_BLOCK = """    {label:<29}: {where}
    Certificate Hash             : {hash}
    Application ID               : {appid}
    Certificate Store Name       : {store}
    Verify Client Certificate Revocation : Enabled
    Verify Revocation Using Cached Client Certificate Only : Disabled
    Usage Check                  : Enabled
    Revocation Freshness Time    : 0
    URL Retrieval Timeout        : 0
    Ctl Identifier               : (null)
    Ctl Store Name               : {ctl}
    DS Mapper Usage              : Disabled
    Negotiate Client Certificate : {negotiate}
"""
_NEW_TAIL = """    Reject Connections           : Disabled
    Disable HTTP2                : Not Set
    Disable QUIC                 : Not Set
    Disable TLS1.2               : Not Set
    Disable TLS1.3               : Not Set
    Disable OCSP Stapling        : Not Set
    Enable Token Binding         : Not Set
    Log Extended Events          : Not Set
    Disable Legacy TLS Versions  : {legacy}
    Enable Session Ticket        : Not Set
 Extended Properties:
    PropertyId                   : 0
    Receive Window               : 1048576
 Extended Properties:
    PropertyId                   : 1
    Max Settings Per Frame       : 2796202
    Max Settings Per Minute      : 4294967295
"""


def _block(label, where, hash_, appid, store, ctl="(null)", negotiate="Disabled", new=False, legacy="Not Set"):
    text = _OLD_BLOCK.format(label=label, where=where, hash=hash_, appid=appid, store=store, ctl=ctl,
                             negotiate=negotiate)
    if new:
        text += _NEW_TAIL.format(legacy=legacy)
    return text.replace("{", "{{").replace("}", "}}")


_HEAD = "\nSSL Certificate bindings:\n-------------------------\n\n"

SSLCERT_2016 = _HEAD + "\n".join([
    _block("IP:port", "0.0.0.0:443", "@www@", "@iis@", "MY"),
    _block("IP:port", "10.0.0.5:443", "@shop@", "@iis@", "My"),
    _block("Hostname:port", "shop.contoso.example:443", "@shop@", "@iis@", "My"),
    _block("Hostname:port", "sts.contoso.example:443", "@sts@", "@adfs@", "my", ctl="AdfsTrustedDevices"),
    _block("IP:port", "0.0.0.0:8444", "@gone@", "@iis@", "(null)"),
]) + "\n\n"

SSLCERT_2022 = _HEAD + "\n".join([
    _block("IP:port", "0.0.0.0:443", "@www@", "@iis@", "MY", new=True, legacy="Set"),
    _block("IP:port", "[2001:db8::10]:443", "@api@", "@iis@", "WebHosting", new=True),
    _block("Hostname:port", "shop.contoso.example:443", "@shop@", "@iis@", "My", negotiate="Enabled", new=True),
    _block("Central Certificate Store", "443", "(null)", "@iis@", "(null)", new=True),
    _block("IP:port", "0.0.0.0:8444", "@gone@", "@iis@", "(null)", new=True),
]) + "\n\n"

for _k in ("www", "shop", "api", "sts", "gone", "iis", "adfs"):
    SSLCERT_2016 = SSLCERT_2016.replace(f"@{_k}@", "{" + _k + "}")
    SSLCERT_2022 = SSLCERT_2022.replace(f"@{_k}@", "{" + _k + "}")

APPCMD_CONFIG = """<?xml version="1.0" encoding="UTF-8"?>
<appcmd>
    <SITE SITE.NAME="Default Web Site" SITE.ID="1" bindings="http/*:80:,https/*:443:,net.tcp/808:*" state="Started">
        <site name="Default Web Site" id="1" serverAutoStart="true">
            <bindings>
                <binding protocol="http" bindingInformation="*:80:" />
                <binding protocol="https" bindingInformation="*:443:" sslFlags="0" />
                <binding protocol="net.tcp" bindingInformation="808:*" />
            </bindings>
            <limits />
            <logFile />
            <traceFailedRequestsLogging />
            <hsts />
            <applicationDefaults />
            <virtualDirectoryDefaults />
            <ftpServer />
            <application path="/" applicationPool="DefaultAppPool">
                <virtualDirectoryDefaults />
                <virtualDirectory path="/" physicalPath="%SystemDrive%\\inetpub\\wwwroot" />
            </application>
        </site>
    </SITE>
    <SITE SITE.NAME="Shop" SITE.ID="2" bindings="https/10.0.0.5:443:,https/*:443:shop.contoso.example,http/*:80:shop.contoso.example" state="Started">
        <site name="Shop" id="2" serverAutoStart="true">
            <bindings>
                <binding protocol="https" bindingInformation="10.0.0.5:443:" sslFlags="0" />
                <binding protocol="https" bindingInformation="*:443:shop.contoso.example" sslFlags="1" />
                <binding protocol="http" bindingInformation="*:80:shop.contoso.example" />
            </bindings>
            <application path="/" applicationPool="Shop">
                <virtualDirectory path="/" physicalPath="D:\\sites\\shop" />
            </application>
        </site>
    </SITE>
    <SITE SITE.NAME="API" SITE.ID="3" bindings="https/[2001:db8::10]:443:" state="Started">
        <site name="API" id="3" serverAutoStart="true">
            <bindings>
                <binding protocol="https" bindingInformation="[2001:db8::10]:443:" sslFlags="0" />
            </bindings>
            <application path="/" applicationPool="API">
                <virtualDirectory path="/" physicalPath="D:\\sites\\api" />
            </application>
        </site>
    </SITE>
    <SITE SITE.NAME="Assets" SITE.ID="4" bindings="https/*:443:assets.contoso.example" state="Started">
        <site name="Assets" id="4" serverAutoStart="true">
            <bindings>
                <binding protocol="https" bindingInformation="*:443:assets.contoso.example" sslFlags="3" />
            </bindings>
            <application path="/" applicationPool="Assets">
                <virtualDirectory path="/" physicalPath="D:\\sites\\assets" />
            </application>
        </site>
    </SITE>
    <SITE SITE.NAME="Old Portal" SITE.ID="5" bindings="https/*:8444:" state="Stopped">
        <site name="Old Portal" id="5" serverAutoStart="false">
            <bindings>
                <binding protocol="https" bindingInformation="*:8444:" sslFlags="0" />
            </bindings>
            <application path="/" applicationPool="Old Portal">
                <virtualDirectory path="/" physicalPath="D:\\sites\\old-portal" />
            </application>
        </site>
    </SITE>
    <SITE SITE.NAME="Intranet" SITE.ID="6" bindings="https/*:9443:" state="Started">
        <site name="Intranet" id="6" serverAutoStart="true">
            <bindings>
                <binding protocol="https" bindingInformation="*:9443:" sslFlags="0" />
            </bindings>
            <application path="/" applicationPool="Intranet">
                <virtualDirectory path="/" physicalPath="D:\\sites\\intranet" />
            </application>
        </site>
    </SITE>
</appcmd>
"""

APPCMD_PLAIN = """<?xml version="1.0" encoding="UTF-8"?>
<appcmd>
    <SITE SITE.NAME="Default Web Site" SITE.ID="1" bindings="http/*:80:,https/*:443:,net.tcp/808:*" state="Started" />
    <SITE SITE.NAME="Shop" SITE.ID="2" bindings="https/10.0.0.5:443:,https/*:443:shop.contoso.example,http/*:80:shop.contoso.example" state="Started" />
    <SITE SITE.NAME="API" SITE.ID="3" bindings="https/[2001:db8::10]:443:" state="Started" />
</appcmd>
"""

if __name__ == "__main__":
    main()
