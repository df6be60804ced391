"""Mutated PEM files read in small parts (as a large file is) give what a whole read gives."""
from __future__ import annotations

import os
from pathlib import Path

from agent.scan.filescan import pem_parts
from agent.stores import PemReader, ReadContext, StoreReadError

from tests.fuzz.corpus import Seed
from tests.fuzz.mutate import case_rng, mutate

CASES = 1500


def _whole(data: bytes) -> tuple[list[str], int, str]:
    ctx = ReadContext()
    try:
        fps = [e.fingerprint for e in PemReader().read("/f", data, ctx)]
    except StoreReadError as e:
        return [], len(ctx.problems), e.reason
    return fps, len(ctx.problems), ""


def _parts(path: Path, part_bytes: int) -> tuple[list[str], int, str]:
    ctx = ReadContext()
    fd = os.open(path, os.O_RDONLY)
    try:
        fps = [e.fingerprint for e in PemReader().read_parts("/f", pem_parts(fd, 1 << 30, part_bytes), ctx)]
    except StoreReadError as e:
        return [], len(ctx.problems), e.reason
    finally:
        os.close(fd)
    return fps, len(ctx.problems), ""


def test_parts_and_whole_agree(seeds: list[Seed], fuzz_seed: int, tmp_path: Path) -> None:
    pem = [s for s in seeds if s.store_type == "pem" and b"PRIVATE KEY" not in s.data]
    f = tmp_path / "case.pem"
    disagree = []
    for case in range(CASES):
        s = pem[case % len(pem)]
        rng = case_rng(fuzz_seed + 2, case)
        data = mutate(s.data * 3, rng, "pem")
        if b"PRIVATE KEY-----" in data:
            continue
        f.write_bytes(data)
        whole = _whole(data)
        for part_bytes in (rng.randrange(40, 400), 1500):
            got = _parts(f, part_bytes)
            if got[0] != whole[0] or bool(got[1] or got[2]) != bool(whole[1] or whole[2]):
                disagree.append((case, s.name, part_bytes, whole, got))
    assert disagree == []
