"""Who owns a certificate: owners, assignment rules, explicit assignments, orphans.

Pure functions of facts (no database, no clock). The registry's ``OwnerStore``
(collector/registry/owners.py) keeps the records and calls :func:`resolve`.

How an assignment is made
-------------------------
Each of the four attributes -- owner, environment, criticality, service -- is
taken separately from the first of these sources that sets it:

1. an explicit assignment of the *location* (agent + store type + path + alias;
   it stays when the certificate there is renewed),
2. an explicit assignment of the *certificate* (by SHA-256 fingerprint),
3. the assignment rules in priority order (lowest number first): the first
   matching rule that sets the attribute gives it,
4. the location's labels ``owner``, ``environment``, ``service`` and
   ``criticality`` (from the agent's ``labels`` overlaid with the store's) as hints.

So a rule that only sets ``criticality`` does not stop a later rule from giving
the owner. ``Assignment.source`` names where the owner came from (or, without
an owner, the first attribute that was set): ``"explicit"``, ``"rule:<name>"``,
``"label"`` or None; ``Assignment.sources`` has it per attribute.

A rule matches when *all* its conditions hold (a rule without conditions matches
everything, a catch-all):

- ``host``: a DNS glob on the agent's hostname (case-insensitive). ``*`` and
  ``?`` stay within one label, ``**`` spans labels (``**.example.com`` also
  matches ``example.com``). A pattern without a dot is matched against the short
  host name too (``web-*`` matches ``web-1.example.com``).
- ``path``: a path glob. ``*`` and ``?`` stay within one path segment, ``**``
  spans any number of them (``/etc/ssl/**/*.pem`` matches ``/etc/ssl/a.pem`` and
  ``/etc/ssl/x/y/a.pem``; ``/etc/ssl/**`` everything below). A pattern without
  ``/`` is matched against the file name. Backslashes count as ``/``. Case-
  sensitive, except for Windows paths (drive letter or backslash).
- ``san``: a DNS glob (as ``host``) that one of the certificate's DNS SANs
  matches -- or its subject CN when it has no DNS SAN.
- ``issuer``: a case-insensitive substring of the issuer DN.
- ``labels``: every given label equals the location's label.

Orphans
-------
A certificate present somewhere is an orphan when one of its present locations
resolves to no owner, to an owner name that is not registered (from a label
hint), or to an owner without a working contact. A contact is *working* when the
owner has at least one valid-looking e-mail address (``local@domain.tld``) among
its contacts or an ``https://`` webhook; the escalation contact does not count.
"""
from __future__ import annotations

import datetime as dt
import itertools
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from collector.domain.globs import dns_matches, path_matches
# The field and glob checks of owners, rules and assignments are part of this module's API: the
# registry's owner store validates records with own.check_email, own.check_glob, ...
from collector.domain.globs import check_glob  # noqa: F401
from collector.domain.owner_fields import (  # noqa: F401
    CRITICALITIES, check_criticality, check_email, check_environment, check_name, check_service, check_webhook,
    has_working_contact, is_email, is_environment, is_https_url,
)

__all__ = [
    "ATTRIBUTES", "Assignment", "CRITICALITIES", "CertFacts", "CertificateAssignment", "Explicit",
    "LocatedAssignment", "NO_OWNER", "NO_WORKING_CONTACT", "ORPHAN_REASONS", "Orphan", "OrphanLocation", "Owner",
    "Resolver", "Rule", "SCOPE_CERTIFICATE", "SCOPE_LOCATION", "SOURCE_EXPLICIT", "SOURCE_LABEL", "UNKNOWN_OWNER",
    "check_criticality", "check_email", "check_environment", "check_glob", "check_name", "check_service",
    "check_webhook", "dns_matches", "facts_of", "has_working_contact", "is_email", "is_https_url",
    "orphan_of", "orphan_reason", "orphans_in", "path_matches", "resolve", "rule_matches", "subject_cn",
]

ATTRIBUTES = ("owner", "environment", "criticality", "service")
SOURCE_EXPLICIT = "explicit"
SOURCE_LABEL = "label"
SCOPE_CERTIFICATE = "certificate"
SCOPE_LOCATION = "location"

# Orphan reasons, worst first.
NO_OWNER = "no_owner"
UNKNOWN_OWNER = "unknown_owner"
NO_WORKING_CONTACT = "no_working_contact"
ORPHAN_REASONS = (NO_OWNER, UNKNOWN_OWNER, NO_WORKING_CONTACT)



# -- records --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Owner:
    """A team or role (not a person) that answers for certificates."""

    name: str
    contacts: tuple[str, ...] = ()     # e-mail addresses
    webhook: str = ""                  # URL; only https counts as a working contact
    escalation: str = ""               # e-mail address told when a notice is escalated
    description: str = ""
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None

    @property
    def working(self) -> bool:
        return has_working_contact(self.contacts, self.webhook)


@dataclass(frozen=True, slots=True)
class Rule:
    """An assignment rule: conditions (empty = any) and the attributes it sets (empty = not set)."""

    name: str
    priority: int
    owner: str = ""
    environment: str = ""
    criticality: str = ""
    service: str = ""
    host: str = ""                     # DNS glob on the hostname
    path: str = ""                     # path glob
    san: str = ""                      # DNS glob on the DNS SANs (or CN)
    issuer: str = ""                   # substring of the issuer DN
    labels: Mapping[str, str] = field(default_factory=dict)
    description: str = ""
    created_by: str = ""
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None

    def sets(self) -> dict[str, str]:
        return {a: getattr(self, a) for a in ATTRIBUTES if getattr(self, a)}

    def conditions(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in ("host", "path", "san", "issuer") if getattr(self, k)}
        if self.labels:
            out["labels"] = dict(self.labels)
        return out


@dataclass(frozen=True, slots=True)
class Explicit:
    """An explicit assignment of one certificate (scope "certificate", by fingerprint) or one
    location (scope "location": agent + store type + path + alias, whatever certificate it holds)."""

    scope: str
    fingerprint: str = ""
    agent_id: str = ""
    store_type: str = ""
    path: str = ""
    alias: str = ""
    owner: str = ""
    environment: str = ""
    criticality: str = ""
    service: str = ""
    reason: str = ""
    assigned_by: str = ""
    hostname: str = ""                 # for display
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None

    def applies(self, fingerprint: str, location: Any | None) -> bool:
        if self.scope == SCOPE_CERTIFICATE:
            return self.fingerprint == fingerprint
        return location is not None and (
            self.agent_id == location.agent_id and self.store_type == location.store_type
            and self.path == location.path and self.alias == location.alias
        )

    def sets(self) -> dict[str, str]:
        return {a: getattr(self, a) for a in ATTRIBUTES if getattr(self, a)}


@dataclass(frozen=True, slots=True)
class Assignment:
    owner: str | None = None
    environment: str | None = None
    criticality: str | None = None
    service: str | None = None
    source: str | None = None          # "explicit", "rule:<name>", "label" or None (see module doc)
    sources: Mapping[str, str] = field(default_factory=dict)   # attribute -> source


@dataclass(frozen=True, slots=True)
class CertFacts:
    """What rules look at in a certificate, for callers without a CertificateView."""

    fingerprint: str
    subject: str = ""
    issuer: str = ""
    dns_names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LocatedAssignment:
    location: Any                      # collector.registry.types.LocationView
    assignment: Assignment


@dataclass(frozen=True, slots=True)
class CertificateAssignment:
    """A certificate's assignment at each of its locations, and the explicit assignments that apply."""

    certificate: Any                   # collector.registry.types.CertificateView (without DER)
    certificate_assignment: Assignment  # from the certificate alone (no location facts)
    locations: tuple[LocatedAssignment, ...]
    explicit: tuple[Explicit, ...]


@dataclass(frozen=True, slots=True)
class OrphanLocation:
    location: Any                      # LocationView
    assignment: Assignment
    reason: str                        # one of ORPHAN_REASONS
    detail: str


@dataclass(frozen=True, slots=True)
class Orphan:
    certificate: Any                   # CertificateView (present locations only)
    reason: str                        # the worst reason among its locations
    detail: str
    locations: tuple[OrphanLocation, ...]   # the orphaned locations only


# -- resolution ------------------------------------------------------------------------------


def subject_cn(subject: str) -> str:
    for part in re.split(r"(?<!\\),", subject or ""):
        k, _, v = part.strip().partition("=")
        if k.upper() == "CN":
            return v.replace("\\", "")
    return ""


def facts_of(cert: Any) -> CertFacts:
    """CertFacts from a CertFacts, a CertificateView (sans of SanView) or anything alike."""
    if isinstance(cert, CertFacts):
        return cert
    sans = getattr(cert, "sans", ()) or ()
    dns: list[str] = []
    for s in sans:
        if isinstance(s, str):
            dns.append(s)
        elif getattr(s, "type", "") == "dns":
            dns.append(s.value)
        elif isinstance(s, (tuple, list)) and len(s) == 2 and s[0] == "dns":
            dns.append(s[1])
    return CertFacts(fingerprint=getattr(cert, "fingerprint", ""), subject=getattr(cert, "subject", ""),
                     issuer=getattr(cert, "issuer", ""), dns_names=tuple(dns))


def rule_matches(rule: Rule, cert: CertFacts, location: Any | None) -> bool:
    """All of the rule's conditions hold for this certificate at this location (None: certificate facts only)."""
    if rule.issuer and rule.issuer.lower() not in (cert.issuer or "").lower():
        return False
    if rule.san:
        names = cert.dns_names or ((subject_cn(cert.subject),) if subject_cn(cert.subject) else ())
        if not any(dns_matches(rule.san, n) for n in names):
            return False
    if rule.host or rule.path or rule.labels:
        if location is None:
            return False
        if rule.host and not dns_matches(rule.host, getattr(location, "hostname", "") or "", short_too=True):
            return False
        if rule.path and not path_matches(rule.path, getattr(location, "path", "") or ""):
            return False
        if rule.labels:
            labels = getattr(location, "labels", None) or {}
            if any(labels.get(k) != v for k, v in rule.labels.items()):
                return False
    return True


def _label_hints(location: Any | None) -> dict[str, str]:
    labels = (getattr(location, "labels", None) or {}) if location is not None else {}
    out: dict[str, str] = {}
    owner = str(labels.get("owner", "")).strip().lower()
    if owner:
        out["owner"] = owner
    env = str(labels.get("environment", "")).strip().lower()
    if is_environment(env):
        out["environment"] = env
    crit = str(labels.get("criticality", "")).strip().lower()
    if crit in CRITICALITIES:
        out["criticality"] = crit
    service = str(labels.get("service", "")).strip()
    if service:
        out["service"] = service
    return out


def resolve(cert: Any, location: Any | None, rules: Sequence[Rule], explicit: Iterable[Explicit] = ()) -> Assignment:
    """The assignment of ``cert`` (CertificateView or CertFacts) at ``location`` (LocationView or None).

    ``rules`` are taken by priority (lowest first); ``explicit`` may hold any explicit
    assignments: those for other certificates or locations are ignored.
    """
    facts = facts_of(cert)
    got: dict[str, str] = {}
    sources: dict[str, str] = {}
    first: list[str] = []

    def take(values: Mapping[str, str], source: str) -> None:
        for a in ATTRIBUTES:
            v = values.get(a)
            if v and a not in got:
                got[a] = v
                sources[a] = source
                if not first:
                    first.append(source)

    exp = [e for e in explicit if e.applies(facts.fingerprint, location)]
    for scope in (SCOPE_LOCATION, SCOPE_CERTIFICATE):
        for e in exp:
            if e.scope == scope:
                take(e.sets(), SOURCE_EXPLICIT)
    if len(got) < len(ATTRIBUTES):
        for rule in sorted(rules, key=lambda r: r.priority):
            if len(got) == len(ATTRIBUTES):
                break
            # cheap test first (no dict built): does the rule set anything still unset?
            if any(a not in got and getattr(rule, a) for a in ATTRIBUTES) and rule_matches(rule, facts, location):
                take(rule.sets(), f"rule:{rule.name}")
    if len(got) < len(ATTRIBUTES):
        take(_label_hints(location), SOURCE_LABEL)
    source = sources.get("owner") or (first[0] if first else None)
    return Assignment(
        owner=got.get("owner"), environment=got.get("environment"), criticality=got.get("criticality"),
        service=got.get("service"), source=source, sources=sources,
    )


class Resolver:
    """``resolve`` for many locations with the same rules, remembering answers.

    Without an explicit assignment that applies, an assignment depends only on the facts
    the rules look at (hostname, path, labels, DNS names/subject, issuer: only those some
    rule has a condition on) and on the location's labels (label hints); locations that
    agree on those share one answer. Locations with an applicable explicit assignment are
    resolved afresh. ``Resolver(rules)(cert_or_facts, location, explicit)``.
    """

    def __init__(self, rules: Sequence[Rule], max_entries: int = 100_000) -> None:
        self.rules = sorted(rules, key=lambda r: r.priority)
        self.by_host = any(r.host for r in self.rules)
        self.by_path = any(r.path for r in self.rules)
        self.by_names = any(r.san for r in self.rules)
        self.by_issuer = any(r.issuer for r in self.rules)
        self.max_entries = max_entries
        self._memo: dict[Any, Assignment] = {}

    def __call__(self, cert: Any, location: Any | None, explicit: Iterable[Explicit] = ()) -> Assignment:
        facts = facts_of(cert)
        exp = [e for e in explicit if e.applies(facts.fingerprint, location)]
        if exp or location is None:
            return resolve(facts, location, self.rules, exp)
        labels = getattr(location, "labels", None) or {}
        try:
            key = (
                (getattr(location, "hostname", "") or "") if self.by_host else None,
                (getattr(location, "path", "") or "") if self.by_path else None,
                frozenset(labels.items()),
                (facts.dns_names, facts.subject) if self.by_names else None,
                facts.issuer if self.by_issuer else None,
            )
        except TypeError:            # an unhashable label value: no memo
            return resolve(facts, location, self.rules, ())
        got = self._memo.get(key)
        if got is None:
            got = resolve(facts, location, self.rules, ())
            if len(self._memo) >= self.max_entries:
                self._memo.clear()
            self._memo[key] = got
        return got


# -- orphans ---------------------------------------------------------------------------------


def orphan_reason(assignment: Assignment, owners: Mapping[str, Owner]) -> tuple[str, str] | None:
    """(reason, detail) when this assignment leaves the location without a reachable owner; else None."""
    if not assignment.owner:
        return NO_OWNER, "no explicit assignment, rule or owner label names an owner"
    owner = owners.get(assignment.owner)
    src = assignment.sources.get("owner", "")
    if owner is None:
        return UNKNOWN_OWNER, f"owner {assignment.owner!r} (from {src}) is not a registered owner"
    if not owner.working:
        return NO_WORKING_CONTACT, (
            f"owner {owner.name!r} has no working contact (no valid e-mail address and no https webhook)"
        )
    return None


def orphan_of(cert: Any, rules: Sequence[Rule], explicit: Iterable[Explicit], owners: Mapping[str, Owner]) -> Orphan | None:
    """The certificate as an orphan (its orphaned present locations), or None when every location is covered."""
    exp = list(explicit)
    facts = facts_of(cert)
    bad: list[OrphanLocation] = []
    for loc in getattr(cert, "locations", ()):
        if getattr(loc, "status", "present") != "present":
            continue
        a = resolve(facts, loc, rules, exp)
        why = orphan_reason(a, owners)
        if why is not None:
            bad.append(OrphanLocation(location=loc, assignment=a, reason=why[0], detail=why[1]))
    if not bad:
        return None
    worst = min(bad, key=lambda o: ORPHAN_REASONS.index(o.reason))
    return Orphan(certificate=cert, reason=worst.reason, detail=worst.detail, locations=tuple(bad))


def orphans_in(
    certs: Iterable[Any], rules: Sequence[Rule], owners: Mapping[str, Owner],
    explicit_for: Callable[[Sequence[Any]], Iterable[Explicit]], page_size: int = 500,
) -> Iterator[Orphan]:
    """Orphans among ``certs``, a page at a time: ``explicit_for(page)`` gives the explicit
    assignments that may apply to the page's certificates and locations."""
    rules = sorted(rules, key=lambda r: r.priority)
    it = iter(certs)
    while True:
        page = list(itertools.islice(it, page_size))
        if not page:
            return
        exp = list(explicit_for(page))
        by_fp: dict[str, list[Explicit]] = {}
        by_loc: dict[tuple[str, str, str, str], list[Explicit]] = {}
        for e in exp:
            if e.scope == SCOPE_CERTIFICATE:
                by_fp.setdefault(e.fingerprint, []).append(e)
            else:
                by_loc.setdefault((e.agent_id, e.store_type, e.path, e.alias), []).append(e)
        for cert in page:
            mine = list(by_fp.get(cert.fingerprint, ()))
            for loc in cert.locations:
                mine.extend(by_loc.get((loc.agent_id, loc.store_type, loc.path, loc.alias), ()))
            o = orphan_of(cert, rules, mine, owners)
            if o is not None:
                yield o
