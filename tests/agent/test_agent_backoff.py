"""The agent's retry delay after failed reports: exponential, jittered, capped independently of the scan interval."""
from __future__ import annotations

import random

from agent.service import BACKOFF_MAX, BACKOFF_START, next_delay


def test_backoff_grows_past_a_short_scan_interval_up_to_its_cap() -> None:
    rng = random.Random(1)
    for interval in (30.0, 60.0, 900.0, 4 * 3600.0):
        steps = [min(BACKOFF_MAX, BACKOFF_START * 2 ** (n - 1)) for n in range(1, 16)]
        delays = [next_delay(n, interval, rng) for n in range(1, 16)]
        assert all(s / 2 <= d <= s for d, s in zip(delays, steps, strict=True)), (interval, delays)
        assert max(delays) > 60.0 and max(delays) <= BACKOFF_MAX       # not held to a 30 s / 60 s interval
    assert next_delay(1000, 60.0, rng) <= BACKOFF_MAX                  # no overflow after a long outage


def test_the_jitter_spreads_a_fleet_that_failed_together() -> None:
    delays = {round(next_delay(6, 60.0, random.Random(seed)), 3) for seed in range(50)}
    assert len(delays) > 40


def test_after_a_success_the_scan_interval_with_ten_percent_jitter() -> None:
    rng = random.Random(2)
    assert all(810.0 <= next_delay(0, 900.0, rng) <= 990.0 for _ in range(100))
