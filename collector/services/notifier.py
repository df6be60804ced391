"""The notifier: gathers facts from the registry, asks the pure decisions what is due, claims
the notices exactly once, queues one digest per owner and delivers it on every channel.

``Notifier.run_once(now)`` is what the collector runs every ``[notify] interval`` and what
``certfleet notify run`` triggers. Safe to run on several collectors at once and to repeat.

Routing of a digest (owner = a registered owner, see collector/domain/ownership.py):

- smtp: to the owner's e-mail contacts (the channel's ``to`` when there is no owner or it
  has no address); escalations also go, as their own mail, to the owner's escalation contact;
- webhook: to the owner's webhook, else the channel's ``url`` (skipped when neither);
- slack: every digest to the channel's ``url``;
- ticket: one ticket per notice whose kind is in the channel's ``kinds``.

A delivery that fails is retried with backoff (``retry_base`` doubling up to ``retry_cap``)
until ``max_attempts``, then marked failed (and audited); each channel is sent from its own
thread, so a slow or failing channel never holds up the others.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import logging
import socket
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from collector.domain import ownership as own
from collector.domain import notices as dec
from collector.notify.channels import ChannelError, Message
from collector.notify.channels.webhook import ticket_fields
from collector.config.notify import NotifySettings
from collector.errors import InvalidInput
from collector.metrics.recorder import NULL, Recorder
from collector.registry.expiry import ExpiryStore
from collector.registry.notify import DeliveryIn, NotifyStore

log = logging.getLogger(__name__)
#: a delivery being sent is not due again for this long (a collector that dies mid-send)
SEND_LEASE = dt.timedelta(minutes=5)
PRODUCTION = ("prod", "production")


@dataclass(frozen=True)
class RunResult:
    notices: int = 0          # notices this run claimed (and queued)
    digests: int = 0
    sent: int = 0             # deliveries sent in this run
    retrying: int = 0         # deliveries that failed and will be tried again
    failed: int = 0           # deliveries that failed for good in this run


def _resolve(host: str) -> list[str]:
    """The addresses ``host`` resolves to (none when it does not)."""
    try:
        return sorted({str(ai[4][0]) for ai in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)})
    except (socket.gaierror, UnicodeError):
        return []


class Notifier:
    def __init__(self, registry: Any, settings: NotifySettings, clock: Callable[[], dt.datetime] | None = None,
                 actor: str = "collector", resolve: Callable[[str], Sequence[str]] | None = None) -> None:
        self.registry = registry
        self.settings = settings
        #: host name to addresses, for the owner-webhook check (collector/domain/outbound.py)
        self.resolve = resolve or _resolve
        self.clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))
        self.actor = actor
        self.store = NotifyStore(registry.engine)
        #: the channels, made now: a missing secret file or variable fails the start, not a delivery
        self.channels = settings.channels
        self.recorder: Recorder = NULL     # the metrics (collector/metrics/recorder.py); set by the composition root

    @property
    def enabled(self) -> bool:
        return bool(self.channels)

    # -- one run ---------------------------------------------------------------------------

    def run_once(self, now: dt.datetime | None = None) -> RunResult:
        """Decide, claim and queue what is due now, then deliver what is due (new and retries)."""
        now = now or self.clock()
        owners = {o.name: o for o in self.registry.owners.list_owners()}
        notices = (self.certificate_notices(now) + self.job_notices(now) + self.agent_notices(now, owners)
                   + self.stale_notices())
        n_notices = n_digests = 0
        for digest in dec.group_digests(notices):
            _, won = self.store.claim_digest(
                digest, now, lambda did, ns, d=digest: self.deliveries_for(did, d.owner, ns, owners, now), self.actor)
            if won:
                n_notices += len(won)
                n_digests += 1
        sent, retrying, failed = self.deliver_due(now)
        if n_notices or sent or failed:
            log.info("notify: %d notice(s) in %d digest(s); %d delivery(ies) sent, %d retrying, %d failed",
                     n_notices, n_digests, sent, retrying, failed)
        return RunResult(n_notices, n_digests, sent, retrying, failed)

    # -- facts -> notices ------------------------------------------------------------------

    def horizon_days(self) -> int:
        """The largest threshold (any owner, environment, or the escalation): nothing expiring later
        than this many days away can be due."""
        th = self.settings.thresholds
        return max([*th.default, *(t for ts in th.by_environment.values() for t in ts),
                    *(t for ts in th.by_owner.values() for t in ts), th.escalate_at or 0])

    def certificate_items(self, now: dt.datetime) -> list[dec.CertItem]:
        """The certificates that may be due (not_after within the largest threshold window, plus a
        day), one item per certificate and owner of its present locations; column-only, a page at
        a time (collector/registry/expiry.py), ownership resolved with a memo and the explicit
        assignments of the window read in bulk."""
        items, places = self._items(now)
        return [dataclasses.replace(i, places=tuple(dec.Place(*t) for t in ps)) for i, ps in zip(items, places)]

    def _items(self, now: dt.datetime) -> tuple[list[dec.CertItem], list[list[tuple]]]:
        """Items without their places, and each item's places as (hostname, path, alias, agent id,
        store type, chain index): a run with nothing new makes no Place at all."""
        before = now + dt.timedelta(days=self.horizon_days() + 1)
        expiry = ExpiryStore(self.registry.engine)
        resolver = own.Resolver(self.registry.owners.list_rules())
        explicit = expiry.explicit(before)
        active_locs, active_fps = self.store.active_job_locations()
        items: list[dec.CertItem] = []
        places: list[list[tuple]] = []
        by_owner: dict[str, list[Any]] = {}     # owner -> [envs, crits, service, places, running]
        cur: Any = None

        def flush() -> None:
            for owner, (envs, crits, svc, ps, running) in sorted(by_owner.items()):
                crit = max(crits, key=own.CRITICALITIES.index) if crits else ""
                items.append(dec.CertItem(
                    fingerprint=cur.fingerprint, subject=cur.subject, not_after=cur.not_after, owner=owner,
                    environments=tuple(sorted(envs)), criticality=crit, service=svc, renewal_running=running))
                places.append(ps)
            by_owner.clear()

        facts: Any = None
        # trust anchors (entries of a trust store) are never told about: not renewed, not the owner's to fix
        for pl in expiry.placements(before, with_issuer=resolver.by_issuer, with_names=resolver.by_names,
                                    services_only=True):
            if cur is None or pl.fingerprint != cur.fingerprint:    # a certificate's locations come together
                if cur is not None:
                    flush()
                cur, facts = pl, pl.facts()
            a = resolver(facts, pl, explicit.at(pl))
            g = by_owner.get(a.owner or "")
            if g is None:
                g = by_owner[a.owner or ""] = [set(), [], "", [], pl.fingerprint in active_fps]
            if a.environment:
                g[0].add(a.environment)
            if a.criticality:
                g[1].append(a.criticality)
            if not g[2] and a.service:
                g[2] = a.service
            g[3].append((pl.hostname, pl.path, pl.alias, pl.agent_id, pl.store_type, pl.chain_index))
            if active_locs and (pl.agent_id, pl.store_type, pl.path, pl.alias, pl.chain_index) in active_locs:
                g[4] = True
        if cur is not None:
            flush()
        return items, places

    def certificate_notices(self, now: dt.datetime) -> list[dec.Notice]:
        """Expiry and escalation notices due now. Only the items with a deciding key that no notice
        has claimed (an anti-join in the registry: NotifyStore.unsent) are judged, with their sent
        keys; on a run with nothing new that is none, and no sent key is read."""
        th = self.settings.thresholds
        items, places = self._items(now)
        memo: dict[Any, Any] = {}
        deciding = [dec.deciding_keys(i, now, th, memo) for i in items]
        unsent = self.store.unsent(k for ks in deciding for k in ks)
        if not unsent:
            return []
        candidates = [dataclasses.replace(i, places=tuple(dec.Place(*t) for t in ps))
                      for i, ps, ks in zip(items, places, deciding) if any(k in unsent for k in ks)]
        sent = self.store.sent_keys(i.fingerprint for i in candidates)
        return dec.due_notices(candidates, sent, now, th)

    def _owner_at(self, fingerprint: str, agent_id: str, store_type: str, path: str, alias: str) -> tuple[Any, Any]:
        """(certificate, assignment) of a certificate at one location, or (None, None) when unknown."""
        try:
            ca = self.registry.owners.assignment_for(fingerprint)
        except Exception:  # noqa: BLE001 - a job may name a certificate the registry no longer holds
            return None, None
        for la in ca.locations:
            loc = la.location
            if (loc.agent_id, loc.store_type, loc.path, loc.alias) == (agent_id, store_type, path, alias):
                return ca.certificate, la.assignment
        return ca.certificate, ca.certificate_assignment

    def job_notices(self, now: dt.datetime) -> list[dec.Notice]:
        rows = self.store.notable_jobs(now - self.settings.job_lookback)
        if not rows:
            return []
        facts = []
        for r in rows:
            cert, a = self._owner_at(r.old_fingerprint, r.agent_id, r.store_type, r.path, r.alias)
            facts.append(dec.JobFact(
                job_id=r.job_id, state=r.state, fingerprint=r.old_fingerprint,
                subject=cert.subject if cert else "", owner=(a.owner or "") if a else "",
                place=dec.Place(r.hostname, r.path, r.alias, r.agent_id, r.store_type, r.chain_index),
                reason=self.store.job_reason(r.job_id), criticality=(a.criticality or "") if a else "",
                environment=(a.environment or "") if a else "", not_after=cert.not_after if cert else None))
        keys = [dec.event_key("job", f.job_id, f.state) for f in facts]
        return dec.job_notices(facts, frozenset(self.store.sent_keys(keys)))

    def stale_notices(self) -> list[dec.Notice]:
        """A notice to the owner of each location whose process serves another certificate, once per
        stale episode (collector/domain/notices.py stale_service_notices)."""
        facts = [dec.StaleFact(
            location_id=v.location_id, served_fingerprint=v.served_fingerprint, since=v.since, owner=v.owner,
            place=dec.Place(v.hostname, v.path, v.alias, v.agent_id, v.store_type, v.chain_index),
            file_fingerprint=v.file_fingerprint, subject=v.subject, endpoint=v.endpoint,
            process=f"{v.process_name} pid {v.pid}" if v.process_name else "", suggested_reload=v.suggested_reload,
            service=v.service)
            for v in self.registry.discovery.stale_with_owners() if v.since is not None]
        if not facts:
            return []
        keys = [dec.event_key("stale", str(f.location_id), f.served_fingerprint, f.since.isoformat()) for f in facts]
        return dec.stale_service_notices(facts, frozenset(self.store.sent_keys(keys)))

    def agent_notices(self, now: dt.datetime, owners: Mapping[str, own.Owner]) -> list[dec.Notice]:
        facts = []
        for a in self.registry.list_agents():
            label = str((a.labels or {}).get("owner", "")).strip().lower()
            facts.append(dec.AgentFact(a.agent_id, a.hostname, a.last_seen,
                                       (label,) if label in owners else (), a.status))
        keys = [dec.event_key("agent", f.agent_id, f.last_seen.isoformat()) for f in facts]
        sent = frozenset(self.store.sent_keys(keys)) if keys else frozenset()
        return dec.silent_agent_notices(facts, sent, now, self.settings.agent_silent_after)

    # -- the policy hook -------------------------------------------------------------------

    def notify_violation(self, *, rule: str, fingerprint: str, reason: str, environment: str,
                         owner: str = "", subject: str = "", criticality: str = "",
                         places: Sequence[dec.Place] = (), first_seen: dt.datetime | None = None,
                         now: dt.datetime | None = None) -> bool:
        """Tell the owner about a NEW policy violation on a production certificate.

        For the policy engine to call when it stores a violation it has not seen before. Only
        environments ``prod``/``production`` are notified (others: returns False). Idempotent:
        the key is fingerprint + rule (+ owner), so calling it again, or from another collector,
        sends nothing more. The notice is claimed and queued at once (its own digest) and
        delivered now; a failing channel is retried by the scheduled runs. True when queued.
        """
        if (environment or "").lower() not in PRODUCTION or not self.enabled:
            return False
        now = now or self.clock()
        n = dec.violation_notice(rule=rule, fingerprint=fingerprint, reason=reason, owner=owner, subject=subject,
                                 environment=environment, criticality=criticality, places=places,
                                 first_seen=first_seen)
        owners = {o.name: o for o in self.registry.owners.list_owners()}
        _, won = self.store.claim_digest(dec.Digest(owner, (n,)), now,
                                         lambda did, ns: self.deliveries_for(did, owner, ns, owners, now), self.actor)
        if won:
            self.deliver_due(now)
        return bool(won)

    def on_new_violation(self, v: Any) -> bool:
        """The policy evaluation's ``on_new_violation`` callback (a
        collector.registry.policies.NewViolation): :meth:`notify_violation` for it."""
        return self.notify_violation(
            rule=v.rule, fingerprint=v.fingerprint, reason=v.reason, environment=v.environment, owner=v.owner,
            subject=v.subject, criticality=v.criticality,
            places=[dec.Place(h, p, alias, agent, store, chain) for h, p, alias, agent, store, chain in v.places],
            first_seen=v.first_seen, now=v.first_seen)   # the evaluation's clock

    def notify_approval(self, approval: Any, owner: str = "", hostname: str = "", now: dt.datetime | None = None) -> bool:
        """Tell the approvers (``owner``'s contacts: ``[approvals] notify_owner``, or the channels'
        default recipients) that an issuance waits for them. Once per approval (its id is the key),
        whichever collector asks; True when queued."""
        if not self.enabled:
            return False
        now = now or self.clock()
        names = ", ".join(approval.names[:5]) + (" ..." if len(approval.names) > 5 else "")
        n = dec.Notice(
            kind=dec.APPROVAL_PENDING, key=dec.event_key("approval", approval.approval_id), threshold=0, owner=owner,
            target=f"job:{approval.job_id}", title=f"approval needed: {names} to {hostname or approval.agent_id}",
            detail="; ".join(approval.reasons) + f" (requested by {approval.requested_by}; expires "
                   f"{approval.expires_at.isoformat(timespec='seconds')}; certfleet approvals show "
                   f"{approval.approval_id[:8]})",
            fingerprint=approval.fingerprint)
        owners = {o.name: o for o in self.registry.owners.list_owners()}
        _, won = self.store.claim_digest(dec.Digest(owner, (n,)), now,
                                         lambda did, ns: self.deliveries_for(did, owner, ns, owners, now), self.actor)
        if won:
            self.deliver_due(now)
        return bool(won)

    # -- routing ---------------------------------------------------------------------------

    def deliveries_for(self, digest_id: str, owner_name: str, notices: Sequence[dec.Notice],
                       owners: Mapping[str, own.Owner], now: dt.datetime) -> list[DeliveryIn]:
        owner = owners.get(owner_name)
        who = owner_name or "unowned certificates"
        payload = {"digest_id": digest_id, "owner": owner_name, "generated_at": now.isoformat(),
                   "notices": [n.to_dict() for n in notices]}
        esc = [n for n in notices if n.escalate]
        subject = f"[certfleet] {len(notices)} notice(s) for {who}" + (" - ESCALATION" if esc else "")
        out: list[DeliveryIn] = []
        for name, ch in sorted(self.channels.items()):
            if ch.type == "smtp":
                to = list(owner.contacts) if owner and owner.contacts else list(getattr(ch, "to", ()))
                if to:
                    out.append(DeliveryIn(name, ",".join(to), subject, payload))
                if esc and owner and owner.escalation:
                    out.append(DeliveryIn(name, owner.escalation, f"[certfleet] ESCALATION for {who}",
                                          {**payload, "notices": [n.to_dict() for n in esc], "escalation": True}))
            elif ch.type == "webhook":
                url = (owner.webhook if owner and owner.webhook else "") or getattr(ch, "url", "")
                if url:
                    out.append(DeliveryIn(name, url if url != getattr(ch, "url", "") else "", subject, payload))
            elif ch.type == "slack":
                out.append(DeliveryIn(name, "", subject, payload))
            elif ch.type == "ticket":
                kinds = self.settings.ticket_kinds.get(name, ())
                for n in notices:
                    if n.kind in kinds:
                        d = n.to_dict()
                        out.append(DeliveryIn(name, "", f"[certfleet] {d['title']}"[:250],
                                              {"digest_id": digest_id, "ticket": ticket_fields(d, owner_name, digest_id)}))
        return out

    # -- delivery --------------------------------------------------------------------------

    def _attempt(self, d: Any, now: dt.datetime) -> str:
        """Send one claimed delivery and record the outcome: "sent", "retrying" or "failed"."""
        ch = self.channels.get(d.channel)
        refused = False
        error: str | None
        if ch is None:
            error = f"channel {d.channel!r} is not configured on this collector"
        else:
            try:
                if d.target.startswith(("http://", "https://")) and d.target != getattr(ch, "url", ""):
                    # an owner's webhook: only https to an allowed host (collector/domain/outbound.py)
                    self.settings.webhook_allowed.check(d.target, self.resolve)
                ch.send(Message(d.subject, d.target, d.payload))
                error = None
            except InvalidInput as e:
                error = f"refused: {e}"
                refused = True
            except ChannelError as e:
                error = str(e)
            except Exception as e:  # noqa: BLE001 - a bug in a channel must not stop the others
                log.exception("channel %s failed unexpectedly", d.channel)
                error = f"{type(e).__name__}: {e}"
        attempts = d.attempts + 1
        if refused:     # the configuration says no: trying again would not change it
            attempts = max(attempts, self.settings.max_attempts)
        if error is None:
            self.store.finish_delivery(d.id, now, None, None, self.actor)
            return "sent"
        if attempts >= self.settings.max_attempts:
            log.warning("notify: delivery %d on %s failed for good after %d attempt(s): %s", d.id, d.channel,
                        attempts, error)
            self.store.finish_delivery(d.id, now, error, None, self.actor)
            return "failed"
        retry_at = now + dec.retry_delay(attempts, self.settings.retry_base, self.settings.retry_cap)
        log.info("notify: delivery %d on %s failed (attempt %d), retry at %s: %s", d.id, d.channel, attempts,
                 retry_at.isoformat(), error)
        self.store.finish_delivery(d.id, now, error, retry_at, self.actor)
        return "retrying"

    def deliver_due(self, now: dt.datetime) -> tuple[int, int, int]:
        """Send every due delivery this collector can claim, each channel in its own thread.
        Returns (sent, retrying, failed)."""
        due = self.store.due_deliveries(now)
        by_channel: dict[str, list[Any]] = {}
        for d in due:
            by_channel.setdefault(d.channel, []).append(d)
        if not by_channel:
            return 0, 0, 0

        def run(items: Iterable[Any]) -> list[str]:
            out = []
            for d in items:
                if self.store.claim_delivery(d.id, now, SEND_LEASE):
                    out.append(self._attempt(d, now))
                    self.recorder.delivery_attempted(d.channel, out[-1])
            return out

        with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(by_channel)),
                                                   thread_name_prefix="notify") as pool:
            results = [r for rs in pool.map(run, by_channel.values()) for r in rs]
        return results.count("sent"), results.count("retrying"), results.count("failed")
