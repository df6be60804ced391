"""Renewal jobs from request to verified: the collector's half.

The agent makes the key and the CSR and installs; the collector decides what
to ask, issues through the template's issuer, and records every step on the
job (collector/registry/jobs.py), so that any collector replica can carry a
job forward and a restart loses nothing.

The trip of a renewal (``certfleet renew``, or auto-renewal):

1. :meth:`RenewalService.request` (collector/api/admin.py ``Renew``): one job per targeted
   location, ``requested`` when the names may go to that host (collector/domain/authority.py) and
   the approval policy finds nothing atypical (collector/domain/approvals.py); otherwise
   ``awaiting_approval`` with the reasons (collector/services/approvals.py decides on it);
2. :meth:`RenewalService.commands_for`, asked by the agent's command stream
   (collector/services/agent_session.py): the job state machine (collector/domain/jobstates.py
   ``command_for``) wants a key and a CSR made on the host: a PrepareRenewal; ``key_pending``;
3. the agent's CSR, to :meth:`RenewalService.on_update` (``update_path``): ``csr_received``, then
   the template's issuer signs: ``issued`` (an unreachable issuer: retried, then ``failed``);
4. :meth:`RenewalService.commands_for` again: an InstallCertificate with the issuer's root when
   it knows it (``SupportsRoot``); ``installing``;
5. the agent installs, reloads and checks that the service serves the new certificate:
   :meth:`RenewalService.on_update`: ``verified``, ``rolled_back`` or ``failed``.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from typing import Callable, Mapping

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from collector import errors
from collector.domain import authority
from collector.domain import jobstates as jobs
from collector.domain import serving
from collector.domain.approvals import ApprovalPolicy, RequestShape, atypical, merge
from collector.domain.commands import Command, InstallCertificate, LocationKey, PrepareRenewal
from collector.domain.policy import RequestFacts
from collector.domain.scope import renew_targets
from collector.domain.templates import SubjectNames, Template, check_request
from collector.issuers.base import Issuer, KnowsIssued, RevocationReason, SupportsRoot
from collector.metrics.recorder import NULL, Recorder
from collector.registry import Registry
from collector.registry.types import JobView, LocationKeyIn, LocationSelector
from collector.services.challenges import ChallengeBroker

log = logging.getLogger(__name__)

JOB_TIMEOUT = dt.timedelta(minutes=30)
MAX_ATTEMPTS = 4            # issuer outages: tried again after 30 s, 1 min, 2 min (collector.domain.jobstates.retry_delay)
ISSUED_RECORD_TRIES = 60    # a certificate issued during a database outage: recorded when it is back
ISSUED_RECORD_PAUSE = 2.0   # seconds between tries (2 minutes in all)


#: why a job moved when its command was made (jobstates.state_after_command)
_SENT = {jobs.MAKE_CSR: "agent asked for a key and CSR", jobs.INSTALL: "certificate sent to the agent"}
#: why a job passed a state on the way to what its agent reported (jobstates.update_path)
NOTHING_VERIFIED = ("installed; NOT verified: the store has no verify entry on the agent, so no service was "
                    "asked to serve the new certificate")
_ON_THE_WAY = {jobs.KEY_PENDING: "CSR arrived for an earlier request", jobs.INSTALLING: "agent installing"}


def _location(job: JobView) -> LocationKey:
    return LocationKey(store_type=job.store_type, path=job.path, alias=job.alias, chain_index=job.chain_index)


class RenewalService:
    def __init__(
        self, registry: Registry, issuers: Mapping[str, Issuer], templates: Mapping[str, Template],
        default_template: str, clock: Callable[[], dt.datetime], broker: ChallengeBroker | None = None,
        sleep: Callable[[float], None] = time.sleep,
        approvals: ApprovalPolicy | None = None,
    ) -> None:
        self.policy = approvals or ApprovalPolicy()
        self.broker = broker or ChallengeBroker()
        self.sleep = sleep
        self.registry = registry
        self.issuers = issuers
        self.templates = templates
        self.default_template = default_template
        self.clock = clock
        self.recorder: Recorder = NULL     # the metrics (collector/metrics/recorder.py); set by the composition root

    def template(self, name: str) -> Template:
        name = name or self.default_template
        if not name:
            raise errors.InvalidInput("no template named and no default template configured ([renewal] default_template)")
        tpl = self.templates.get(name)
        if tpl is None:
            known = ", ".join(sorted(self.templates)) or "none configured"
            raise errors.NotFound(f"no template {name!r} (known: {known})")
        if tpl.issuer not in self.issuers:
            raise errors.InvalidInput(f"template {name!r} names issuer {tpl.issuer!r}, which is not configured")
        return tpl

    def request(self, fingerprint_prefix: str, where: LocationSelector, template_name: str, requested_by: str,
                reason: str, *, team: str | None = None, dedupe: str = ""):
        """One job per location of the certificate (or the one named); repeating the request returns the same jobs.

        Each location's job is ``requested`` when its host may hold every name of the certificate
        (collector/domain/authority.py ``decide``) and the approval policy finds nothing atypical;
        else it waits in ``awaiting_approval`` with the reasons. ``team``: the owner role's team,
        which must hold the names (PermissionDenied otherwise). ``dedupe`` (auto-renewal: a location
        and threshold): at most one approval is ever opened for it."""
        cert = self.registry.get_certificate(fingerprint_prefix, with_der=True)
        selector = where if any((where.agent_id, where.store_type, where.path, where.alias)) else None
        # endpoints and trust anchors are not renewed: say so, and where to renew instead
        targets = renew_targets(cert, selector)
        blocked = [t for t in targets if serving.not_renewable(t)]
        ok = [t for t in targets if not serving.not_renewable(t)]
        if blocked and not ok:
            raise errors.InvalidInput(self._refusal(cert.fingerprint, blocked))
        tpl = self.template(template_name)
        names = SubjectNames.from_certificate(x509.load_der_x509_certificate(cert.der))
        check_request(tpl, names)   # refuse before anything is queued
        # a request that breaks a LOCKED policy value is refused, naming the rule (collector/domain/policy.py)
        self.registry.policies.check_renewal(cert, selector, RequestFacts.from_template(tpl, names.dns))
        reason = reason or "renewal requested"
        grants = self.registry.authority.grants()
        allows = self.registry.authority.allows()
        all_names = list(names.dns) + list(names.ips)
        holder = authority.owning_team(all_names, grants)
        if team is not None and holder != team:
            raise errors.PermissionDenied(
                f"role owner (team {team}) may renew only its team's certificates, those whose names it holds; "
                + (f"these are held by {holder}" if holder else "; ".join(
                    authority.decide(all_names, authority.Host("", ""), grants, []).reasons)))
        hosts = self.registry.authority.hosts([t.agent_id for t in ok])
        for t in blocked:
            log.info("renewal of %s: %s %s left out: %s", cert.fingerprint[:16], t.hostname, t.path,
                     serving.not_renewable(t))
        # one request per location: each job keeps the reload the agent found for its service, and its approval
        out: dict[str, object] = {}
        for t in ok:
            approval = self._approval_for(hosts.get(t.agent_id), all_names, tpl, holder, dedupe, grants, allows)
            if approval is False:
                continue
            one = LocationSelector(agent_id=t.agent_id, store_type=t.store_type, path=t.path, alias=t.alias,
                                   chain_index=t.chain_index)
            hint = serving.reload_suggestion(t.processes)
            detail = {"suggested_reload": hint.as_json()} if hint else None
            for job in self.registry.jobs.create_renewals(cert.fingerprint, one, tpl.name, requested_by, reason,
                                                          self.clock(), JOB_TIMEOUT, detail=detail,
                                                          approval=approval or None):
                out.setdefault(job.job_id, job)
        return list(out.values())

    def _approval_for(self, host: authority.Host | None, names: list[str], tpl: Template, holder: str | None,
                      dedupe: str, grants: list[authority.Grant], allows: list[authority.Allow]):  # noqa: ANN202
        """None: issue as a standard request; a dict: open an approval with these reasons; False:
        this location's approval was already opened once (``dedupe``) and is not opened again."""
        host = host or authority.Host("", "")
        decision = authority.decide(names, host, grants, allows)
        reasons = [] if decision.authorized else list(decision.reasons)
        if reasons and self.policy.trust_on_first_sight and all(
                authority.holder(authority.normalize_name(n), grants) is None for n in names):
            log.warning("trust on first sight ([approvals] trust_on_first_sight): %s to %s without a grant",
                        ", ".join(names), host.name or host.agent_id)
            reasons = []
        reasons = merge(reasons, atypical(self.policy, RequestShape(template=tpl.name, names=tuple(names))))
        if not reasons:
            return None
        key = ""
        if dedupe:
            key = hashlib.sha256(f"{dedupe}\0{host.agent_id}".encode()).hexdigest()
            if self.registry.approvals.by_dedupe(key) is not None:
                return False
        return {"reasons": reasons, "names": names, "owner": holder or "", "dedupe_key": key,
                "expires_at": self.clock() + self.policy.expire_after}

    def _refusal(self, fingerprint: str, blocked: list) -> str:  # noqa: ANN001
        """Why none of the targeted locations can be renewed, and where to renew instead."""
        parts = []
        for t in blocked[:5]:
            why = serving.not_renewable(t)
            text = f"{t.hostname} {t.store_type}:{t.path}" + (f" [{t.alias}]" if t.alias else "") + f": {why}"
            if t.store_type == "endpoint":
                files = self.registry.discovery.serving_locations(t.agent_id, t.path)
                if files:
                    text += "; on this host it is read from " + ", ".join(
                        f"{st}:{path}" + (f" [{alias}]" if alias else "") for st, path, alias in files[:5])
                    text += " (renew there: certfleet renew <that certificate> --location PATH)"
                else:
                    text += ("; the registry knows no file or store whose process listens there "
                             "(the agent links them when it can see the process)")
            parts.append(text)
        more = f" and {len(blocked) - 5} more" if len(blocked) > 5 else ""
        return f"certificate {fingerprint[:16]}... cannot be renewed where asked: " + "; ".join(parts) + more

    # -- commands for a connected agent ------------------------------------------------

    def commands_for(self, agent_id: str, connected_at: dt.datetime | None = None) -> list[Command]:
        """Commands the agent must get now; each claimed so that only one collector sends it.

        What a job needs is the state machine's (collector/domain/jobstates.py ``command_for``); the
        job moves to the state after it (``state_after_command``: requested -> key_pending,
        issued -> installing) once its command is made. ``connected_at``: when the agent's
        command stream connected; a job in flight whose command went out before then (on a stream
        that is gone) is sent again at once."""
        now = self.clock()
        out: list[Command] = []
        for job in self.registry.jobs.due_for_agent(agent_id, now, connected_at=connected_at):
            command = jobs.command_for(job.state)
            if command is None or not self.registry.jobs.claim_command(job.job_id, job.state, now,
                                                                       connected_at=connected_at):
                continue
            if command == jobs.MAKE_CSR:
                out.append(self._prepare(job))
            else:
                out.append(self._install(job, now))
            after = jobs.state_after_command(job.state)
            if after != job.state:
                self.registry.jobs.advance(job.job_id, after, now, reason=_SENT[command])
        return out

    def _prepare(self, job: JobView) -> PrepareRenewal:
        tpl = self.template(job.template)
        names = self._names(job.old_fingerprint)
        return PrepareRenewal(
            command_id=f"{job.job_id}:prepare:{job.attempts}", job_id=job.job_id, location=_location(job),
            key_spec=tpl.key_spec(), common_name=names.common_name, dns_names=tuple(names.dns),
            ip_addresses=tuple(names.ips),
        )

    def _install(self, job: JobView, now: dt.datetime) -> InstallCertificate:
        return InstallCertificate(
            command_id=f"{job.job_id}:install:{job.attempts}", job_id=job.job_id, location=_location(job),
            certificate_der=job.certificate_der, chain_der=tuple(job.chain_ders),
            expected_old_fingerprint=job.old_fingerprint, trust_anchor_der=self._trust_anchor(job.template, now),
        )

    def _names(self, fingerprint: str) -> SubjectNames:
        """The names a renewal asks for: those of the certificate it replaces."""
        cert = self.registry.get_certificate(fingerprint, with_der=True)
        return SubjectNames.from_certificate(x509.load_der_x509_certificate(cert.der))

    def _trust_anchor(self, template_name: str, now: dt.datetime) -> bytes:
        """The issuing CA's root where the issuer knows it (internal CA), for the agent's verification."""
        issuer = self.issuers.get(self.template(template_name).issuer)
        if isinstance(issuer, SupportsRoot):
            try:
                return issuer.root_der(now) or b""
            except Exception:  # noqa: BLE001 - verification falls back to the agent's trust store
                log.warning("no root from issuer %s", getattr(issuer, "name", "?"), exc_info=True)
        return b""

    # -- what the agent says -----------------------------------------------------------

    def on_update(self, agent_id: str, update: jobs.AgentJobUpdate) -> None:
        """What the agent says about one of its jobs: a CSR (the issuer is asked next) or how the
        install went. The states the job moves through are the state machine's
        (``jobstates.update_path``); a repeated or late report changes nothing."""
        now = self.clock()
        job = self.registry.jobs.get(update.job_id)
        if job.agent_id != agent_id:
            raise errors.PermissionDenied(f"job {update.job_id} belongs to another agent")
        path = jobs.update_path(job.state, update.state)
        if not path:
            if job.state == update.state == jobs.VERIFIED and job.certificate_der:
                self._show_installed(job, now)     # repeated (or re-applied after an outage): idempotent
            return
        *between, last = path
        for state in between:
            self.registry.jobs.advance(job.job_id, state, now, reason=_ON_THE_WAY[state])
        if last == jobs.CSR_RECEIVED:
            self.registry.jobs.advance(job.job_id, last, now, reason="key made on the host; CSR received",
                                       actor=f"agent:{agent_id}", csr_der=update.csr_der)
            self._issue(job.job_id, update.csr_der)
        elif last in jobs.INSTALL_OUTCOMES:
            detail = dict(job.result_detail) if isinstance(job.result_detail, dict) else {}
            detail.update({
                "steps": [{"step": s.step, "ok": s.ok, "detail": s.detail, "seconds": round(s.seconds, 3)}
                          for s in update.steps],
                "reload_seconds": round(update.reload_seconds, 3),
            })
            reason = update.reason or last
            if update.verified_by:
                detail["verified_by"] = update.verified_by
            if last == jobs.VERIFIED and update.verified_by == jobs.VERIFIED_BY_NONE:
                reason = NOTHING_VERIFIED          # installed and reloaded, but no service was asked
            self.registry.jobs.advance(
                job.job_id, last, now, reason=reason, actor=f"agent:{agent_id}",
                served_fingerprint=update.served_fingerprint, result_detail=detail,
            )
            log.info("job %s %s on agent %s: %s", job.job_id, last, agent_id, update.reason)
            self.recorder.renewal_finished(last, (now - job.created_at).total_seconds())
            if last == jobs.VERIFIED and job.certificate_der:
                self._show_installed(job, now)
        else:
            self.registry.jobs.advance(job.job_id, last, now, reason=_ON_THE_WAY[last])

    def _show_installed(self, job: JobView, now: dt.datetime) -> None:
        """The registry shows the new certificate at the job's location at once; a report the
        agent scanned before the install no longer puts the old one back (registry/ingest.py)."""
        key = LocationKeyIn(store_type=job.store_type, path=job.path, alias=job.alias, chain_index=job.chain_index)
        try:
            self.registry.record_install(job.agent_id, key, job.certificate_der, now)
        except errors.DatabaseUnavailable:
            raise
        except errors.CollectorError as e:     # the agent's next scan shows it anyway
            log.warning("job %s: the installed certificate is not shown at its location yet: %s", job.job_id, e)

    def _issue(self, job_id: str, csr_der: bytes) -> None:
        job = self.registry.jobs.get(job_id)
        tpl = self.template(job.template)
        issuer = self.issuers[tpl.issuer]
        names = self._names(job.old_fingerprint)
        now = self.clock()
        mismatch = authority.csr_names_differ(csr_der, list(names.dns) + list(names.ips))
        if mismatch:    # the host asked for other names than the job's: refused, never issued
            self.registry.jobs.advance(job_id, jobs.FAILED, now, reason=f"CSR refused: {mismatch}")
            return
        try:
            with self.broker.for_job(job):
                issued = issuer.issue(csr_der, tpl, names, now)
        except errors.IssuerUnavailable as e:     # unreachable, timed out: try again later
            self._retry_or_fail(job, f"issuer {tpl.issuer}: {e}")
            return
        except errors.DatabaseUnavailable:        # our own outage, not the issuer's refusal
            raise
        except errors.CollectorError as e:        # refused: final, with the issuer's reason
            self.registry.jobs.advance(job_id, jobs.FAILED, self.clock(), reason=f"issuer {tpl.issuer}: {e}")
            self.recorder.renewal_finished(jobs.FAILED, (self.clock() - job.created_at).total_seconds())
            return
        except Exception as e:  # noqa: BLE001 - an unexpected failure: retry, then fail visibly
            log.exception("issuer %s failed for job %s", tpl.issuer, job_id)
            self._retry_or_fail(job, f"issuer {tpl.issuer} failed: {type(e).__name__}: {str(e)[:200]}")
            return
        leaf = x509.load_der_x509_certificate(issued.certificate_der)
        # an issued certificate is not thrown away for a database outage: recorded once it is back
        for attempt in range(ISSUED_RECORD_TRIES):
            try:
                self.registry.jobs.advance(
                    job_id, jobs.ISSUED, self.clock(), reason=f"issued by {tpl.issuer}, serial {issued.serial}",
                    new_fingerprint=leaf.fingerprint(hashes.SHA256()).hex(), certificate_der=issued.certificate_der,
                    chain_ders=list(issued.chain_ders),
                )
                return
            except errors.DatabaseUnavailable:
                if attempt + 1 == ISSUED_RECORD_TRIES:
                    raise
                self.sleep(ISSUED_RECORD_PAUSE)

    def _retry_or_fail(self, job, what: str) -> None:  # noqa: ANN001
        """Back to requested (the job store counts the attempt and sets the backoff) or, at the limit, failed."""
        if job.attempts + 1 < MAX_ATTEMPTS:
            self.registry.jobs.advance(job.job_id, jobs.REQUESTED, self.clock(),
                                       reason=f"{what}; retrying (attempt {job.attempts + 2} of {MAX_ATTEMPTS})")
        else:
            self.registry.jobs.advance(job.job_id, jobs.FAILED, self.clock(),
                                       reason=f"{what}; gave up after {MAX_ATTEMPTS} attempts")
            self.recorder.renewal_finished(jobs.FAILED, (self.clock() - job.created_at).total_seconds())

    def sweep(self) -> int:
        """Mark jobs past their deadline as stuck; return how many."""
        stuck = self.registry.jobs.mark_stuck(self.clock())
        for job in stuck:
            log.warning("job %s is stuck in %s past its deadline", job.job_id, job.state)
        return len(stuck)

    def revoke(self, fingerprint_prefix: str, reason: str, actor: str) -> tuple[str, str]:
        """Revoke at the issuer that issued the certificate; (fingerprint, issuer name).

        An issuer that knows what it issued (:class:`KnowsIssued`, e.g. an internal CA) is asked
        first and, when it issued the certificate, is the only one tried; otherwise the issuers
        that cannot tell (ACME CAs) are tried in turn until one accepts."""
        try:
            why = RevocationReason.parse(reason)
        except (ValueError, KeyError, errors.CollectorError):
            names = ", ".join(r.rfc_name for r in RevocationReason)
            raise errors.InvalidInput(f"unknown revocation reason {reason!r}; use one of: {names}") from None
        cert = self.registry.get_certificate(fingerprint_prefix, with_der=True)
        refusals: list[str] = []
        for name, issuer in self._revocation_candidates(cert.der, refusals):
            try:
                issuer.revoke(cert.der, why, self.clock())
            except errors.CollectorError as e:
                refusals.append(f"{name}: {e}")
                continue
            except Exception as e:  # noqa: BLE001 - an unreachable or confused issuer: try the next
                log.warning("revocation at %s failed", name, exc_info=True)
                refusals.append(f"{name}: {type(e).__name__}")
                continue
            log.info("certificate %s revoked at %s by %s: %s", cert.fingerprint, name, actor, why.rfc_name)
            self.registry.record_certificate_revocation(cert.fingerprint, name, why.rfc_name, actor, self.clock())
            return cert.fingerprint, name
        raise errors.InvalidInput(
            "no configured issuer accepted the revocation: " + ("; ".join(refusals) or "no issuers configured"))

    def _revocation_candidates(self, der: bytes, refusals: list[str]) -> list[tuple[str, Issuer]]:
        """The issuers to try: the one that issued ``der``, if one knows it did; else those that
        cannot tell. Issuers that know they did not issue it are noted in ``refusals``."""
        now = self.clock()
        knowing = [(n, i) for n, i in self.issuers.items() if isinstance(i, KnowsIssued)]
        others = [(n, i) for n, i in self.issuers.items() if not isinstance(i, KnowsIssued)]
        for name, issuer in knowing:
            try:
                mine = issuer.issued(der, now)
            except Exception as e:  # noqa: BLE001 - an issuer that cannot look: left to try
                log.warning("issuer %s could not tell whether it issued the certificate", name, exc_info=True)
                refusals.append(f"{name}: {type(e).__name__}")
                continue
            if mine:
                return [(name, issuer)]
            refusals.append(f"{name}: did not issue this certificate")
        return others
