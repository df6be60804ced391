"""Several collectors on one database are one internal CA: one hierarchy (made once even when they
start at the same moment), one serial log, revocations through any collector, identical complete
CRLs; the CA keys are in the registry only wrapped with the KEK; old single-collector files are
imported at the first start."""
from __future__ import annotations

import datetime as dt
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from sqlalchemy import text

from collector.domain.templates import SubjectNames
from collector.errors import IssuerError
from collector.issuers.base import RevocationReason
from collector.issuers.internal_ca import InternalCA
from collector.pki.keywrap import KeyWrapper, generate_kek_file, load_key_wrapper, read_kek_file
from tests.helpers.collector_issuers import make_csr, make_template, new_key, utcnow

NAMES = SubjectNames("web1.example.test", ("web1.example.test",))


def issue(ca: InternalCA, now: dt.datetime):  # noqa: ANN201
    key = new_key("ec", "P-256")
    return ca.issue(make_csr(key, dns=list(NAMES.dns), cn=NAMES.common_name), make_template(), NAMES, now)


def root_fp(ca: InternalCA, now: dt.datetime) -> str:
    return x509.load_der_x509_certificate(ca.root_der(now)).fingerprint(hashes.SHA256()).hex()


def crl_serials(der: bytes) -> set[int]:
    return {r.serial_number for r in x509.load_der_x509_crl(der)}


@pytest.mark.postgres
def test_two_collectors_starting_at_once_on_postgresql_make_one_ca(collectors, pg_url) -> None:  # noqa: ANN001
    now = utcnow()
    cs = collectors(pg_url, 4)
    cas = [c.ca() for c in cs]
    barrier = threading.Barrier(len(cas))
    fps: list[str] = []
    errors: list[BaseException] = []

    def start(ca: InternalCA) -> None:
        try:
            barrier.wait()
            fps.append(root_fp(ca, now))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=start, args=(ca,)) for ca in cas]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(set(fps)) == 1, "every collector signs under the same root"
    with cs[0].registry.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM ca_hierarchies")).scalar_one() == 1
    origins = {ca.origin for ca in cas}
    assert origins == {"generated"}
    # and a collector that starts later finds the same one
    late = collectors(pg_url, 1)[0].ca()
    assert root_fp(late, now) == fps[0]


def test_revoke_through_either_collector_and_crls_are_complete_and_identical(collectors, db_url) -> None:  # noqa: ANN001
    now = utcnow()
    a, b = (c.ca() for c in collectors(db_url, 2))
    from_a = [issue(a, now) for _ in range(3)]
    from_b = [issue(b, now) for _ in range(3)]
    serials = {int(i.serial, 16) for i in from_a + from_b}
    assert len(serials) == 6
    # each collector accepts what the other issued
    assert a.issued(from_b[0].certificate_der, now) and b.issued(from_a[0].certificate_der, now)
    a.revoke(from_b[0].certificate_der, RevocationReason.key_compromise, now)
    b.revoke(from_a[0].certificate_der, RevocationReason.superseded, now)
    b.revoke(from_b[1].certificate_der, RevocationReason.certificate_hold, now)
    want = {int(from_b[0].serial, 16), int(from_a[0].serial, 16), int(from_b[1].serial, 16)}
    crl_a, crl_b = a.crl_der(now), b.crl_der(now)
    assert crl_a == crl_b, "both collectors serve the same CRL"
    assert crl_serials(crl_a) == want
    # lifting the hold through the other collector: gone from both CRLs at once
    a.revoke(from_b[1].certificate_der, RevocationReason.remove_from_crl, now)
    assert crl_serials(b.crl_der(now)) == want - {int(from_b[1].serial, 16)}
    assert a.crl_der(now) == b.crl_der(now)
    assert {s for s, _, _ in a.revocations()} == {s for s, _, _ in b.revocations()}
    # a permanent revocation cannot be put on hold, whichever collector is asked
    with pytest.raises(IssuerError, match="permanently"):
        a.revoke(from_a[0].certificate_der, RevocationReason.certificate_hold, now)
    # the CRL verifies under the issuing intermediate
    inter = x509.load_der_x509_certificate(from_a[0].chain_ders[0])
    assert x509.load_der_x509_crl(crl_a).is_signature_valid(inter.public_key())  # type: ignore[arg-type]


def test_ca_keys_are_in_the_registry_only_wrapped(collectors, db_url, tmp_path) -> None:  # noqa: ANN001
    now = utcnow()
    c = collectors(db_url, 1)[0]
    ca = c.ca()
    issued = issue(ca, now)
    key_der = ca.hierarchy(now).key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with c.registry.engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM ca_hierarchies")).mappings().all()
    dump = b"".join(bytes(v) if isinstance(v, (bytes, memoryview)) else str(v).encode() for v in rows[0].values())
    assert key_der not in dump and key_der[-48:] not in dump
    assert b"PRIVATE KEY" not in dump
    # a collector with another KEK cannot use it, and says which KEK it needs
    other = tmp_path / "other.kek"
    generate_kek_file(other)
    c.wrapper = KeyWrapper(read_kek_file(other))
    with pytest.raises(IssuerError, match="wrapped with KEK"):
        c.ca().hierarchy(now)
    assert issued.serial


def test_kek_file_mode_is_checked_and_env_works(tmp_path) -> None:  # noqa: ANN001
    kek = tmp_path / "kek"
    kid = generate_kek_file(kek)
    kek.chmod(0o644)
    with pytest.raises(IssuerError, match="0644"):
        load_key_wrapper({"kek_file": str(kek)}, tmp_path)
    kek.chmod(0o600)
    assert load_key_wrapper({"kek_file": str(kek)}, tmp_path).kek_id == kid
    env = {"CF_KEK": kek.read_text().strip()}
    w = load_key_wrapper({"kek_env": "CF_KEK"}, tmp_path, environ=env)
    assert w.kek_id == kid and "CF_KEK" in w.source and env["CF_KEK"] not in repr(w)
    with pytest.raises(IssuerError, match="not set"):
        load_key_wrapper({"kek_env": "CF_NOPE"}, tmp_path, environ={})


def test_kek_rotation_rewraps_and_keeps_the_ca(collectors, db_url, tmp_path) -> None:  # noqa: ANN001
    now = utcnow()
    c = collectors(db_url, 1)[0]
    fp = root_fp(c.ca(), now)
    old_id = c.wrapper.kek_id
    new = tmp_path / "new.kek"
    generate_kek_file(new)
    c.wrapper = load_key_wrapper({"kek_file": str(new), "previous_kek_files": [str(c.data_dir / "kek")]}, tmp_path)
    ca = c.ca()
    assert root_fp(ca, now) == fp
    row = c.registry.issuer_state.get("internal")
    assert row is not None and row.kek_id == c.wrapper.kek_id != old_id
    # the old KEK is no longer needed
    c.wrapper = KeyWrapper(read_kek_file(new))
    assert root_fp(c.ca(), now) == fp
    issue(c.ca(), now)


def test_single_collector_files_are_imported_at_first_start(collectors, db_url, tmp_path) -> None:  # noqa: ANN001
    now = utcnow()
    c = collectors(db_url, 1)[0]
    old_dir = c.data_dir / "issuers" / "internal"
    old = InternalCA("internal", old_dir)          # the former single-collector layout
    kept = issue(old, now)
    gone = issue(old, now)
    old.revoke(gone.certificate_der, RevocationReason.key_compromise, now)
    fp = root_fp(old, now)
    ca = c.ca()
    assert root_fp(ca, now) == fp and ca.origin == "migrated"
    assert c.registry.issuer_state.issued_count("internal") == 2
    assert crl_serials(ca.crl_der(now)) == {int(gone.serial, 16)}
    ca.revoke(kept.certificate_der, RevocationReason.superseded, now)
    # a second collector on the same registry, without the old files, is the same CA
    (d,) = collectors(db_url, 1)
    assert root_fp(d.ca(), now) == fp
    assert crl_serials(d.ca().crl_der(now)) == {int(gone.serial, 16), int(kept.serial, 16)}


def test_the_kept_crl_is_served_until_half_its_validity_then_signed_anew(collectors, db_url) -> None:  # noqa: ANN001
    now = utcnow()
    a, b = (c.ca(crl_validity=dt.timedelta(days=2)) for c in collectors(db_url, 2))
    issued = issue(a, now)
    first = a.crl_der(now)
    assert b.crl_der(now + dt.timedelta(hours=1)) == first, "unchanged and young: the same CRL"
    later = now + dt.timedelta(hours=25)        # past half of 2 days: renewed well before nextUpdate
    renewed = x509.load_der_x509_crl(b.crl_der(later))
    old = x509.load_der_x509_crl(first)
    assert renewed.next_update_utc > old.next_update_utc
    number = lambda c: c.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number  # noqa: E731
    assert number(renewed) == number(old) + 1
    # a revocation makes a new one at once, whoever asks next
    a.revoke(issued.certificate_der, RevocationReason.superseded, later)
    assert crl_serials(b.crl_der(later)) == {int(issued.serial, 16)}
