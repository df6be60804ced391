"""The contract every store format keeps, one suite subclassed once per format.

A format (agent/stores/<format>.py: its reader and its writer, chosen by agent.stores) must:

- read -> write -> read back: the renewed entry is at the same location with its key, and every
  other entry of the store is still there, unchanged; the file keeps its mode (the write goes
  through agent.stores.files.atomic_replace, as the install pipeline's does);
- turn corrupt input into a reason (a StoreReadError or a reported problem with a reason code
  of agent.inventory.REASONS), never another exception; and refuse to rewrite it
  (StoreWriteError) rather than write something else.

The stores are made by the real tools (openssl, keytool: packaging/dev/make_sample_stores.py);
each subclass names one and the entry to renew. Adding a format: a subclass here.
"""
from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest
from agent.config import Secret
from agent.errors import StoreWriteError
from agent.inventory import MATCHES, REASONS, FoundCert
from agent.keys import new_key
from agent.stores import NewEntry, ReadContext, StoreReadError, WriteTarget, reader_for, writer_for
from agent.stores.files import atomic_replace

from tests.helpers.install_sites import TestCA


@dataclass
class StoreCase:
    path: Path                       # the store file (a copy: the test may change it)
    store_type: str                  # as a [[store]] would configure it
    alias: str                       # the private-key entry that is renewed
    password: str | None = None
    key_file: Path | None = None     # PEM/DER: the certificate's key, when in a file of its own
    mode: int = 0o640
    damaged: Path | None = None      # the file a write must refuse when it is corrupt (default: path)


def _copy(src: str, dest: Path, mode: int) -> Path:
    shutil.copyfile(src, dest)
    os.chmod(dest, mode)
    return dest


def _pw(samples: dict, name: str) -> str:
    return Path(samples["password_files"][name]).read_text().rstrip("\n")


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA("Certfleet Store Contract")


class StoreFormatContract:
    """Subclass with ``make(samples, tmp_path) -> StoreCase``."""

    __test__ = False

    def make(self, samples: dict, tmp_path: Path) -> StoreCase:
        raise NotImplementedError

    @pytest.fixture
    def case(self, samples: dict, tmp_path: Path) -> StoreCase:
        return self.make(samples, tmp_path)

    # ----------------------------------------------------------------- helpers

    @staticmethod
    def read(case: StoreCase, data: bytes | None = None) -> tuple[list[FoundCert], ReadContext]:
        secret = Secret(case.password) if case.password is not None else None
        ctx = ReadContext(password=lambda: secret)
        raw = case.path.read_bytes() if data is None else data
        return reader_for(case.store_type).read(str(case.path), raw, ctx), ctx

    @staticmethod
    def _target(case: StoreCase, entry: FoundCert) -> WriteTarget:
        secret = Secret(case.password) if case.password is not None else None
        return WriteTarget(entry.key, str(case.key_file) if case.key_file else None, None, secret)

    def _entry(self, case: StoreCase) -> FoundCert:
        entries, ctx = self.read(case)
        assert not ctx.problems, ctx.problems
        return next(e for e in entries if e.key.alias == case.alias and e.key.chain_index == 0)

    # ----------------------------------------------------------------- the contract

    def test_read_write_read_back_keeps_the_other_entries_and_the_mode(self, case: StoreCase, ca: TestCA) -> None:
        entries, _ = self.read(case)
        old = self._entry(case)
        others = {(e.key.alias, e.fingerprint) for e in entries if e.key.alias != case.alias}
        key = new_key("ec-p256")
        issued = ca.issue(key, ("renewed.example.test",))
        writer = writer_for(old.key.store_type)
        target = self._target(case, old)
        files = writer.files(target)
        assert files[0] == str(case.path)
        modes = {p: stat.S_IMODE(os.stat(p).st_mode) for p in files}
        rendered = writer.render(target, {p: Path(p).read_bytes() for p in files},
                                 NewEntry(key, issued.cert_der, issued.chain_ders))
        assert set(rendered) <= set(files)
        for p, data in rendered.items():
            atomic_replace(p, data)

        after, ctx = self.read(case)
        assert not ctx.problems, ctx.problems
        renewed = [e for e in after if e.key.alias == case.alias and e.key.chain_index == 0]
        assert [e.fingerprint for e in renewed] == [issued.fingerprint]
        if case.key_file is None:                                             # the key is in the store itself
            assert renewed[0].has_private_key and renewed[0].key_match == MATCHES
        assert {(e.key.alias, e.fingerprint) for e in after if e.key.alias != case.alias} == others
        assert old.fingerprint not in {e.fingerprint for e in after}          # replaced, not left behind
        assert {p: stat.S_IMODE(os.stat(p).st_mode) for p in files} == modes

    @pytest.mark.parametrize("damage", ["truncated", "garbage", "flipped"])
    def test_corrupt_input_gives_a_reason_never_an_exception(self, case: StoreCase, damage: str) -> None:
        raw = case.path.read_bytes()
        bad = {"truncated": raw[: len(raw) * 2 // 3], "garbage": os.urandom(len(raw)),
               "flipped": raw[:40] + bytes(b ^ 0x5A for b in raw[40:80]) + raw[80:]}[damage]
        try:
            entries, ctx = self.read(case, bad)
        except StoreReadError as e:
            assert e.reason in REASONS and e.message
        else:
            # readable in part: what could not be read is a reported problem with a reason
            assert all(p.reason in REASONS for p in ctx.problems)
            assert ctx.problems or all(len(e.fingerprint) == 64 for e in entries)

    def test_a_corrupt_store_is_not_rewritten(self, case: StoreCase, ca: TestCA) -> None:
        old = self._entry(case)
        key = new_key("ec-p256")
        issued = ca.issue(key, ("renewed.example.test",))
        writer = writer_for(old.key.store_type)
        target = self._target(case, old)
        current = {p: Path(p).read_bytes() for p in writer.files(target)}
        damaged = str(case.damaged or case.path)
        current[damaged] = current[damaged][: len(current[damaged]) // 2]
        with pytest.raises(StoreWriteError):
            writer.render(target, current, NewEntry(key, issued.cert_der, issued.chain_ders))


class TestPemCombined(StoreFormatContract):
    """A PEM file holding the key, the leaf, its intermediate and DH parameters."""

    __test__ = True

    def make(self, samples: dict, tmp_path: Path) -> StoreCase:
        f = samples["files"]
        path = tmp_path / "combined.pem"
        dh = b"-----BEGIN DH PARAMETERS-----\nMAYCAQACAQI=\n-----END DH PARAMETERS-----\n"
        path.write_bytes(Path(f["combined"]).read_bytes() + Path(f["chain"]).read_bytes() + dh)
        os.chmod(path, 0o640)
        return StoreCase(path, "pem", "")

    def test_read_write_read_back_keeps_the_other_entries_and_the_mode(self, case: StoreCase, ca: TestCA) -> None:
        super().test_read_write_read_back_keeps_the_other_entries_and_the_mode(case, ca)
        assert b"-----BEGIN DH PARAMETERS-----\nMAYCAQACAQI=\n" in case.path.read_bytes()   # a block that is not ours


class TestDerWithKeyFile(StoreFormatContract):
    """A DER certificate whose key is a PEM file beside it (the pair is the store)."""

    __test__ = True

    def make(self, samples: dict, tmp_path: Path) -> StoreCase:
        f = samples["files"]
        key = _copy(f["key"], tmp_path / "server.key", 0o600)
        # the certificate file holds nothing but the certificate replaced: what must not be rewritten when it is
        # damaged is the key file beside it
        return StoreCase(_copy(f["der"], tmp_path / "server.der", 0o644), "der", "", key_file=key, mode=0o644,
                         damaged=key)


class TestPkcs12FromKeytool(StoreFormatContract):
    """keytool's PKCS#12: a private-key entry and a trusted certificate entry."""

    __test__ = True

    def make(self, samples: dict, tmp_path: Path) -> StoreCase:
        return StoreCase(_copy(samples["files"]["keytool_p12"], tmp_path / "keytool.p12", 0o640), "pkcs12", "tomcat",
                         _pw(samples, "p12"))


class TestPkcs12FromOpenssl(StoreFormatContract):
    """openssl's PKCS#12: one key entry with its chain (the chain goes with the old entry)."""

    __test__ = True

    def make(self, samples: dict, tmp_path: Path) -> StoreCase:
        return StoreCase(_copy(samples["files"]["p12"], tmp_path / "server.p12", 0o600), "pkcs12", "server",
                         _pw(samples, "p12"), mode=0o600)


class TestJks(StoreFormatContract):
    """A JKS keystore: a private-key entry with its chain, and a trusted certificate entry."""

    __test__ = True

    def make(self, samples: dict, tmp_path: Path) -> StoreCase:
        return StoreCase(_copy(samples["files"]["jks"], tmp_path / "app.jks", 0o640), "jks", "app",
                         _pw(samples, "jks"))


class TestJceks(StoreFormatContract):
    """A JCEKS keystore (PBEWithMD5AndTripleDES key protection)."""

    __test__ = True

    def make(self, samples: dict, tmp_path: Path) -> StoreCase:
        return StoreCase(_copy(samples["files"]["jceks"], tmp_path / "app.jceks", 0o640), "jks", "app",
                         _pw(samples, "jks"))


class TestPkcs12ConfiguredAsJks(StoreFormatContract):
    """keytool's default since Java 9: a file called .jks that holds PKCS#12 (agent.stores routes by content)."""

    __test__ = True

    def make(self, samples: dict, tmp_path: Path) -> StoreCase:
        return StoreCase(_copy(samples["files"]["keytool_p12"], tmp_path / "keytool.jks", 0o640), "jks", "tomcat",
                         _pw(samples, "p12"))


def test_every_writable_format_has_a_contract_suite() -> None:
    from agent.stores import WRITERS

    covered = {"pem", "der", "pkcs12", "jks", "jceks"}
    assert set(WRITERS) == covered


def test_a_pem_block_that_is_not_a_certificate_is_not_read_as_one() -> None:
    pem = b"-----BEGIN DH PARAMETERS-----\nMAYCAQACAQI=\n-----END DH PARAMETERS-----\n"
    with pytest.raises(StoreReadError) as e:
        reader_for("pem").read("/x.pem", pem, ReadContext())
    assert e.value.reason == "no_certificates"
