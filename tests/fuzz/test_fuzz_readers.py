"""Mutated stores through every reader: entries or a problem with a reason, never a crash or a silent drop.

The seed corpus is made by openssl and keytool at test time (tests/fuzz/corpus.py); the
mutations are seeded and reproducible (tests/fuzz/mutate.py): a failing case is named by its
seed and number, and its bytes are kept under tests/fuzz/regressions/ to be replayed.
"""
from __future__ import annotations

import time

from tests.fuzz.corpus import Seed
from tests.fuzz.invariant import run_cases
from tests.fuzz.mutate import case_rng, mutate


def test_mutated_stores_never_crash_a_reader_nor_vanish(seeds: list[Seed], fuzz_cases: int, fuzz_seed: int) -> None:
    t0 = time.perf_counter()
    failures, tally = run_cases(seeds, fuzz_cases, fuzz_seed)
    took = time.perf_counter() - t0
    print(f"{fuzz_cases} cases in {took:.1f}s: {tally}")
    assert failures == [], "\n\n".join(failures[:10]) + f"\n({len(failures)} failing cases)"
    assert tally["problems"] + tally["errors"] > fuzz_cases // 4      # the mutations do damage


def test_the_engine_is_reproducible(seeds: list[Seed]) -> None:
    s = seeds[2]
    a = [mutate(s.data, case_rng(7, n), s.store_type) for n in range(50)]
    b = [mutate(s.data, case_rng(7, n), s.store_type) for n in range(50)]
    assert a == b and len(set(a)) > 40
