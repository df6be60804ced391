"""Auto-renewal: renew managed certificates when they reach their renewal point.

The rules are ``[[renewal.auto]]`` tables (collector/config/renewal.py reads them into
collector/domain/autorules.py values); the first that matches a location decides.

The decision is pure (:func:`plan_renewals`: certificates, rules, ``now`` and the
locations that are busy in, planned jobs out). :class:`AutoRenewer` applies it to
the registry a page of certificates at a time and asks the
:class:`~collector.services.renewal.RenewalService` for the jobs, which is idempotent (one
running job per location), so several collector replicas may run it at once.
"""
from __future__ import annotations

import datetime as dt
import itertools
import logging
from dataclasses import dataclass
from typing import Any, Callable, Collection, Iterable, Iterator

from collector.config.core import CollectorConfig
from collector.config.reader import ConfigError
from collector.config.renewal import DEFAULT_CHECK_INTERVAL, DEFAULT_RETRY_AFTER
from collector.domain.autorules import AutoRule, first_rule
from collector.domain.jobstates import is_final, renewal_due
from collector.domain.serving import not_renewable
from collector.errors import CollectorError, InvalidInput
from collector.registry import Registry
from collector.registry.types import CertFilter, CertificateView, JobView, LocationSelector, LocationView
from collector.services.renewal import RenewalService

log = logging.getLogger(__name__)

REQUESTED_BY = "auto-renew"

#: (agent_id, store_type, path, alias) of a location; the chain index is always 0 here
LocationKey = tuple[str, str, str, str]


def location_key(agent_id: str, store_type: str, path: str, alias: str) -> LocationKey:
    return (agent_id, store_type, path, alias)


# -- the decision ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Planned:
    """A renewal to request: one location (chain index 0) of one certificate."""

    fingerprint: str
    location: LocationSelector
    template: str
    reason: str
    rule: int = 0            # the rule's index (from 1)
    hostname: str = ""       # for logs only

    @property
    def key(self) -> LocationKey:
        return location_key(self.location.agent_id, self.location.store_type, self.location.path, self.location.alias)


def renewable_here(loc: LocationView) -> bool:
    """Trust anchors (entries of a trust store) are never renewed; endpoints (what a port serves)
    are renewed where the service reads the certificate (collector/domain/serving.py decides)."""
    return not_renewable(loc) is None


def _reason(rule: AutoRule, cert: CertificateView, now: dt.datetime) -> str:
    expires = cert.not_after.astimezone(dt.timezone.utc).date().isoformat()
    if now >= cert.not_after:
        return f"auto-renewal: expired {expires} and still installed (rule {rule.index})"
    return f"auto-renewal: {rule.describe_point()} (expires {expires}, rule {rule.index})"


def plan_renewals(
    certificates: Iterable[CertificateView],
    rules: list[AutoRule] | tuple[AutoRule, ...],
    now: dt.datetime,
    active_locations: Collection[LocationKey] = frozenset(),
) -> list[Planned]:
    """The renewals due at ``now``: for each present location at chain index 0 of a certificate
    that is not a CA (trust anchors and endpoints left out: :func:`renewable_here`), the first rule that matches the location decides whether it is due
    (:func:`collector.domain.jobstates.renewal_due` with the rule's timing, window and jitter, seeded by the
    fingerprint so that a certificate always gets the same point and a fleet spreads out).
    Expired certificates still installed are due (inside the window, like any other).
    Locations in ``active_locations`` (see :func:`location_key`) are skipped: they already
    have a running job, or had one recently."""
    out: list[Planned] = []
    for cert in certificates:
        if cert.is_ca:
            continue
        for loc in cert.locations:
            if loc.status != "present" or loc.chain_index != 0:
                continue
            if not renewable_here(loc):
                continue
            if location_key(loc.agent_id, loc.store_type, loc.path, loc.alias) in active_locations:
                continue
            rule = first_rule(rules, loc)
            if rule is None:
                continue
            try:
                due = renewal_due(cert.not_before, cert.not_after, now, rule.window,
                                  days_before=rule.days_before, percent=rule.percent,
                                  jitter_fraction=rule.jitter, seed=cert.fingerprint)
            except InvalidInput as e:   # e.g. an empty validity period: nothing sensible to decide
                log.debug("certificate %s: %s", cert.fingerprint, e)
                break
            if not due:
                continue
            out.append(Planned(
                fingerprint=cert.fingerprint,
                location=LocationSelector(agent_id=loc.agent_id, store_type=loc.store_type, path=loc.path,
                                          alias=loc.alias, chain_index=0),
                template=rule.template, reason=_reason(rule, cert, now), rule=rule.index, hostname=loc.hostname,
            ))
    return out


def busy_locations(jobs: Iterable[JobView], now: dt.datetime, retry_after: dt.timedelta) -> set[LocationKey]:
    """Locations (chain index 0) that auto-renewal leaves alone: a job there is still running
    (stuck included: it waits for an operator), or one ended less than ``retry_after`` ago
    (verified: until the agent reports the new certificate; failed, rolled back or cancelled:
    not again at every check)."""
    out: set[LocationKey] = set()
    for j in jobs:
        if j.chain_index != 0:
            continue
        ended = j.finished_at or j.updated_at
        if not is_final(j.state) or now - ended < retry_after:
            out.add(location_key(j.agent_id, j.store_type, j.path, j.alias))
    return out


# -- applying it -----------------------------------------------------------------------------------


def _pages(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(items)
    while page := list(itertools.islice(it, size)):
        yield page


class AutoRenewer:
    """Requests the renewals :func:`plan_renewals` finds due, a page of certificates at a time."""

    #: jobs read per due certificate to find busy locations
    JOBS_PER_CERTIFICATE = 1000
    #: (fingerprint, location, message) already logged as a warning; repeats go to debug
    _MAX_REMEMBERED = 10_000

    def __init__(
        self, registry: Registry, renewal: RenewalService, rules: list[AutoRule] | tuple[AutoRule, ...],
        clock: Callable[[], dt.datetime], *, check_interval: float = DEFAULT_CHECK_INTERVAL,
        retry_after: dt.timedelta = DEFAULT_RETRY_AFTER, notify: Callable[[str], None] | None = None,
    ) -> None:
        self.registry = registry
        self.renewal = renewal
        self.rules = tuple(rules)
        self.clock = clock
        self.check_interval = check_interval
        self.retry_after = retry_after
        #: called with an agent id after jobs were created for it (the server wakes its stream)
        self.notify = notify
        self._warned: set[tuple[str, LocationKey, str]] = set()

    def run_once(self) -> int:
        """Check every certificate once; return how many jobs were created."""
        if not self.rules:
            return 0
        now = self.clock()
        page_size = getattr(self.registry, "PAGE_SIZE", 500)
        created = 0
        for page in _pages(self.registry.list_certificates(CertFilter(), now), page_size):
            candidates = plan_renewals(page, self.rules, now)
            if not candidates:
                continue
            busy = self._busy({p.fingerprint for p in candidates}, now)
            agents: set[str] = set()
            for p in candidates:
                if p.key in busy:
                    continue
                n = self._request(p, now)
                if n:
                    created += n
                    agents.add(p.location.agent_id)
            if self.notify:
                for agent_id in sorted(agents):
                    try:
                        self.notify(agent_id)
                    except Exception:  # noqa: BLE001 - a wake-up is a shortcut; the stream polls anyway
                        log.debug("notify %s failed", agent_id, exc_info=True)
        if created:
            log.info("auto-renewal: %d job(s) created", created)
        return created

    def _busy(self, fingerprints: set[str], now: dt.datetime) -> set[LocationKey]:
        out: set[LocationKey] = set()
        for fp in sorted(fingerprints):
            try:
                jobs = self.registry.jobs.list(fingerprint=fp, limit=self.JOBS_PER_CERTIFICATE)
            except CollectorError as e:
                log.warning("auto-renewal: cannot read the jobs of certificate %s: %s", fp, e)
                continue
            out |= busy_locations(jobs, now, self.retry_after)
        return out

    def _request(self, p: Planned, now: dt.datetime) -> int:
        try:
            # one approval at most per location and threshold (rule), whatever its fate: never a flood
            dedupe = f"{p.fingerprint}\0{p.location.store_type}\0{p.location.path}\0{p.location.alias}\0rule{p.rule}"
            jobs = self.renewal.request(p.fingerprint, p.location, p.template, REQUESTED_BY, p.reason, dedupe=dedupe)
        except CollectorError as e:
            self._warn(p, str(e))
            return 0
        except Exception:  # noqa: BLE001 - one certificate must not stop the others
            log.exception("auto-renewal of %s at %s %s:%s failed", p.fingerprint, p.hostname or p.location.agent_id,
                          p.location.store_type, p.location.path)
            return 0
        # the service returns a location's running job instead of a new one; count only ours
        new = [j for j in jobs if j.requested_by == REQUESTED_BY and j.created_at == now]
        for j in new:
            log.info("auto-renewal: job %s for %s at %s %s: %s", j.job_id, p.fingerprint[:16],
                     j.hostname or j.agent_id, j.location_label, p.reason)
        return len(new)

    def _warn(self, p: Planned, message: str) -> None:
        key = (p.fingerprint, p.key, message)
        if key in self._warned:
            log.debug("auto-renewal of %s at %s %s:%s refused again: %s", p.fingerprint[:16],
                      p.hostname or p.location.agent_id, p.location.store_type, p.location.path, message)
            return
        if len(self._warned) >= self._MAX_REMEMBERED:
            self._warned.clear()
        self._warned.add(key)
        log.warning("auto-renewal of %s at %s %s:%s refused: %s", p.fingerprint[:16],
                    p.hostname or p.location.agent_id, p.location.store_type, p.location.path, message)


def build_autorenewer(config: CollectorConfig, registry: Registry, renewal: RenewalService | None,
                      clock: Callable[[], dt.datetime]) -> AutoRenewer | None:
    """The AutoRenewer for a collector config (its ``[renewal]`` settings); None without
    ``[[renewal.auto]]`` rules. ConfigError for rules without issuers, or naming a template that
    is not configured."""
    settings = config.renewal
    if not settings.rules:
        return None
    if renewal is None:
        raise ConfigError("[[renewal.auto]] needs [issuers] and [templates] to renew with")
    settings.check_templates(renewal.templates)
    return AutoRenewer(registry, renewal, settings.rules, clock, check_interval=settings.check_interval,
                       retry_after=settings.retry_after)
