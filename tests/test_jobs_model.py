"""The renewal job model as pure decisions: state machine, backoff, deadlines, renewal timing, windows."""
from __future__ import annotations

import datetime as dt
import random

import pytest

from collector.domain import jobstates as jobs
from collector.errors import CollectorError, InvalidInput
from collector.domain.jobstates import (
    ACTIVE_STATES,
    FINAL_STATES,
    STATES,
    InvalidTransition,
    MaintenanceWindow,
    command_due,
    command_for,
    deadline_for,
    in_window,
    is_stuck,
    renewal_due,
    renewal_point,
    retry_delay,
    state_after_command,
    transition,
)

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
DAY = dt.timedelta(days=1)
S = dt.timedelta(seconds=1)

# -- the state machine ------------------------------------------------------------

ALLOWED = {
    ("requested", "key_pending"), ("key_pending", "csr_received"), ("csr_received", "issued"),
    ("issued", "installing"), ("installing", "verified"), ("installing", "rolled_back"),
    ("installing", "failed"),
    ("stuck", "requested"), ("stuck", "cancelled"),
    ("key_pending", "requested"), ("csr_received", "requested"), ("issued", "requested"),
}
for _s in ("requested", "key_pending", "csr_received", "issued", "installing", "stuck"):
    ALLOWED |= {(_s, "failed"), (_s, "cancelled")}
    if _s != "stuck":
        ALLOWED.add((_s, "stuck"))
# issue 11: a job waiting for an approver moves only by a decision (or its expiry), or is cancelled
ALLOWED |= {("awaiting_approval", s) for s in ("requested", "denied", "expired", "cancelled")}

PAIRS = [(a, b) for a in STATES for b in STATES if a != b]


def test_states_and_finals() -> None:
    assert set(STATES) == {"requested", "key_pending", "csr_received", "issued", "installing", "verified",
                           "failed", "rolled_back", "stuck", "cancelled", "awaiting_approval", "denied", "expired"}
    assert FINAL_STATES == {"verified", "failed", "rolled_back", "cancelled", "denied", "expired"}
    assert "awaiting_approval" in ACTIVE_STATES and not is_stuck("awaiting_approval", T0, T0 + 30 * DAY)
    assert "stuck" in ACTIVE_STATES and "stuck" not in FINAL_STATES
    assert jobs.is_final("verified") and not jobs.is_final("stuck")


@pytest.mark.parametrize(("current", "new"), sorted(ALLOWED))
def test_allowed_transitions(current: str, new: str) -> None:
    transition(current, new)   # does not raise


@pytest.mark.parametrize(("current", "new"), sorted(set(PAIRS) - ALLOWED))
def test_refused_transitions(current: str, new: str) -> None:
    with pytest.raises(InvalidTransition) as ei:
        transition(current, new)
    assert isinstance(ei.value, CollectorError)
    msg = str(ei.value)
    assert current in msg and new in msg
    assert (ei.value.current, ei.value.new) == (current, new)


def test_table_matches_the_specification() -> None:
    assert {(a, b) for a, bs in jobs.TRANSITIONS.items() for b in bs} == ALLOWED


@pytest.mark.parametrize("state", STATES)
def test_repeating_the_current_state_is_a_noop(state: str) -> None:
    transition(state, state)


def test_refusal_messages_are_clear() -> None:
    with pytest.raises(InvalidTransition, match="already verified \\(final\\); it cannot become installing"):
        transition("verified", "installing")
    with pytest.raises(InvalidTransition, match="cannot go from requested to issued; .* key_pending"):
        transition("requested", "issued")
    with pytest.raises(InvalidTransition, match="unknown job state 'done'"):
        transition("requested", "done")
    with pytest.raises(InvalidTransition, match="unknown job state"):
        transition("nope", "nope")


def test_commands() -> None:
    assert command_for("requested") == command_for("key_pending") == jobs.MAKE_CSR
    assert command_for("issued") == command_for("installing") == jobs.INSTALL
    assert command_for("csr_received") is None and command_for("verified") is None
    assert state_after_command("requested") == "key_pending"
    assert state_after_command("issued") == "installing"
    assert state_after_command("installing") == "installing"
    with pytest.raises(InvalidTransition):
        state_after_command("verified")


def test_what_an_agents_update_does_to_a_job() -> None:
    path = jobs.update_path
    assert path("key_pending", "csr_ready") == ("csr_received",)
    assert path("requested", "csr_ready") == ("key_pending", "csr_received")      # a CSR for an earlier attempt
    assert path("issued", "csr_ready") == path("verified", "csr_ready") == ()      # a repeat: harmless
    assert path("installing", "verified") == ("verified",)
    assert path("issued", "rolled_back") == ("installing", "rolled_back")
    assert path("failed", "verified") == path("cancelled", "failed") == ()         # late news of an ended job
    assert path("issued", "installing") == ("installing",) and path("installing", "installing") == ()
    for current, reported in [("requested", "csr_ready"), ("issued", "verified"), ("installing", "failed")]:
        states = (current, *path(current, reported))
        for a, b in zip(states, states[1:]):
            transition(a, b)      # every step is one the state machine allows
    with pytest.raises(InvalidInput, match="unknown job update state"):
        path("installing", "")
    assert jobs.is_challenge_answer("challenge_ready") and jobs.is_challenge_answer("challenge_failed")
    assert not jobs.is_challenge_answer("csr_ready")


def test_command_due() -> None:
    r = jobs.COMMAND_RESEND_AFTER
    assert command_due("requested", T0, None, T0)
    assert not command_due("requested", T0 + S, None, T0)             # backoff not over
    assert not command_due("requested", T0, T0 - S, T0)               # just claimed by someone
    assert command_due("requested", T0, T0 - r, T0)                   # claimed, but long ago
    assert command_due("issued", T0, None, T0)
    assert not command_due("key_pending", T0, T0 - r + S, T0)
    assert command_due("key_pending", T0, T0 - r, T0)                  # no answer: resend
    assert command_due("installing", T0 + DAY, None, T0)               # next_attempt_at does not matter
    for s in ("csr_received", "stuck", "verified", "failed", "rolled_back", "cancelled"):
        assert not command_due(s, T0, None, T0)


# -- retries and deadlines -------------------------------------------------------------


def test_backoff_values() -> None:
    assert [retry_delay(n).total_seconds() for n in range(1, 9)] == [30, 60, 120, 240, 480, 960, 1920, 3600]
    assert retry_delay(0) == retry_delay(1) == dt.timedelta(seconds=30)
    assert retry_delay(9) == retry_delay(10_000) == dt.timedelta(hours=1)


def test_backoff_jitter_is_bounded_and_injected() -> None:
    for n in (1, 3, 7, 50):
        base = retry_delay(n)
        values = {retry_delay(n, random.Random(i)) for i in range(200)}
        assert len(values) > 100
        assert all(base * 0.9 <= v <= min(base * 1.1, dt.timedelta(hours=1)) for v in values)
    assert retry_delay(4, random.Random(7)) == retry_delay(4, random.Random(7))

    class Fixed:
        def random(self) -> float:
            return 0.0

    assert retry_delay(2, Fixed()) == dt.timedelta(seconds=54)


def test_deadline_and_stuck() -> None:
    assert deadline_for(T0) == T0 + dt.timedelta(hours=1)
    assert deadline_for(T0, dt.timedelta(minutes=5)) == T0 + dt.timedelta(minutes=5)
    with pytest.raises(InvalidInput):
        deadline_for(T0, dt.timedelta(0))
    d = deadline_for(T0)
    assert not is_stuck("installing", d, d)
    assert is_stuck("installing", d, d + S)
    assert is_stuck("requested", d, d + S)
    assert not is_stuck("stuck", d, d + DAY)          # already
    for s in FINAL_STATES:
        assert not is_stuck(s, d, d + DAY)


# -- when to renew ----------------------------------------------------------------------

NB = dt.datetime(2026, 1, 1, tzinfo=UTC)
NA = NB + dt.timedelta(days=90)


def test_renewal_point_default_two_thirds() -> None:
    assert renewal_point(NB, NA) == NB + dt.timedelta(days=60)
    assert renewal_point(NB, NB + dt.timedelta(hours=24)) == NB + dt.timedelta(hours=16)


def test_renewal_point_days_before_and_percent() -> None:
    assert renewal_point(NB, NA, days_before=30) == NA - dt.timedelta(days=30)
    assert renewal_point(NB, NA, days_before=120) == NB                 # longer than the lifetime: now
    assert renewal_point(NB, NA, days_before=0) == NA - dt.timedelta(hours=1)   # never later than the margin
    assert renewal_point(NB, NA, percent=10) == NA - dt.timedelta(days=9)
    assert renewal_point(NB, NA, percent=50) == NB + dt.timedelta(days=45)


def test_renewal_point_refuses_nonsense() -> None:
    with pytest.raises(InvalidInput, match="not both"):
        renewal_point(NB, NA, days_before=3, percent=10)
    with pytest.raises(InvalidInput, match="validity is empty"):
        renewal_point(NA, NB)
    with pytest.raises(InvalidInput, match="percent"):
        renewal_point(NB, NA, percent=0)
    with pytest.raises(InvalidInput, match="percent"):
        renewal_point(NB, NA, percent=100)
    with pytest.raises(InvalidInput, match="days_before"):
        renewal_point(NB, NA, days_before=-1)
    with pytest.raises(InvalidInput, match="jitter_fraction"):
        renewal_point(NB, NA, jitter_fraction=0.6)


def test_jitter_is_deterministic_bounded_and_spread() -> None:
    base = NB + dt.timedelta(days=60)
    span = dt.timedelta(days=90) * 0.05
    fps = [f"{i:064x}" for i in range(500)]
    points = [renewal_point(NB, NA, seed=fp) for fp in fps]
    assert points == [renewal_point(NB, NA, seed=fp) for fp in fps]          # deterministic
    assert all(base - span <= p <= base + span for p in points)              # +- 5 % of the lifetime
    assert len(set(points)) == len(points)                                   # spread
    assert min(points) < base - span * 0.9 and max(points) > base + span * 0.9
    early = sum(p < base for p in points)
    assert 200 < early < 300                                                 # both ways, about evenly
    assert renewal_point(NB, NA, seed="") == base                            # no seed, no jitter
    assert renewal_point(NB, NA, seed="abc", jitter_fraction=0) == base


def test_jitter_never_passes_the_margin_nor_not_before() -> None:
    margin = dt.timedelta(hours=1)
    for i in range(300):
        seed = f"s{i}"
        p = renewal_point(NB, NA, days_before=1, jitter_fraction=0.2, seed=seed)
        assert NB <= p <= NA - margin
        q = renewal_point(NB, NA, days_before=89.9, jitter_fraction=0.2, seed=seed)
        assert NB <= q
        # a five-minute certificate: margin is a tenth of its lifetime
        short = renewal_point(NB, NB + dt.timedelta(minutes=5), percent=1, jitter_fraction=0.4, seed=seed)
        assert NB <= short <= NB + dt.timedelta(minutes=4, seconds=30)
    # the late side is squeezed into the room left, keeping distinct points
    late = {renewal_point(NB, NA, days_before=1, jitter_fraction=0.2, seed=f"s{i}") for i in range(300)}
    assert len(late) > 250


def test_seed_fraction() -> None:
    assert jobs.seed_fraction("a") == jobs.seed_fraction("a")
    assert 0 <= jobs.seed_fraction("a") < 1 and jobs.seed_fraction("a") != jobs.seed_fraction("b")


# -- maintenance windows ------------------------------------------------------------------

MON = dt.datetime(2026, 1, 5, tzinfo=UTC)    # a Monday


def at(day: int, h: int, m: int = 0, tz: dt.tzinfo = UTC) -> dt.datetime:
    return (MON + dt.timedelta(days=day)).replace(hour=h, minute=m, tzinfo=tz)


def test_no_window_is_always() -> None:
    assert in_window(T0, None)


def test_simple_window() -> None:
    w = MaintenanceWindow(start=dt.time(2), end=dt.time(4), days=frozenset({0, 2}))   # Mon, Wed 02-04 UTC
    assert MON.weekday() == 0
    assert in_window(at(0, 2), w) and in_window(at(0, 3, 59), w)
    assert not in_window(at(0, 4), w)                 # end is exclusive
    assert not in_window(at(0, 1, 59), w)
    assert not in_window(at(1, 3), w)                 # Tuesday
    assert in_window(at(2, 3), w)
    # the same instant given in another zone is the same instant
    assert in_window(at(0, 3).astimezone(dt.timezone(dt.timedelta(hours=-8))), w)


def test_window_crossing_midnight() -> None:
    w = MaintenanceWindow(start=dt.time(22), end=dt.time(2), days=frozenset({5}))     # Saturday 22:00 -> Sun 02:00
    assert in_window(at(5, 22), w) and in_window(at(5, 23, 59), w)
    assert in_window(at(6, 0), w) and in_window(at(6, 1, 59), w)   # Sunday morning belongs to Saturday's window
    assert not in_window(at(6, 2), w)
    assert not in_window(at(6, 22), w)                # Sunday evening: no window opens on Sunday
    assert not in_window(at(5, 1), w)                 # Saturday early morning: Friday has no window
    assert not in_window(at(5, 21, 59), w)


def test_whole_day_window() -> None:
    w = MaintenanceWindow(start=dt.time(0), end=dt.time(0), days=frozenset({1}))
    assert in_window(at(1, 0), w) and in_window(at(1, 23, 59), w)
    assert not in_window(at(2, 0), w) and not in_window(at(0, 23, 59), w)


def test_window_in_a_time_zone() -> None:
    # 02:00-04:00 in Berlin on Mondays: 01:00-03:00 UTC in winter, 00:00-02:00 UTC in summer
    w = MaintenanceWindow(start=dt.time(2), end=dt.time(4), days=frozenset({0}), tz="Europe/Berlin")
    assert in_window(at(0, 1), w) and in_window(at(0, 2, 59), w)
    assert not in_window(at(0, 0, 59), w) and not in_window(at(0, 3), w)
    summer = dt.datetime(2026, 7, 6, tzinfo=UTC)      # a Monday
    assert summer.weekday() == 0
    assert in_window(summer.replace(hour=0), w) and not in_window(summer.replace(hour=2), w)
    # crossing midnight in a zone: New York Friday 23:00 -> Saturday 01:00 local
    ny = MaintenanceWindow(start=dt.time(23), end=dt.time(1), days=frozenset({4}), tz="America/New_York")
    fri_2330_local_utc = dt.datetime(2026, 1, 10, 4, 30, tzinfo=UTC)   # Sat 04:30 UTC = Fri 23:30 EST
    assert in_window(fri_2330_local_utc, ny)
    assert in_window(fri_2330_local_utc + dt.timedelta(hours=1), ny)   # Sat 00:30 EST
    assert not in_window(fri_2330_local_utc + dt.timedelta(hours=2), ny)


def test_window_validation_and_parsing() -> None:
    with pytest.raises(InvalidInput, match="unknown time zone"):
        MaintenanceWindow(start=dt.time(1), end=dt.time(2), tz="Mars/Olympus")
    with pytest.raises(InvalidInput, match="at least one day"):
        MaintenanceWindow(start=dt.time(1), end=dt.time(2), days=frozenset())
    with pytest.raises(InvalidInput, match="0 \\(Monday\\) to 6"):
        MaintenanceWindow(start=dt.time(1), end=dt.time(2), days=frozenset({7}))
    w = MaintenanceWindow.parse("sat,sun 22:00-04:00 Europe/Berlin")
    assert w == MaintenanceWindow(start=dt.time(22), end=dt.time(4), days=frozenset({5, 6}), tz="Europe/Berlin")
    assert MaintenanceWindow.parse("mon-fri 01:00-03:00").days == frozenset(range(5))
    assert MaintenanceWindow.parse("fri-mon 01:00-03:00").days == frozenset({4, 5, 6, 0})
    assert MaintenanceWindow.parse("22:00-24:00") == MaintenanceWindow(start=dt.time(22), end=dt.time(0))
    for bad in ("", "mon", "funday 01:00-02:00", "01:00-25:00", "1-2", "mon 01:00-02:00 UTC extra"):
        with pytest.raises(InvalidInput):
            MaintenanceWindow.parse(bad)


def test_renewal_due() -> None:
    point = NB + dt.timedelta(days=60)
    assert not renewal_due(NB, NA, point - S)
    assert renewal_due(NB, NA, point)
    assert renewal_due(NB, NA, NA + DAY)             # expired: still due
    assert renewal_due(NB, NA, NA - dt.timedelta(days=31), days_before=30) is False
    assert renewal_due(NB, NA, NA - dt.timedelta(days=30), days_before=30)
    # due, but only inside the window
    w = MaintenanceWindow(start=dt.time(2), end=dt.time(4))
    late_night = point.replace(hour=3) + DAY
    assert renewal_due(NB, NA, late_night, w)
    assert not renewal_due(NB, NA, late_night.replace(hour=5), w)
    # jitter is applied with the seed
    seeded = renewal_point(NB, NA, seed="fp")
    assert renewal_due(NB, NA, seeded, seed="fp") and not renewal_due(NB, NA, seeded - S, seed="fp")
