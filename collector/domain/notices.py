"""What to tell whom, as pure functions of facts and ``now`` (no I/O, no clock).

Expiry notices
--------------
Each certificate (per owner it has) is judged against a list of thresholds in
days -- the owner's from ``[notify.thresholds_by_owner]``, else its
environment's from ``[notify.thresholds_by_environment]`` (the union when its
locations are in several), else ``[notify] thresholds`` (default 60, 30, 14, 7, 1).
A threshold is *crossed* when the certificate has that many days left or fewer.

- Each threshold triggers at most once: the key is (fingerprint, threshold,
  kind, owner), and ``sent`` holds the keys already claimed. A renewed
  certificate has a new fingerprint, so it starts again from the top.
- Crossing several at once (a certificate first seen with 10 days left, or a
  collector that was down) sends only the smallest crossed threshold and marks
  the larger ones (``Notice.marks``) so they are never sent later.
- Escalation: crossing ``escalate_at`` days (default 7) with no renewal job under
  way for the certificate tells the owner's escalation contact as well (kind
  ``escalation``, once per certificate).

Other events (each once, by key): a renewal job that ``failed`` or was
``rolled_back``, a job ``stuck`` (key: job id + state), an agent silent for
longer than ``agent_silent_after`` (key: agent id + its last-seen time, so it is
told again after it came back and went silent again), and a policy violation on
a production certificate (see :func:`violation_notice`), and a stale service: a file
whose process serves another certificate (key: location id + served fingerprint + stale
since, so one notice per stale episode; see :func:`stale_service_notices`).

Days left are told by one rule in every channel (:func:`whole_days`): whole days,
rounded down, negative once expired -- the mail's "expires in 4 day(s)" and the
webhook's ``"days_left": 4`` for the same certificate; under a day the text says hours.

Notices are grouped per owner into one :class:`Digest` per run (``""`` is the
digest of notices that have no owner).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

DEFAULT_THRESHOLDS: tuple[int, ...] = (60, 30, 14, 7, 1)
DEFAULT_ESCALATE_AT = 7
DEFAULT_AGENT_SILENT_AFTER = dt.timedelta(days=1)

EXPIRY = "expiry"
ESCALATION = "escalation"
JOB_FAILED = "job.failed"
JOB_ROLLED_BACK = "job.rolled_back"
JOB_STUCK = "job.stuck"
AGENT_SILENT = "agent.silent"
POLICY_VIOLATION = "policy.violation"
STALE_SERVICE = "stale.service"
APPROVAL_PENDING = "approval.pending"   # an issuance waits for an approver (issue 11)
KINDS = (EXPIRY, ESCALATION, JOB_FAILED, JOB_ROLLED_BACK, JOB_STUCK, AGENT_SILENT, POLICY_VIOLATION, STALE_SERVICE,
         APPROVAL_PENDING)
JOB_KINDS = {"failed": JOB_FAILED, "rolled_back": JOB_ROLLED_BACK, "stuck": JOB_STUCK}

#: a notice's key in ``notices_sent``: (fingerprint or event hash, threshold, kind, owner)
Key = tuple[str, int, str, str]
_PRIORITY = {"critical": "P1", "high": "P2", "medium": "P3", "low": "P4"}


def event_key(*parts: str) -> str:
    """The 64-hex key of a non-certificate event (job id + state, agent id + last seen, ...)."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def priority_for(criticality: str | None, kind: str = EXPIRY) -> str:
    """Ticket priority from criticality (P1..P4, default P3); escalations and failures one step up."""
    p = _PRIORITY.get((criticality or "").lower(), "P3")
    if kind != EXPIRY and p != "P1":
        p = f"P{int(p[1]) - 1}"
    return p


@dataclass(frozen=True, slots=True)
class Place:
    """Where a certificate sits (for the notice's text and the ticket's hosts/paths)."""

    hostname: str
    path: str
    alias: str = ""
    agent_id: str = ""
    store_type: str = ""
    chain_index: int = 0

    def text(self) -> str:
        return f"{self.hostname}:{self.path}" + (f" [{self.alias}]" if self.alias else "")


@dataclass(frozen=True, slots=True)
class CertItem:
    """One certificate as one owner sees it: its facts, its places, and whether it is being renewed."""

    fingerprint: str
    subject: str
    not_after: dt.datetime
    owner: str                                   # "" when unowned
    environments: tuple[str, ...] = ()
    criticality: str = ""
    service: str = ""
    places: tuple[Place, ...] = ()
    renewal_running: bool = False


@dataclass(frozen=True, slots=True)
class Thresholds:
    default: tuple[int, ...] = DEFAULT_THRESHOLDS
    by_environment: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    by_owner: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    escalate_at: int | None = DEFAULT_ESCALATE_AT   # None: no escalation

    def for_item(self, owner: str, environments: Iterable[str]) -> tuple[int, ...]:
        if owner in self.by_owner:
            return tuple(sorted(set(self.by_owner[owner]), reverse=True))
        envs = [self.by_environment[e] for e in environments if e in self.by_environment]
        if envs:
            return tuple(sorted({t for ts in envs for t in ts}, reverse=True))
        return tuple(sorted(set(self.default), reverse=True))


@dataclass(frozen=True, slots=True)
class Notice:
    kind: str
    key: str                       # certificate fingerprint, or event_key(...) for other events
    threshold: int                 # days (expiry, escalation); 0 for other events
    owner: str
    title: str                     # one line
    detail: str = ""
    target: str = ""               # certificate:<fp>, job:<id>, agent:<id>
    fingerprint: str = ""          # the certificate concerned, when there is one
    subject: str = ""
    not_after: dt.datetime | None = None
    days_left: float | None = None
    environment: str = ""
    criticality: str = ""
    service: str = ""
    places: tuple[Place, ...] = ()
    marks: tuple[int, ...] = ()    # larger thresholds crossed at the same time: marked, not sent
    escalate: bool = False         # tell the owner's escalation contact too

    @property
    def sent_key(self) -> Key:
        return (self.key, self.threshold, self.kind, self.owner)

    @property
    def priority(self) -> str:
        return priority_for(self.criticality, self.kind)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind, "title": self.title, "detail": self.detail, "target": self.target,
            "threshold_days": self.threshold if self.kind in (EXPIRY, ESCALATION) else None,
            "fingerprint": self.fingerprint, "subject": self.subject,
            "not_after": self.not_after.isoformat() if self.not_after else None,
            "days_left": whole_days(self.days_left) if self.days_left is not None else None,
            "environment": self.environment, "criticality": self.criticality, "service": self.service,
            "priority": self.priority, "escalate": self.escalate,
            "locations": [{"host": p.hostname, "path": p.path, "alias": p.alias} for p in self.places],
        }


@dataclass(frozen=True, slots=True)
class Digest:
    """All of one owner's notices of one run."""

    owner: str
    notices: tuple[Notice, ...]

    @property
    def escalations(self) -> tuple[Notice, ...]:
        return tuple(n for n in self.notices if n.escalate)


def days_left(not_after: dt.datetime, now: dt.datetime) -> float:
    return (not_after - now).total_seconds() / 86400.0


def whole_days(d: float) -> int:
    """The days left every channel tells: whole days, rounded down (negative once expired), the
    rule of the reports and the CLI (collector/reports/model.py days_left)."""
    return math.floor(d)


def _when(d: float) -> str:
    if d <= 0:
        return "has EXPIRED"
    if d < 1:
        return f"expires in {max(1, int(d * 24))} hour(s)"
    return f"expires in {whole_days(d)} day(s)"


def deciding_keys(item: CertItem, now: dt.datetime, thresholds: Thresholds = Thresholds(),
                  memo: dict[tuple[str, tuple[str, ...]], tuple[int, ...]] | None = None) -> tuple[Key, ...]:
    """The keys :func:`due_notices` decides ``item`` on: the expiry notice of the smallest threshold
    crossed (when one is), and the escalation (when it is crossed and no renewal runs).

    ``due_notices([item], sent, ...)`` has a notice exactly when one of these is not in ``sent``
    (the larger thresholds only become ``marks`` of such a notice), so a notifier may look these
    keys up first (an anti-join in the registry) and judge only the items with an unsent one.
    ``memo`` (a dict kept over one run) remembers the thresholds per owner and environments."""
    d = days_left(item.not_after, now)
    if memo is None:
        ts = thresholds.for_item(item.owner, item.environments)
    else:                                   # many items share an owner and environments
        ts = memo.get((item.owner, item.environments))   # type: ignore[assignment]
        if ts is None:
            ts = memo[(item.owner, item.environments)] = thresholds.for_item(item.owner, item.environments)
    crossed = [t for t in ts if d <= t]
    keys: list[Key] = []
    if crossed:
        keys.append((item.fingerprint, min(crossed), EXPIRY, item.owner))
    esc = thresholds.escalate_at
    if esc is not None and d <= esc and not item.renewal_running:
        keys.append((item.fingerprint, esc, ESCALATION, item.owner))
    return tuple(keys)


def due_notices(items: Iterable[CertItem], sent: Iterable[Key] | set[Key], now: dt.datetime,
                thresholds: Thresholds = Thresholds()) -> list[Notice]:
    """Expiry and escalation notices due now for ``items`` (see the module doc), given the ``sent`` keys
    (those of :func:`deciding_keys` and, for the marks, the item's larger thresholds)."""
    sent = sent if isinstance(sent, (set, frozenset)) else set(sent)
    out: list[Notice] = []
    for it in items:
        d = days_left(it.not_after, now)
        ts = thresholds.for_item(it.owner, it.environments)
        crossed = [t for t in ts if d <= t]
        env = ",".join(sorted(set(it.environments)))
        common = dict(
            key=it.fingerprint, owner=it.owner, target=f"certificate:{it.fingerprint}", fingerprint=it.fingerprint,
            subject=it.subject, not_after=it.not_after, days_left=d, environment=env,
            criticality=it.criticality, service=it.service, places=it.places,
        )
        if crossed:
            smallest = min(crossed)
            if (it.fingerprint, smallest, EXPIRY, it.owner) not in sent:
                marks = tuple(t for t in crossed if t != smallest and (it.fingerprint, t, EXPIRY, it.owner) not in sent)
                out.append(Notice(
                    kind=EXPIRY, threshold=smallest, marks=marks,
                    title=f"{it.subject or it.fingerprint[:16]} {_when(d)} (threshold {smallest} days)",
                    detail=f"not after {it.not_after.isoformat()}", **common,  # type: ignore[arg-type]
                ))
        esc = thresholds.escalate_at
        if (esc is not None and d <= esc and not it.renewal_running
                and (it.fingerprint, esc, ESCALATION, it.owner) not in sent):
            out.append(Notice(
                kind=ESCALATION, threshold=esc, escalate=True,
                title=f"ESCALATION: {it.subject or it.fingerprint[:16]} {_when(d)} and no renewal is under way",
                detail=f"crossed the escalation threshold of {esc} days; not after {it.not_after.isoformat()}",
                **common,  # type: ignore[arg-type]
            ))
    return out


@dataclass(frozen=True, slots=True)
class JobFact:
    job_id: str
    state: str                     # failed, rolled_back, stuck (others are ignored)
    fingerprint: str               # the certificate being renewed
    subject: str
    owner: str
    place: Place
    reason: str = ""
    criticality: str = ""
    environment: str = ""
    not_after: dt.datetime | None = None


def job_notices(jobs: Iterable[JobFact], sent: set[Key] | frozenset[Key]) -> list[Notice]:
    """One notice per job and state it reached (failed, rolled back, stuck), never twice."""
    out = []
    for j in jobs:
        kind = JOB_KINDS.get(j.state)
        if kind is None:
            continue
        key = event_key("job", j.job_id, j.state)
        if (key, 0, kind, j.owner) in sent:
            continue
        what = {"failed": "FAILED", "rolled_back": "was ROLLED BACK", "stuck": "is STUCK"}[j.state]
        out.append(Notice(
            kind=kind, key=key, threshold=0, owner=j.owner, target=f"job:{j.job_id}",
            title=f"renewal of {j.subject or j.fingerprint[:16]} on {j.place.text()} {what}",
            detail=j.reason, fingerprint=j.fingerprint, subject=j.subject, not_after=j.not_after,
            criticality=j.criticality, environment=j.environment, places=(j.place,), escalate=True,
        ))
    return out


@dataclass(frozen=True, slots=True)
class AgentFact:
    agent_id: str
    hostname: str
    last_seen: dt.datetime
    owners: tuple[str, ...] = ()   # owners of what it holds; () -> the unowned digest
    status: str = "active"


def silent_agent_notices(agents: Iterable[AgentFact], sent: set[Key] | frozenset[Key], now: dt.datetime,
                         silent_after: dt.timedelta = DEFAULT_AGENT_SILENT_AFTER) -> list[Notice]:
    """Agents (active) not heard from for longer than ``silent_after``: once per silence."""
    out = []
    for a in agents:
        if a.status != "active" or now - a.last_seen <= silent_after:
            continue
        key = event_key("agent", a.agent_id, a.last_seen.isoformat())
        hours = int((now - a.last_seen).total_seconds() // 3600)
        for owner in sorted(set(a.owners)) or [""]:
            if (key, 0, AGENT_SILENT, owner) in sent:
                continue
            out.append(Notice(
                kind=AGENT_SILENT, key=key, threshold=0, owner=owner, target=f"agent:{a.agent_id}",
                title=f"agent {a.hostname} ({a.agent_id}) silent for {hours} hour(s)",
                detail=f"last seen {a.last_seen.isoformat()}",
                places=(Place(hostname=a.hostname, path="", agent_id=a.agent_id),),
            ))
    return out


def violation_notice(*, rule: str, fingerprint: str, reason: str, owner: str = "", subject: str = "",
                     environment: str = "", criticality: str = "", places: Sequence[Place] = (),
                     first_seen: dt.datetime | None = None) -> Notice:
    """The notice of a new policy violation (key: fingerprint + rule: told once per certificate and rule)."""
    return Notice(
        kind=POLICY_VIOLATION, key=event_key("violation", fingerprint, rule), threshold=0, owner=owner,
        target=f"certificate:{fingerprint}", title=f"policy violation {rule} on {subject or fingerprint[:16]}",
        detail=reason + (f" (first seen {first_seen.isoformat()})" if first_seen else ""),
        fingerprint=fingerprint, subject=subject, environment=environment, criticality=criticality,
        places=tuple(places), escalate=True,
    )


@dataclass(frozen=True, slots=True)
class StaleFact:
    """A location whose process serves another certificate than the file holds (collector/registry/discovery.py)."""

    location_id: int
    served_fingerprint: str
    since: dt.datetime
    owner: str
    place: Place
    file_fingerprint: str
    subject: str = ""
    endpoint: str = ""
    process: str = ""               # "nginx pid 4242"
    suggested_reload: str = ""
    service: str = ""


def stale_service_notices(facts: Iterable[StaleFact], sent: set[Key] | frozenset[Key]) -> list[Notice]:
    """One notice per stale episode of a location: the key is (location id, served fingerprint, stale
    since), so the same episode is told once however many runs and collectors see it, and a new
    episode (stale again after a reload, or another certificate served) is told again."""
    out = []
    for f in facts:
        key = event_key("stale", str(f.location_id), f.served_fingerprint, f.since.isoformat())
        if (key, 0, STALE_SERVICE, f.owner) in sent:
            continue
        who = f" ({f.process})" if f.process else ""
        reload = f"; suggested reload: {f.suggested_reload}" if f.suggested_reload else ""
        out.append(Notice(
            kind=STALE_SERVICE, key=key, threshold=0, owner=f.owner, target=f"certificate:{f.file_fingerprint}",
            title=f"stale service on {f.place.text()}: {f.endpoint or 'its port'} still serves an older certificate",
            detail=(f"{f.endpoint or 'the service'}{who} serves {f.served_fingerprint[:16]}, the file holds "
                    f"{f.file_fingerprint[:16]}, since {f.since.isoformat()}: reload the service{reload}"),
            fingerprint=f.file_fingerprint, subject=f.subject, service=f.service, places=(f.place,),
        ))
    return out


def group_digests(notices: Iterable[Notice]) -> list[Digest]:
    """One digest per owner (sorted by owner), notices in a stable order (kind, key, threshold)."""
    by: dict[str, list[Notice]] = {}
    for n in notices:
        by.setdefault(n.owner, []).append(n)
    order = {k: i for i, k in enumerate(KINDS)}
    return [Digest(owner=o, notices=tuple(sorted(ns, key=lambda n: (order.get(n.kind, 99), n.key, n.threshold))))
            for o, ns in sorted(by.items())]


def retry_delay(attempts: int, base: dt.timedelta = dt.timedelta(minutes=1),
                cap: dt.timedelta = dt.timedelta(hours=1)) -> dt.timedelta:
    """Backoff before attempt ``attempts + 1``: base * 2^(attempts-1), at most ``cap``."""
    return min(cap, base * (2 ** max(0, attempts - 1)))
