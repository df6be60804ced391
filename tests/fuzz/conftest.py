"""The fuzz suite's plumbing: the seed corpus (made once per session) and the case count.

``pytest tests/fuzz --fuzz-long`` (or CERTFLEET_FUZZ_CASES=N) runs many more cases than the
normal suite; bench/fuzz_long.py does the same outside pytest and prints figures.
"""
from __future__ import annotations

import os

import pytest

from tests.conftest import need_tools
from tests.fuzz.corpus import Seed, make_seeds

#: cases per reader in the normal suite (a few thousand in all, well under a minute)
NORMAL_CASES = 3000
LONG_CASES = 50_000


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fuzz-long", action="store_true", default=False,
                     help=f"fuzz suite: {LONG_CASES} mutated stores instead of {NORMAL_CASES}")
    parser.addoption("--fuzz-seed", type=int, default=13, help="fuzz suite: the mutation seed (default 13)")


@pytest.fixture(scope="session")
def fuzz_cases(request: pytest.FixtureRequest) -> int:
    env = os.environ.get("CERTFLEET_FUZZ_CASES")
    if env:
        return int(env)
    return LONG_CASES if request.config.getoption("--fuzz-long", default=False) else NORMAL_CASES


@pytest.fixture(scope="session")
def fuzz_seed(request: pytest.FixtureRequest) -> int:
    return int(request.config.getoption("--fuzz-seed", default=13))


@pytest.fixture(scope="session")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> list[Seed]:
    need_tools("openssl", "keytool")
    return make_seeds(tmp_path_factory.mktemp("fuzz-seeds"))
