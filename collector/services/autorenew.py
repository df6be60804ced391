"""Auto-renewal: renew managed certificates when they reach their renewal point.

Configured in the collector's TOML, next to the issuers and templates::

    [renewal]
    default_template = "web"
    check_interval = "10m"     # how often the fleet is checked (default 10m)
    retry_after = "1d"         # after a job at a location ended (verified, failed, rolled back,
                               # cancelled), leave that location alone this long (default 1d)

    [[renewal.auto]]           # rules, in order: the first that matches a location decides
    template = "web"           # required, a name under [templates]
    match = { service = "nginx", environment = "prod" }   # location labels, all must be equal
    hosts = ["web-*"]          # fnmatch on the hostname (case-insensitive); any of them
    paths = ["/etc/nginx/**"]  # * within one path segment, ** any depth; any of them
    days_before = 30           # OR percent = 33 (of the lifetime left); default: at 2/3 of the lifetime
    window = "sat,sun 22:00-04:00 Europe/Berlin"   # only inside this maintenance window
    jitter = 0.05              # spread by up to this fraction of the lifetime, either way

A rule without ``match``, ``hosts`` and ``paths`` matches every location. Locations
that no rule matches are never renewed automatically.

The decision is pure (:func:`plan_renewals`: certificates, rules, ``now`` and the
locations that are busy in, planned jobs out). :class:`AutoRenewer` applies it to
the registry a page of certificates at a time and asks the
:class:`~collector.services.renewal.RenewalService` for the jobs, which is idempotent (one
running job per location), so several collector replicas may run it at once.
"""
from __future__ import annotations

import datetime as dt
import fnmatch
import itertools
import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Collection, Iterable, Iterator, Mapping

from collector.config.core import ConfigError, parse_duration
from collector.errors import CollectorError, InvalidInput
from collector.domain.jobstates import MaintenanceWindow, is_final, renewal_due
from collector.registry.types import CertFilter, CertificateView, JobView, LocationSelector, LocationView

if TYPE_CHECKING:   # only for annotations: keeps this module importable without the renewal stack
    from collector.registry.repository import Registry
    from collector.services.renewal import RenewalService

log = logging.getLogger(__name__)

REQUESTED_BY = "auto-renew"
DEFAULT_CHECK_INTERVAL = 600.0
DEFAULT_RETRY_AFTER = dt.timedelta(days=1)
DEFAULT_JITTER = 0.05
#: keys of the [renewal] table (default_template is read by collector.server.server.build_renewal)
RENEWAL_KEYS = frozenset({"default_template", "check_interval", "retry_after", "auto"})
RULE_KEYS = frozenset({"template", "match", "hosts", "paths", "days_before", "percent", "window", "jitter"})

#: (agent_id, store_type, path, alias) of a location; the chain index is always 0 here
LocationKey = tuple[str, str, str, str]


def location_key(agent_id: str, store_type: str, path: str, alias: str) -> LocationKey:
    return (agent_id, store_type, path, alias)


# -- rules ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AutoRule:
    """One ``[[renewal.auto]]`` rule; ``index`` counts from 1 in the order of the config."""

    index: int
    template: str
    match: Mapping[str, str] = field(default_factory=dict)
    hosts: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    days_before: float | None = None
    percent: float | None = None
    window: MaintenanceWindow | None = None
    jitter: float = DEFAULT_JITTER
    _path_res: tuple[re.Pattern[str], ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_path_res", tuple(path_pattern(p) for p in self.paths))

    def matches(self, loc: LocationView) -> bool:
        labels = loc.labels or {}
        if any(labels.get(k) != v for k, v in self.match.items()):
            return False
        if self.hosts:
            name = (loc.hostname or "").lower()
            if not any(fnmatch.fnmatchcase(name, h.lower()) for h in self.hosts):
                return False
        if self._path_res and not any(r.fullmatch(loc.path) for r in self._path_res):
            return False
        return True

    def describe_point(self) -> str:
        if self.days_before is not None:
            return f"{_num(self.days_before)} days before expiry reached"
        if self.percent is not None:
            return f"{_num(self.percent)}% of lifetime left"
        return "2/3 of lifetime passed"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def path_pattern(pattern: str) -> re.Pattern[str]:
    """A compiled pattern for a location path: ``*`` and ``?`` stay within one ``/`` segment,
    ``**`` matches any depth (``/etc/nginx/**`` matches everything below /etc/nginx;
    ``/srv/**/tls/*.pem`` also matches ``/srv/tls/a.pem``), ``[...]`` is a character class."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            j = pattern.find("]", i + 2 if pattern.startswith("[!", i) or pattern.startswith("[]", i) else i + 1)
            if j < 0:
                out.append(re.escape(c))
                i += 1
            else:
                body = pattern[i + 1:j]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out), re.DOTALL)


def _rule_error(index: int, key: str, message: str) -> ConfigError:
    return ConfigError(f"[[renewal.auto]] rule {index}: {key}: {message}")


def _string_list(value: Any, index: int, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise _rule_error(index, key, "expected a non-empty list of non-empty strings")
    return tuple(value)


def _number(value: Any, index: int, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _rule_error(index, key, f"expected a number, not {value!r}")
    return float(value)


def load_rule(index: int, table: Any, templates: Collection[str] | Mapping[str, Any]) -> AutoRule:
    """One rule from its table; ``index`` (from 1) names it in errors."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"[[renewal.auto]] rule {index}: expected a table of settings")
    unknown = sorted(set(table) - RULE_KEYS)
    if unknown:
        raise _rule_error(index, unknown[0], f"unknown key (known: {', '.join(sorted(RULE_KEYS))})")
    template = table.get("template")
    if not isinstance(template, str) or not template:
        raise _rule_error(index, "template", "required: the name of a template under [templates]")
    if template not in templates:
        known = ", ".join(sorted(templates)) or "none configured"
        raise _rule_error(index, "template", f"no template {template!r} (known: {known})")

    match: dict[str, str] = {}
    if "match" in table:
        raw = table["match"]
        if not isinstance(raw, Mapping) or not raw:
            raise _rule_error(index, "match", "expected a non-empty table of label = \"value\"")
        for k, v in raw.items():
            if not isinstance(v, str):
                raise _rule_error(index, "match", f"label {k!r}: expected a string value, not {v!r}")
            match[str(k)] = v
    hosts = _string_list(table["hosts"], index, "hosts") if "hosts" in table else ()
    paths = _string_list(table["paths"], index, "paths") if "paths" in table else ()

    days_before = percent = None
    if "days_before" in table and "percent" in table:
        raise _rule_error(index, "days_before", "give days_before or percent, not both")
    if "days_before" in table:
        days_before = _number(table["days_before"], index, "days_before")
        if days_before < 0:
            raise _rule_error(index, "days_before", f"must not be negative, not {_num(days_before)}")
        validity = getattr(templates.get(template) if isinstance(templates, Mapping) else None, "validity", None)
        if isinstance(validity, dt.timedelta) and dt.timedelta(days=days_before) >= validity:
            raise _rule_error(
                index, "days_before",
                f"{_num(days_before)} days is not shorter than template {template!r}'s validity of {validity.days} "
                "days: every new certificate would be due for renewal at once")
    if "percent" in table:
        percent = _number(table["percent"], index, "percent")
        if not 0 < percent < 100:
            raise _rule_error(index, "percent", f"the percentage of the lifetime left must be between 0 and 100, "
                                                f"not {_num(percent)}")

    window = None
    if "window" in table:
        raw = table["window"]
        if not isinstance(raw, str):
            raise _rule_error(index, "window", f"expected a string like \"sat,sun 22:00-04:00 Europe/Berlin\", not {raw!r}")
        try:
            window = MaintenanceWindow.parse(raw)
        except InvalidInput as e:
            raise _rule_error(index, "window", str(e)) from None

    jitter = DEFAULT_JITTER
    if "jitter" in table:
        jitter = _number(table["jitter"], index, "jitter")
        if not 0 <= jitter < 0.5:
            raise _rule_error(index, "jitter", f"a fraction of the lifetime in [0, 0.5), not {_num(jitter)}")
    try:
        return AutoRule(index=index, template=template, match=match, hosts=hosts, paths=paths,
                        days_before=days_before, percent=percent, window=window, jitter=jitter)
    except re.error as e:   # a path pattern the regex engine refuses (e.g. a bad class)
        raise _rule_error(index, "paths", f"bad pattern: {e}") from None


def load_auto_rules(renewal_table: Mapping[str, Any] | None,
                    templates: Collection[str] | Mapping[str, Any]) -> list[AutoRule]:
    """The ``[[renewal.auto]]`` rules of the ``[renewal]`` table, in order; [] when there are none.

    ``templates`` are the configured templates (names, or ``{name: Template}``; with Template
    objects a ``days_before`` as long as the template's validity is refused)."""
    if not renewal_table:
        return []
    raw = renewal_table.get("auto")
    if raw is None:
        return []
    if isinstance(raw, Mapping):
        raise ConfigError("[renewal] auto: write the rules as [[renewal.auto]] (a list of tables), not [renewal.auto]")
    if not isinstance(raw, list):
        raise ConfigError("[renewal] auto: expected a list of [[renewal.auto]] tables")
    return [load_rule(i, table, templates) for i, table in enumerate(raw, start=1)]


@dataclass(frozen=True)
class AutoRenewSettings:
    check_interval: float = DEFAULT_CHECK_INTERVAL      # seconds
    retry_after: dt.timedelta = DEFAULT_RETRY_AFTER


def load_settings(renewal_table: Mapping[str, Any] | None) -> AutoRenewSettings:
    """``check_interval`` and ``retry_after`` of the ``[renewal]`` table; unknown keys are errors."""
    if not renewal_table:
        return AutoRenewSettings()
    if not isinstance(renewal_table, Mapping):
        raise ConfigError("[renewal] must be a table")
    unknown = sorted(set(renewal_table) - RENEWAL_KEYS)
    if unknown:
        raise ConfigError(f"[renewal]: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(RENEWAL_KEYS))})")
    interval = parse_duration(renewal_table.get("check_interval", "10m"), "[renewal] check_interval")
    if interval < 1:
        raise ConfigError("[renewal] check_interval: must be at least one second")
    retry = parse_duration(renewal_table.get("retry_after", "1d"), "[renewal] retry_after")
    return AutoRenewSettings(check_interval=interval, retry_after=dt.timedelta(seconds=retry))


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
    are renewed where the service reads the certificate, a file or store location of their own."""
    return getattr(loc, "role", "service") != "trust_anchor" and loc.store_type != "endpoint"


def first_rule(rules: Iterable[AutoRule], loc: LocationView) -> AutoRule | None:
    return next((r for r in rules if r.matches(loc)), None)


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
            jobs = self.renewal.request(p.fingerprint, p.location, p.template, REQUESTED_BY, p.reason)
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


def build_autorenewer(config: Any, registry: Registry, renewal: RenewalService | None,
                      clock: Callable[[], dt.datetime]) -> AutoRenewer | None:
    """The AutoRenewer for a collector config (``config.extra["renewal"]``); None without
    ``[[renewal.auto]]`` rules. ConfigError for bad rules, or rules without issuers."""
    table = config.extra.get("renewal") or {}
    settings = load_settings(table)
    if not table.get("auto"):
        return None
    if renewal is None:
        raise ConfigError("[[renewal.auto]] needs [issuers] and [templates] to renew with")
    rules = load_auto_rules(table, renewal.templates)
    return AutoRenewer(registry, renewal, rules, clock, check_interval=settings.check_interval,
                       retry_after=settings.retry_after)
