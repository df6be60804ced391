"""The long fuzz run: many more mutated stores through every reader than the normal suite.

    .venv/bin/python bench/fuzz_long.py [--cases 100000] [--seed 13] [--seeds 13,14,15]

Makes the seed corpus with openssl/keytool, runs the mutation engine (tests/fuzz/mutate.py) and
checks the invariant (tests/fuzz/invariant.py) on every case; prints cases, time, tallies and the
failing cases (their inputs are written to tests/fuzz/regressions/). Exit 1 when a case fails.
The same from pytest: ``pytest tests/fuzz --fuzz-long``.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fuzz.corpus import make_seeds  # noqa: E402
from tests.fuzz.invariant import run_cases  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=100_000, help="cases per seed (default 100000)")
    ap.add_argument("--seeds", default="13", help="comma-separated mutation seeds (default 13)")
    ns = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        corpus = make_seeds(Path(d))
    print(f"seed corpus: {len(corpus)} stores ({', '.join(s.name for s in corpus)})")
    failed = 0
    for seed in (int(x) for x in ns.seeds.split(",")):
        t0 = time.perf_counter()
        failures, tally = run_cases(corpus, ns.cases, seed)
        took = time.perf_counter() - t0
        print(f"seed {seed}: {ns.cases} cases in {took:.1f}s ({ns.cases / took:.0f}/s), "
              f"{tally['entries']} entries, {tally['problems']} problems, {tally['errors']} unreadable files, "
              f"{len(failures)} failing cases")
        for f in failures[:20]:
            print("  " + f.replace("\n", "\n  "))
        failed += len(failures)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
