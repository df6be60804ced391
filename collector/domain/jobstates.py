"""Renewal jobs as pure decisions: the state machine, retries, deadlines, renewal timing.

Nothing here does I/O or reads the clock: every function takes the facts and the
current time (``now``) from its caller, so the scheduler, the servicers and the
tests decide the same way. Storage lives in ``collector.registry.jobs``.

A renewal job moves through::

    requested --> key_pending --> csr_received --> issued --> installing --> verified
        ^             |                |             |            |
        +-------------+----------------+-------------+            +--> rolled_back
        (retry after a transient error, attempts + 1)             +--> failed

Any state that is not final may also go to ``failed`` (with a reason), ``stuck``
(its deadline passed) or ``cancelled``.

A renewal that is not authorized, or that the approval policy calls atypical (issue 11), starts in
``awaiting_approval`` instead of ``requested``: an approver's yes sends it to ``requested``, a no
ends it ``denied``, and nobody's answer by the approval's expiry ends it ``expired``. Nothing is
sent to the agent, and nothing issued, while it waits. A stuck job waits for an operator, who
retries it (back to ``requested``) or cancels it. Repeating the current state is
a no-op, so a repeated command or report is harmless.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import random
import re
from dataclasses import dataclass, field
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from collector.errors import CollectorError, InvalidInput

# -- states ------------------------------------------------------------------------

REQUESTED = "requested"        # created, waiting for the agent
KEY_PENDING = "key_pending"    # the agent was asked for a new key and a CSR
CSR_RECEIVED = "csr_received"  # the CSR is here; the issuer is next
ISSUED = "issued"              # the certificate is issued, waiting to be installed
INSTALLING = "installing"      # the agent was told to install, reload and verify
VERIFIED = "verified"          # final: the service serves the new certificate
#: AgentJobUpdate.verified_by of a verified job whose store has no verify entry: installed (and reloaded),
#: but no service was probed, so "verified" means only that the files were written and read back
VERIFIED_BY_NONE = "none"
FAILED = "failed"              # final
ROLLED_BACK = "rolled_back"    # final: the install failed and the old certificate is back
STUCK = "stuck"                # not final: the deadline passed; an operator retries or cancels
CANCELLED = "cancelled"        # final
AWAITING_APPROVAL = "awaiting_approval"  # not authorized or atypical: waits for an approver (issue 11)
DENIED = "denied"              # final: an approver said no
EXPIRED = "expired"            # final: nobody approved before the approval expired

STATES: tuple[str, ...] = (
    REQUESTED, KEY_PENDING, CSR_RECEIVED, ISSUED, INSTALLING, VERIFIED, FAILED, ROLLED_BACK, STUCK, CANCELLED,
    AWAITING_APPROVAL, DENIED, EXPIRED,
)
FINAL_STATES: frozenset[str] = frozenset({VERIFIED, FAILED, ROLLED_BACK, CANCELLED, DENIED, EXPIRED})
ACTIVE_STATES: frozenset[str] = frozenset(STATES) - FINAL_STATES
#: states that go back to ``requested`` after a transient error (agent offline, timeout)
RETRYABLE_STATES: frozenset[str] = frozenset({REQUESTED, KEY_PENDING, CSR_RECEIVED, ISSUED})

_FORWARD: dict[str, frozenset[str]] = {
    REQUESTED: frozenset({KEY_PENDING}),
    KEY_PENDING: frozenset({CSR_RECEIVED}),
    CSR_RECEIVED: frozenset({ISSUED}),
    ISSUED: frozenset({INSTALLING}),
    INSTALLING: frozenset({VERIFIED, ROLLED_BACK, FAILED}),
    STUCK: frozenset({REQUESTED}),
}


def _allowed(current: str) -> frozenset[str]:
    if current in FINAL_STATES:
        return frozenset()
    if current == AWAITING_APPROVAL:   # only a decision (or its absence) moves it
        return frozenset({REQUESTED, DENIED, EXPIRED, CANCELLED})
    out = set(_FORWARD.get(current, ())) | {FAILED, STUCK, CANCELLED}
    if current in RETRYABLE_STATES:
        out.add(REQUESTED)
    out.discard(current)
    return frozenset(out)


#: every allowed change of state (a repeat of the current state is not listed: it is a no-op)
TRANSITIONS: dict[str, frozenset[str]] = {s: _allowed(s) for s in STATES}


class InvalidTransition(CollectorError):
    """A job was asked to move to a state its state machine does not allow from where it is."""

    def __init__(self, message: str, current: str = "", new: str = "") -> None:
        super().__init__(message)
        self.current = current
        self.new = new


def is_final(state: str) -> bool:
    return state in FINAL_STATES


def transition(current: str, new: str) -> None:
    """Check that a job in ``current`` may move to ``new``; raise InvalidTransition if not.

    Repeating the current state is allowed (a no-op for the caller).
    """
    for s in (current, new):
        if s not in TRANSITIONS:
            raise InvalidTransition(f"unknown job state {s!r}; known states: {', '.join(STATES)}", current, new)
    if current == new:
        return
    if current in FINAL_STATES:
        raise InvalidTransition(f"the job is already {current} (final); it cannot become {new}", current, new)
    if new not in TRANSITIONS[current]:
        allowed = ", ".join(s for s in STATES if s in TRANSITIONS[current])
        raise InvalidTransition(
            f"a job cannot go from {current} to {new}; from {current} it can go to: {allowed}", current, new,
        )


# -- what an agent says about a job ----------------------------------------------------

#: the states an agent reports (JobUpdate.state); the challenge ones answer an ACME http-01 placement
CSR_READY = "csr_ready"
CHALLENGE_READY = "challenge_ready"
CHALLENGE_FAILED = "challenge_failed"
AGENT_STATES: tuple[str, ...] = (CSR_READY, INSTALLING, VERIFIED, ROLLED_BACK, FAILED, CHALLENGE_READY, CHALLENGE_FAILED)
#: agent states that end an install (the job takes them over as its own final state)
INSTALL_OUTCOMES: frozenset[str] = frozenset({VERIFIED, ROLLED_BACK, FAILED})


def is_challenge_answer(reported: str) -> bool:
    """Whether the agent answers an ACME http-01 placement (not a step of the job itself)."""
    return reported in (CHALLENGE_READY, CHALLENGE_FAILED)


def update_path(current: str, reported: str) -> tuple[str, ...]:
    """The states a job in ``current`` moves through, in order, when its agent reports ``reported``
    (one of AGENT_STATES but the challenge answers); empty when the report changes nothing (a repeated
    CSR, or news about a job that has moved on or ended). A report the state machine does not allow
    from ``current`` is left for :func:`transition` to refuse."""
    if current == AWAITING_APPROVAL and reported != "":   # nothing was asked of the agent yet
        if reported not in AGENT_STATES:
            raise InvalidInput(f"unknown job update state {reported!r}")
        return ()
    if reported == CSR_READY:
        if current == REQUESTED:    # a CSR for an earlier attempt (the agent keeps one key per job)
            return (KEY_PENDING, CSR_RECEIVED)
        return (CSR_RECEIVED,) if current == KEY_PENDING else ()
    if reported in INSTALL_OUTCOMES:
        if current in FINAL_STATES:
            return ()
        return (INSTALLING, reported) if current == ISSUED else (reported,)
    if reported == INSTALLING:
        return (INSTALLING,) if current == ISSUED else ()
    raise InvalidInput(f"unknown job update state {reported!r}")


@dataclass(frozen=True)
class InstallStep:
    """One step of an install as the agent did it: check, backup, write, reload, verify, restore."""

    step: str
    ok: bool
    detail: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class AgentJobUpdate:
    """What an agent says about one of its jobs (the wire's JobUpdate, read at the door)."""

    job_id: str
    state: str                          # one of AGENT_STATES, or "" when the agent sent none we know
    reason: str = ""
    csr_der: bytes = b""
    served_fingerprint: str = ""
    steps: tuple[InstallStep, ...] = ()
    reload_seconds: float = 0.0
    challenge_token: str = ""
    verified_by: str = ""              # with verified: "endpoints", or "none" (no verify entry: nothing probed)


# -- commands to the agent -------------------------------------------------------------

MAKE_CSR = "make_csr"
INSTALL = "install"

_COMMANDS = {REQUESTED: MAKE_CSR, KEY_PENDING: MAKE_CSR, ISSUED: INSTALL, INSTALLING: INSTALL}
_AFTER_COMMAND = {REQUESTED: KEY_PENDING, KEY_PENDING: KEY_PENDING, ISSUED: INSTALLING, INSTALLING: INSTALLING}

#: states whose jobs wait for a command to be sent (once next_attempt_at has come)
SEND_STATES: frozenset[str] = frozenset({REQUESTED, ISSUED})
#: states whose command was sent; it is sent again when no answer came within the resend interval
RESEND_STATES: frozenset[str] = frozenset({KEY_PENDING, INSTALLING})
#: how long to wait for the agent's answer before sending a command again (the agent is idempotent)
COMMAND_RESEND_AFTER = dt.timedelta(minutes=2)


def command_for(state: str) -> str | None:
    """The command a job in ``state`` needs sent to its agent: MAKE_CSR, INSTALL, or None."""
    return _COMMANDS.get(state)


def state_after_command(state: str) -> str:
    """The state a job moves to once its command was sent (requested -> key_pending, issued -> installing)."""
    try:
        return _AFTER_COMMAND[state]
    except KeyError:
        raise InvalidTransition(f"a job in state {state} has no command to send", state, state) from None


def command_due(
    state: str, next_attempt_at: dt.datetime, command_sent_at: dt.datetime | None, now: dt.datetime,
    resend_after: dt.timedelta = COMMAND_RESEND_AFTER,
) -> bool:
    """Whether the agent must be told about a job now (the rule ``JobStore.due_for_agent`` applies in SQL)."""
    fresh_claim = command_sent_at is not None and command_sent_at > now - resend_after
    if state in SEND_STATES:
        return next_attempt_at <= now and not fresh_claim
    if state in RESEND_STATES:
        return not fresh_claim
    return False


# -- retries and deadlines ------------------------------------------------------------------

RETRY_BASE = dt.timedelta(seconds=30)
RETRY_CAP = dt.timedelta(hours=1)
RETRY_JITTER = 0.1          # +-10 % when an rng is given
DEFAULT_TIMEOUT = dt.timedelta(hours=1)


class Rng(Protocol):
    def random(self) -> float: ...


def retry_delay(attempts: int, rng: Rng | random.Random | None = None) -> dt.timedelta:
    """Backoff before attempt number ``attempts + 1``: 30 s * 2**(attempts-1), at most 1 h.

    Deterministic unless ``rng`` is given (anything with ``random() -> [0, 1)``), which
    spreads the delay by +-10 % (still at most 1 h).
    """
    n = max(int(attempts), 1)
    # 30 s * 2**7 = 64 min > cap: no need to compute larger powers
    delay = RETRY_CAP if n > 8 else min(RETRY_BASE * (2 ** (n - 1)), RETRY_CAP)
    if rng is not None:
        delay = min(delay * (1 - RETRY_JITTER + 2 * RETRY_JITTER * rng.random()), RETRY_CAP)
    return delay


def deadline_for(created_at: dt.datetime, timeout: dt.timedelta = DEFAULT_TIMEOUT) -> dt.datetime:
    if timeout <= dt.timedelta(0):
        raise InvalidInput(f"a job timeout must be positive, not {timeout}")
    return created_at + timeout


def is_stuck(state: str, deadline: dt.datetime, now: dt.datetime) -> bool:
    """A job that is still running (not final, not already stuck) after its deadline is stuck."""
    return state in ACTIVE_STATES and state not in (STUCK, AWAITING_APPROVAL) and now > deadline


# -- when to renew ----------------------------------------------------------------------------

DEFAULT_FRACTION = 2 / 3
#: a renewal point is never later than this before expiry (or a tenth of the lifetime, if shorter)
MIN_MARGIN = dt.timedelta(hours=1)


def seed_fraction(seed: str) -> float:
    """A stable number in [0, 1) from ``seed`` (e.g. a fingerprint): the same on every replica."""
    digest = hashlib.sha256(seed.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def renewal_point(
    not_before: dt.datetime,
    not_after: dt.datetime,
    *,
    days_before: int | float | None = None,
    percent: float | None = None,
    jitter_fraction: float = 0.05,
    seed: str = "",
) -> dt.datetime:
    """When a certificate valid from ``not_before`` to ``not_after`` should be renewed.

    By default at two thirds of its lifetime; or ``days_before`` its expiry; or when
    ``percent`` (0-100) of its lifetime remains. The point then moves by up to
    ``jitter_fraction`` of the lifetime either way, by a fraction derived from ``seed``
    (so one certificate always gets the same point, and a fleet spreads out); an empty
    seed means no jitter. The result is never before ``not_before`` and never later
    than ``not_after`` minus a margin (1 h, or a tenth of the lifetime when shorter).
    """
    lifetime = not_after - not_before
    if lifetime <= dt.timedelta(0):
        raise InvalidInput(
            f"the certificate's validity is empty (not_before {not_before.isoformat()} "
            f"is not before not_after {not_after.isoformat()})"
        )
    if days_before is not None and percent is not None:
        raise InvalidInput("give days_before or percent, not both")
    if not 0 <= jitter_fraction < 0.5:
        raise InvalidInput(f"jitter_fraction must be in [0, 0.5), not {jitter_fraction}")
    if days_before is not None:
        if days_before < 0:
            raise InvalidInput(f"days_before must not be negative, not {days_before}")
        base = not_after - dt.timedelta(days=days_before)
    elif percent is not None:
        if not 0 < percent < 100:
            raise InvalidInput(f"percent of the lifetime left must be between 0 and 100, not {percent}")
        base = not_after - lifetime * (percent / 100)
    else:
        base = not_before + lifetime * DEFAULT_FRACTION
    latest = not_after - min(MIN_MARGIN, lifetime / 10)
    base = max(not_before, base)
    if seed and jitter_fraction > 0:
        span = lifetime * jitter_fraction
        x = 2 * seed_fraction(seed) - 1           # [-1, 1)
        if x >= 0:   # later: only as far as the margin allows, keeping the spread
            point = base + min(span, max(latest - base, dt.timedelta(0))) * x
        else:        # earlier: not before the certificate is valid
            point = base + min(span, base - not_before) * x
    else:
        point = base
    return max(not_before, min(point, latest))


# -- maintenance windows -------------------------------------------------------------------------

_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME = re.compile(r"(\d{1,2}):(\d{2})")


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    """Days of the week and a time range, in UTC or a named time zone.

    ``days`` are the days the window *opens* (0 = Monday ... 6 = Sunday, as
    ``datetime.weekday()``). ``start`` is inclusive, ``end`` exclusive; an ``end``
    at or before ``start`` crosses midnight into the next day (``start == end``:
    the whole 24 hours from ``start``). Times are wall-clock times in ``tz``.
    """

    start: dt.time
    end: dt.time
    days: frozenset[int] = field(default_factory=lambda: frozenset(range(7)))
    tz: str = "UTC"

    def __post_init__(self) -> None:
        days = frozenset(self.days)
        object.__setattr__(self, "days", days)
        if not days:
            raise InvalidInput("a maintenance window needs at least one day")
        if not days <= frozenset(range(7)):
            raise InvalidInput(f"maintenance window days are 0 (Monday) to 6 (Sunday), not {sorted(days)}")
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise InvalidInput("maintenance window times are wall-clock times; give the zone as tz")
        self.zone()   # fail early on an unknown zone

    def zone(self) -> dt.tzinfo:
        if self.tz.upper() == "UTC":
            return dt.timezone.utc
        try:
            return ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidInput(f"unknown time zone {self.tz!r} (use a name like Europe/Berlin, or UTC)") from None

    @classmethod
    def parse(cls, text: str) -> MaintenanceWindow:
        """From ``"[DAYS] HH:MM-HH:MM [ZONE]"``, e.g. ``"sat,sun 22:00-04:00 Europe/Berlin"``
        or ``"mon-fri 01:00-03:00"``. Days default to every day, the zone to UTC."""
        parts = text.split()
        if not parts:
            raise InvalidInput("empty maintenance window")
        days: frozenset[int] = frozenset(range(7))
        if parts[0][:1].isalpha():
            days = _parse_days(parts.pop(0))
        if not parts or "-" not in parts[0]:
            raise InvalidInput(f"maintenance window {text!r}: expected [DAYS] HH:MM-HH:MM [ZONE]")
        start_s, end_s = parts.pop(0).split("-", 1)
        tz = parts.pop(0) if parts else "UTC"
        if parts:
            raise InvalidInput(f"maintenance window {text!r}: unexpected {' '.join(parts)!r}")
        return cls(start=_parse_time(start_s, text), end=_parse_time(end_s, text), days=days, tz=tz)


def _parse_time(s: str, text: str) -> dt.time:
    m = _TIME.fullmatch(s)
    if not m or int(m.group(1)) > 24 or int(m.group(2)) > 59 or (int(m.group(1)) == 24 and int(m.group(2))):
        raise InvalidInput(f"maintenance window {text!r}: {s!r} is not a time HH:MM")
    h, mi = int(m.group(1)), int(m.group(2))
    return dt.time(0, 0) if h == 24 else dt.time(h, mi)


def _parse_days(s: str) -> frozenset[int]:
    out: set[int] = set()
    for part in s.lower().split(","):
        ends = part.split("-")
        try:
            idx = [_DAY_NAMES.index(e[:3]) for e in ends if e]
        except ValueError:
            raise InvalidInput(f"unknown day in {s!r}; use mon, tue, wed, thu, fri, sat, sun") from None
        if len(idx) == 1 and len(ends) == 1:
            out.add(idx[0])
        elif len(idx) == 2 and len(ends) == 2:
            a, b = idx
            out.update((a + i) % 7 for i in range((b - a) % 7 + 1))
        else:
            raise InvalidInput(f"bad day range in {s!r}")
    return frozenset(out)


def in_window(now: dt.datetime, window: MaintenanceWindow | None) -> bool:
    """Whether ``now`` (aware) falls inside ``window``; no window means always."""
    if window is None:
        return True
    if now.tzinfo is None:
        raise InvalidInput("in_window needs an aware datetime")
    local = now.astimezone(window.zone())
    t = local.time().replace(tzinfo=None)
    day = local.weekday()
    yesterday = (day - 1) % 7
    if window.start < window.end:
        return day in window.days and window.start <= t < window.end
    # crossing midnight (or the whole day when start == end)
    return (day in window.days and t >= window.start) or (yesterday in window.days and t < window.end)


def renewal_due(
    not_before: dt.datetime,
    not_after: dt.datetime,
    now: dt.datetime,
    window: MaintenanceWindow | None = None,
    *,
    days_before: int | float | None = None,
    percent: float | None = None,
    jitter_fraction: float = 0.05,
    seed: str = "",
) -> bool:
    """Whether a certificate should be renewed now: its renewal point has come and ``now`` is
    inside the maintenance window (when there is one)."""
    point = renewal_point(not_before, not_after, days_before=days_before, percent=percent,
                          jitter_fraction=jitter_fraction, seed=seed)
    return now >= point and in_window(now, window)
