"""The fuzz invariant: every file yields entries or a problem with a reason.

Never an exception out of a reader (other than :class:`StoreReadError` with a known reason and
a message), never a silent drop. A silent drop is a read with no error and no problem that
returns fewer certificates than the file visibly holds:

- PEM: fewer entries than certificate BEGIN (or END) lines, or a certificate block that is
  still in the file byte for byte and is not among the entries;
- DER, PKCS#7, JKS, JCEKS: an original certificate still in the file byte for byte and not
  among the entries;
- PKCS#12 (its certificates are encrypted): fewer entries than the original.

A PEM problem names its block (``block N``).
"""
from __future__ import annotations

import base64
import hashlib
import re
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from agent.config import Secret
from agent.inventory import REASONS, FoundCert, ScanProblem
from agent.stores import ReadContext, StoreReadError, reader_for

from tests.fuzz.corpus import Seed
from tests.fuzz.mutate import case_rng, mutate

REGRESSIONS = Path(__file__).resolve().parent / "regressions"
_CERT_BEGIN = re.compile(rb"^-----BEGIN (?:X509 |TRUSTED )?CERTIFICATE-----\r?$", re.M)
_CERT_END = re.compile(rb"^-----END (?:X509 |TRUSTED )?CERTIFICATE-----\r?$", re.M)
_CERT_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+?-----END CERTIFICATE-----")


@dataclass
class Outcome:
    entries: list[FoundCert] = field(default_factory=list)
    problems: list[ScanProblem] = field(default_factory=list)
    error: StoreReadError | None = None
    crash: str = ""                     # the traceback of anything else


def read(store_type: str, data: bytes, password: str | None, path: str = "/fuzz/case") -> Outcome:
    ctx = ReadContext(password=lambda: Secret(password) if password is not None else None)
    out = Outcome()
    try:
        out.entries = reader_for(store_type).read(path, data, ctx)
    except StoreReadError as e:
        out.error = e
    except BaseException:  # noqa: BLE001 - a crash is what this test looks for (RecursionError, Rust panics...)
        out.crash = traceback.format_exc(limit=8)
    out.problems = list(ctx.problems)
    return out


def violations(store_type: str, data: bytes, out: Outcome, original: list[FoundCert] | None = None) -> list[str]:
    """What is wrong with ``out`` as the result of reading ``data`` (empty: nothing)."""
    bad: list[str] = []
    if out.crash:
        return [f"exception out of the reader:\n{out.crash}"]
    if out.error is not None and (out.error.reason not in REASONS or not out.error.message):
        bad.append(f"error without a known reason: {out.error.reason!r} {out.error.message!r}")
    for p in out.problems:
        if p.reason not in REASONS or not p.message:
            bad.append(f"problem without a known reason: {p}")
    for e in out.entries:
        if not e.der or hashlib.sha256(e.der).hexdigest() != e.fingerprint:
            bad.append(f"entry {e.key} has no DER or a wrong fingerprint")
    if out.error is not None or out.problems:
        return bad
    got = {e.fingerprint for e in out.entries}
    if store_type == "pem" or data.lstrip()[:11] == b"-----BEGIN ":
        visible = max(len(_CERT_BEGIN.findall(data)), len(_CERT_END.findall(data)))
        if len(out.entries) < visible:
            bad.append(f"silent drop: {len(out.entries)} entries, {visible} certificate blocks, no problem")
        known = {o.fingerprint for o in original or ()}
        for m in _CERT_BLOCK.finditer(data):
            fp = _fp_of_block(m.group(0))
            if fp in known and fp not in got:
                bad.append(f"silent drop: the intact certificate block at byte {m.start()} is not among the entries")
        return bad
    if original is None:
        return bad
    if store_type == "pkcs12" and data[:4] not in (b"\xfe\xed\xfe\xed", b"\xce\xce\xce\xce"):
        if len(out.entries) < len(original):
            bad.append(f"silent drop: {len(out.entries)} of {len(original)} certificates, no problem")
        return bad
    for o in original:
        if o.der and o.der in data and o.fingerprint not in got:
            bad.append(f"silent drop: certificate {o.key.alias!r}#{o.key.chain_index} is intact in the file "
                       "but not reported, and no problem")
    return bad


def run_cases(seeds: list[Seed], cases: int, seed: int, auto_share: float = 0.25) -> tuple[list[str], dict[str, int]]:
    """Read ``cases`` mutants of ``seeds``; (failure descriptions, tallies). Failing inputs are saved."""
    originals = {}
    for s in seeds:
        out = read(s.store_type, s.data, s.password)
        assert not out.crash and out.error is None and not out.problems, (s.name, out)
        assert out.entries, s.name
        originals[s.name] = out.entries
    failures: list[str] = []
    tally = {"entries": 0, "problems": 0, "errors": 0}
    for case in range(cases):
        s = seeds[case % len(seeds)]
        rng = case_rng(seed, case)
        data = mutate(s.data, rng, s.store_type)
        store_type = "auto" if rng.random() < auto_share else s.store_type
        out = read(store_type, data, s.password)
        bad = violations(s.store_type, data, out, originals[s.name])
        tally["entries"] += len(out.entries)
        tally["problems"] += len(out.problems)
        tally["errors"] += out.error is not None
        if bad:
            why = f"seed {seed} case {case} ({s.name} read as {store_type}):\n" + "\n".join(bad)
            path = save_regression(s.name, s.store_type, data, why)
            failures.append(f"{why}\n-> {path}")
    return failures, tally


def _fp_of_block(block: bytes) -> str | None:
    body = block.split(b"-----", 3)[2] if block.count(b"-----") >= 4 else b""
    try:
        return hashlib.sha256(base64.b64decode(b"".join(body.split()))).hexdigest()
    except ValueError:
        return None


def save_regression(name: str, store_type: str, data: bytes, why: str) -> Path:
    """Keep a failing input under tests/fuzz/regressions/ (replayed by test_fuzz_regressions.py)."""
    REGRESSIONS.mkdir(exist_ok=True)
    digest = hashlib.sha256(data).hexdigest()[:12]
    path = REGRESSIONS / f"{name}-{digest}.{store_type}"
    path.write_bytes(data)
    path.with_suffix(path.suffix + ".txt").write_text(why[:4000] + "\n")
    return path
