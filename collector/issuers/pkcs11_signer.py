"""CA keys in an HSM through PKCS#11 (``[keys] pkcs11``): the key is made in the token, marked
sensitive and not extractable, and every signature (certificates, CRLs) is made by the token.

```toml
[keys.pkcs11]
module = "/usr/lib/softhsm/libsofthsm2.so"   # the vendor's PKCS#11 library (SoftHSM2 in the tests)
token = "certfleet"                          # token label
pin_file = "/etc/certfleet/hsm.pin"          # mode 0600; or pin_env = "CERTFLEET_HSM_PIN"
```

With it, a new internal CA hierarchy is made with both keys (EC P-384) in the token, labelled
``certfleet-<issuer>-root`` / ``-issuing``; the registry's row then says ``key_store = pkcs11`` and
holds only the label. Every collector of the registry needs the same ``[keys.pkcs11]`` (the
HSM's configuration), nothing else. Needs the optional extra ``certfleet[hsm]`` (python-pkcs11).

cryptography signs only with its own keys, so a certificate or CRL is built with a throwaway key of
the same curve (which fixes the ``signatureAlgorithm``), and its to-be-signed part is signed again
by the token and put together with that signature (:func:`_resign`).
"""
from __future__ import annotations

import os
import stat
import threading
from pathlib import Path
from typing import Any, Mapping

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from collector.errors import IssuerError

#: the settings of ``[keys.pkcs11]``
KEYS = frozenset({"module", "token", "pin_file", "pin_env"})


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def _tlv_end(der: bytes, start: int) -> int:
    """The end offset of the DER element starting at ``start``."""
    first = der[start + 1]
    if first < 0x80:
        return start + 2 + first
    n = first & 0x7F
    return start + 2 + n + int.from_bytes(der[start + 2:start + 2 + n], "big")


def _resign(signed_der: bytes, tbs: bytes, signature: bytes) -> bytes:
    """``signed_der`` (SEQUENCE {tbs, algorithm, signature}) with ``signature`` instead of its own."""
    hdr = 2 if signed_der[1] < 0x80 else 2 + (signed_der[1] & 0x7F)
    assert signed_der[hdr:hdr + len(tbs)] == tbs
    alg_start = hdr + len(tbs)
    alg = signed_der[alg_start:_tlv_end(signed_der, alg_start)]
    bits = b"\x03" + _der_len(len(signature) + 1) + b"\x00" + signature
    body = tbs + alg + bits
    return b"\x30" + _der_len(len(body)) + body


class Pkcs11Key:
    """A private key in the token (EC P-384): signs, exposes its public key, never its value."""

    def __init__(self, token: "Pkcs11Token", label: str, public: ec.EllipticCurvePublicKey) -> None:
        self.token = token
        self.label = label
        self._public = public
        self.curve = public.curve
        self.key_size = public.curve.key_size

    def __repr__(self) -> str:
        return f"Pkcs11Key(label={self.label!r})"

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    def sign_builder(self, builder: Any) -> Any:
        """Sign a CertificateBuilder or CertificateRevocationListBuilder in the token."""
        throwaway = ec.generate_private_key(self.curve)
        h = hashes.SHA384() if self.key_size >= 384 else hashes.SHA256()
        made = builder.sign(throwaway, h)
        der = made.public_bytes(serialization.Encoding.DER)
        if isinstance(made, x509.Certificate):
            tbs = made.tbs_certificate_bytes
            return x509.load_der_x509_certificate(_resign(der, tbs, self.token.sign(self.label, tbs, h)))
        tbs = made.tbs_certlist_bytes
        return x509.load_der_x509_crl(_resign(der, tbs, self.token.sign(self.label, tbs, h)))


class Pkcs11Token:
    """One PKCS#11 token (module, label, PIN) with one logged-in session, used under a lock."""

    def __init__(self, module: str, token_label: str, pin: str) -> None:
        try:
            import pkcs11  # optional dependency (certfleet[hsm]): loaded only when [keys.pkcs11] is configured
        except ImportError:
            raise IssuerError("[keys.pkcs11] needs python-pkcs11: install certfleet[hsm]") from None
        self._p11 = pkcs11
        self.module = module
        self.token_label = token_label
        self._lock = threading.Lock()
        try:
            self._token = pkcs11.lib(module).get_token(token_label=token_label)
            self._session = self._token.open(user_pin=pin, rw=True)
        except Exception as e:  # noqa: BLE001 - library, token or PIN: say which token
            raise IssuerError(f"PKCS#11 token {token_label!r} in {module}: cannot open a session "
                              f"({type(e).__name__})") from None

    def __repr__(self) -> str:
        return f"Pkcs11Token(module={self.module!r}, token={self.token_label!r})"

    def generate(self, label: str) -> Pkcs11Key:
        """A new EC P-384 key pair in the token: the private key sensitive and never extractable."""
        p = self._p11
        from pkcs11.util.ec import encode_named_curve_parameters  # optional dependency, as above
        with self._lock:
            params = self._session.create_domain_parameters(
                p.KeyType.EC, {p.Attribute.EC_PARAMS: encode_named_curve_parameters("secp384r1")}, local=True)
            params.generate_keypair(
                store=True, label=label,
                private_template={p.Attribute.SENSITIVE: True, p.Attribute.EXTRACTABLE: False,
                                  p.Attribute.SIGN: True, p.Attribute.TOKEN: True},
                public_template={p.Attribute.VERIFY: True, p.Attribute.TOKEN: True})
        return self.key(label)

    def key(self, label: str) -> Pkcs11Key:
        p = self._p11
        from pkcs11.util.ec import encode_ec_public_key  # optional dependency, as above
        with self._lock:
            try:
                pub = self._session.get_key(object_class=p.ObjectClass.PUBLIC_KEY, key_type=p.KeyType.EC, label=label)
                priv = self._session.get_key(object_class=p.ObjectClass.PRIVATE_KEY, key_type=p.KeyType.EC,
                                             label=label)
            except (p.NoSuchKey, p.MultipleObjectsReturned):
                raise IssuerError(f"PKCS#11 token {self.token_label!r}: no single key labelled {label!r}") from None
            if priv[p.Attribute.EXTRACTABLE] or not priv[p.Attribute.SENSITIVE]:
                raise IssuerError(f"PKCS#11 key {label!r} is extractable: a CA key must stay in the token")
            public = serialization.load_der_public_key(encode_ec_public_key(pub))
        assert isinstance(public, ec.EllipticCurvePublicKey)
        return Pkcs11Key(self, label, public)

    def sign(self, label: str, data: bytes, h: hashes.HashAlgorithm) -> bytes:
        p = self._p11
        from pkcs11.util.ec import encode_ecdsa_signature  # optional dependency, as above
        # CKM_ECDSA on the digest: every token has it (SoftHSM2 has no CKM_ECDSA_SHA384); hashing is public work
        digest = hashes.Hash(h)
        digest.update(data)
        with self._lock:
            priv = self._session.get_key(object_class=p.ObjectClass.PRIVATE_KEY, key_type=p.KeyType.EC, label=label)
            return encode_ecdsa_signature(priv.sign(digest.finalize(), mechanism=p.Mechanism.ECDSA))

    def close(self) -> None:
        with self._lock:
            self._session.close()


def load_token(cfg: Mapping[str, Any] | None, base_dir: Path, environ: Mapping[str, str] | None = None) -> Pkcs11Token | None:
    """The token of ``[keys.pkcs11]``; None when not configured."""
    if not cfg:
        return None
    unknown = set(cfg) - KEYS
    if unknown:
        raise IssuerError(f"[keys.pkcs11]: unknown setting(s) {', '.join(sorted(unknown))}")
    if not cfg.get("module") or not cfg.get("token"):
        raise IssuerError("[keys.pkcs11] needs module and token")
    env = os.environ if environ is None else environ
    if cfg.get("pin_env"):
        name = str(cfg["pin_env"])
        if name not in env:
            raise IssuerError(f"[keys.pkcs11] pin_env: the environment variable {name} is not set")
        pin = env[name]
    elif cfg.get("pin_file"):
        path = Path(str(cfg["pin_file"]))
        path = path if path.is_absolute() else base_dir / path
        if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise IssuerError(f"{path}: the PIN file must be mode 0600")
        pin = path.read_text().strip()
    else:
        raise IssuerError("[keys.pkcs11] needs pin_file or pin_env")
    return Pkcs11Token(str(cfg["module"]), str(cfg["token"]), pin)
