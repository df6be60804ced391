"""The collector process: registry, CA, and two gRPC listeners on grpc.aio.

- ``listen``: mutual TLS. AgentService for enrolled agents, AdminService for
  admin certificates. A client without a certificate from the collector CA
  does not get past the handshake.
- ``enroll_listen``: TLS with the same server certificate, no client
  certificate; serves only Enrollment, which needs a single-use token.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import pathlib
import signal
import socket
from dataclasses import dataclass
from typing import Any, Callable

import grpc
from prometheus_client import CollectorRegistry, disable_created_metrics

from collector.api.admin import AdminServicer
from collector.api.agents import AgentServicer
from collector.api.audit import AuditServicer
from collector.api.auth import Authenticator
from collector.api.enrollment import EnrollmentServicer
from collector.api.governance import GovernanceServicer
from collector.api.hub import AgentHub
from collector.api.netscan import DiscoveryServicer
from collector.api.notify import NotifyServicer
from collector.api.policy import PolicyServicer
from collector.api.reports import ReportServicer
from collector.api.routes import add_enrollment_service, add_main_services
from collector.config.core import CollectorConfig, ConfigError, split_hostport
from collector.issuers.ca_registry import SharedCAState, shared_private_key
from collector.issuers.factory import build_issuers, check_template_issuers
from collector.issuers.internal_ca import InternalCA
from collector.issuers.pkcs11_signer import load_token
from collector.pki.keywrap import load_key_wrapper
from collector.issuers.solvers import CallbackHttp01Solver
from collector.metrics.fleet import FleetCollector, Refreshed, expiry_counts, owner_counts, violation_counts
from collector.metrics.instruments import PromRecorder, watch_engine
from collector.metrics.interceptor import CallMetrics
from collector.metrics.recorder import NULL, Recorder
from collector.pki import CollectorCA
from collector.pki.auditkey import load_or_create_audit_key
from collector.registry import Registry
from collector.server.listen import GRPC_OPTIONS, bind
from collector.pki.shared import load_or_create_shared
from collector.server.crl_http import CrlListener
from collector.server.scheduler import Scheduler
from collector.services.agent_session import AgentSessions
from collector.services.audit_checkpoint import AuditCheckpointer
from collector.services.audit_retention import AuditRetention
from collector.services.autorenew import AutoRenewer, build_autorenewer
from collector.services.challenges import ChallengeBroker
from collector.services.enrollment import Enrollment
from collector.services.inventory import Inventory
from collector.services.approvals import ApprovalService
from collector.services.notifier import Notifier
from collector.services.policy_runner import PolicyEvaluator
from collector.services.renewal import RenewalService
from certfleet.metricshttp import MetricsServer

log = logging.getLogger(__name__)
MAX_MESSAGE = 32 * 1024 * 1024
#: the enrollment listener takes a token, a CSR and host facts: a few KiB (anyone can reach it)
ENROLL_MAX_MESSAGE = 64 * 1024


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass
class CollectorState:
    """What a running collector holds open."""

    config: CollectorConfig
    registry: Registry
    ca: CollectorCA
    server_cert_pem: bytes   # server certificate followed by the CA certificate
    server_key_pem: bytes
    renewal: RenewalService | None = None
    autorenew: AutoRenewer | None = None   # set when [[renewal.auto]] rules are configured


def build_renewal(config: CollectorConfig, registry: Registry, clock: Callable[[], dt.datetime]) -> RenewalService | None:
    """Issuers and templates from the config's [issuers], [templates] and [renewal] tables; None without issuers."""
    if not config.issuers:
        return None
    broker = ChallengeBroker()
    # ACME http-01 without a responder on the collector host: the agent places the challenge.
    solvers = {
        name: CallbackHttp01Solver(broker.present, broker.cleanup)
        for name, cfg in config.issuers.items()
        if cfg.get("type") == "acme" and cfg.get("challenge", "http-01") == "http-01" and not cfg.get("http01_listen")
    }
    wrapper = load_key_wrapper(config.keys, config.data_dir, config.base_dir)
    token = load_token(config.keys.get("pkcs11"), config.base_dir)     # [keys.pkcs11]: CA keys in an HSM
    holder = f"{socket.gethostname()}:{os.getpid()}"

    def shared(name: str, old_dir: Any) -> SharedCAState:
        # the internal CAs' state lives in the registry, shared by every collector on it
        return SharedCAState(registry.issuer_state, wrapper, name, holder, old_dir, token)

    base_url = str(config.crl.get("url") or "").rstrip("/")
    issuer_cfgs = {
        name: ({**cfg, "crl_url": f"{base_url}/{name}.crl"}
               if base_url and cfg.get("type") == "internal_ca" and not cfg.get("crl_url") else cfg)
        for name, cfg in config.issuers.items()
    }
    def shared_key(name: str, kind: str) -> Callable[[Callable[[], Any], Any], Any]:
        # per-issuer keys (the ACME account) live in the registry too: one account per issuer per registry
        return lambda make, legacy: shared_private_key(registry.issuer_state, wrapper, name, kind, make, legacy,
                                                       clock())

    issuers = build_issuers(issuer_cfgs, config.data_dir, base_dir=config.base_dir, solvers=solvers,
                            shared_state=shared, shared_key=shared_key)
    for issuer in issuers.values():
        if isinstance(issuer, InternalCA):
            issuer.hierarchy(clock())   # one hierarchy per registry, made (or imported) at the first start
    templates = dict(config.templates)
    check_template_issuers(templates, issuers)
    default = config.renewal.default_template
    if not default and len(templates) == 1:
        default = next(iter(templates))
    if default and default not in templates:
        raise ConfigError(f"[renewal] default_template {default!r} is not a configured template")
    if config.approvals.policy.trust_on_first_sight:
        log.warning("[approvals] trust_on_first_sight = true: certificates whose names no grant covers are "
                    "renewed WITHOUT approval on whichever host reports them. A pilot setting only: grant the "
                    "fleet's names (certfleet names propose/adopt) and turn it off")
    return RenewalService(registry, issuers, templates, default, clock, broker=broker,
                          approvals=config.approvals.policy)


def policy_evaluator(config: CollectorConfig, registry: Registry, clock: Callable[[], dt.datetime],
                     on_new_violation: Callable[[Any], Any] | None = None) -> PolicyEvaluator:
    """The [policy] table: the policy file and the evaluation interval."""
    return PolicyEvaluator(registry, config.policy, clock, on_new_violation)


def audit_key_path(config: CollectorConfig) -> pathlib.Path:
    """``[audit] key_file``, against the config file's folder; default ``<data_dir>/audit.key``."""
    if not config.audit.key_file:
        return config.data_dir / "audit.key"
    p = pathlib.Path(config.audit.key_file)
    return p if p.is_absolute() else config.base_dir / p


def key_audit(config: CollectorConfig, registry: Registry, now: dt.datetime) -> None:
    """Key the audit chain from here on. The first time this collector has the key (no marker file
    beside it, which the database cannot fake) a cut-over event is recorded unless the chain has one;
    later starts never record one, so a chain made unkeyed with database access stays broken."""
    path = audit_key_path(config)
    marker = path.with_name(path.name + ".cutover")
    seq = registry.use_audit_key(load_or_create_audit_key(path), now, cut_over=not marker.exists())
    if not marker.exists():
        marker.write_text(f"audit chain keyed; cut-over event: {seq or 'already in the chain'}\n")
        if seq:
            log.info("audit chain keyed from event %d on (the cut-over)", seq)


def prepare(config: CollectorConfig, clock: Callable[[], dt.datetime] = utcnow) -> CollectorState:
    """Create the data directory, the CA and server identity on first start, open the registry."""
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    config.pki_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = clock()
    registry = Registry.open(config.database_url)
    try:
        # the collector CA is the registry's (wrapped with the KEK): every collector on it is one CA
        ca = load_or_create_shared(registry.issuer_state, load_key_wrapper(config.keys, config.data_dir,
                                                                           config.base_dir), config.pki_dir, now)
        cert_path, key_path = ca.server_identity(config.pki_dir, list(config.server_names), now)
        key_audit(config, registry, now)
        renewal = build_renewal(config, registry, clock)
        autorenew = build_autorenewer(config, registry, renewal, clock)
        policy_evaluator(config, registry, clock).load_file()   # [policy] file, when it changed
    except BaseException:
        registry.close()
        raise
    return CollectorState(
        config=config, registry=registry, ca=ca,
        server_cert_pem=cert_path.read_bytes(), server_key_pem=key_path.read_bytes(), renewal=renewal,
        autorenew=autorenew,
    )


class CollectorServer:
    def __init__(self, state: CollectorState, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.state = state
        self.clock = clock
        cfg = state.config
        auth = Authenticator(state.registry)
        self.hub = AgentHub()
        self.notifier = Notifier(state.registry, cfg.notify, clock)
        # a new violation on a production certificate tells its owner; without a channel, nothing happens
        on_new_violation = self.notifier.on_new_violation if self.notifier.enabled else None
        options = [
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
            *GRPC_OPTIONS,
        ]
        # [metrics]: one prometheus_client registry per process; the recorder goes to the services
        self.prom: CollectorRegistry | None = None
        self.recorder: Recorder = NULL
        self.refreshed: list[tuple[Refreshed, float]] = []     # computed in the background, served by scrapes
        interceptors: list[grpc.aio.ServerInterceptor] = []
        if cfg.metrics.enabled:
            disable_created_metrics()     # no *_created series: they double the counters' series for nothing
            self.prom = CollectorRegistry()
            self.recorder = PromRecorder(self.prom)
            interceptors.append(CallMetrics(self.prom))
            expiry, owners = expiry_counts(state.registry, clock), owner_counts(state.registry, clock)
            violations = violation_counts(state.registry)
            self.refreshed = [(expiry, cfg.metrics.refresh), (violations, cfg.metrics.refresh),
                              (owners, cfg.metrics.owner_refresh)]
            self.prom.register(FleetCollector(
                state.registry, silent_after=cfg.notify.agent_silent_after, connected=lambda: len(self.hub.connected()),
                expiry=expiry, owners=owners, violations=violations, recorder=self.recorder, clock=clock,
                instance=lambda: self.scheduler.instance_id if getattr(self, "scheduler", None) else None))
            watch_engine(state.registry.engine, self.recorder)
        self.notifier.recorder = self.recorder
        if state.renewal is not None:
            state.renewal.recorder = self.recorder
        inventory = Inventory(state.registry, clock, on_new_violation)
        inventory.recorder = self.recorder
        lifetime = dt.timedelta(seconds=cfg.agent_cert_lifetime)
        enrollment = Enrollment(state.registry, state.ca, lifetime, clock)
        self.policy = policy_evaluator(cfg, state.registry, clock, on_new_violation)
        self.retention = AuditRetention(state.registry, cfg.audit, clock)
        self.checkpoints = AuditCheckpointer(state.registry, state.ca.sign, state.ca.fingerprint_sha256, clock)
        self.approvals = ApprovalService(state.registry, clock, self.notifier, cfg.approvals.notify_owner)
        self.main = grpc.aio.server(options=options, interceptors=interceptors)
        add_main_services(
            self.main,
            agents=AgentServicer(auth, inventory,
                                 AgentSessions(state.registry, clock, state.renewal), enrollment, hub=self.hub,
                                 limits=cfg.limits),
            admin=AdminServicer(state.registry, state.ca, auth, cfg.enroll_endpoint, cfg.token_ttl, clock,
                                renewal=state.renewal, hub=self.hub, approvals=self.approvals),
            audit=AuditServicer(state.registry, auth, clock),
            governance=GovernanceServicer(state.registry, auth, clock),
            policy=PolicyServicer(state.registry, auth, clock, on_new_violation),
            reports=ReportServicer(state.registry, auth, clock),
            notify=NotifyServicer(self.notifier, auth, clock),
            netscan=DiscoveryServicer(state.registry, auth, clock, hub=self.hub,
                                      allowed_ranges=cfg.netscan.allowed_ranges),
        )
        self.enroll = grpc.aio.server(options=[("grpc.max_receive_message_length", ENROLL_MAX_MESSAGE),
                                               ("grpc.max_send_message_length", MAX_MESSAGE), *GRPC_OPTIONS],
                                      interceptors=interceptors)
        add_enrollment_service(self.enroll, EnrollmentServicer(
            enrollment, cfg.agent_endpoint, per_minute=cfg.limits.enroll_per_minute, burst=cfg.limits.enroll_per_minute))
        pair = [(state.server_key_pem, state.server_cert_pem)]
        main_creds = grpc.ssl_server_credentials(pair, root_certificates=state.ca.cert_pem, require_client_auth=True)
        self.main_port = bind(lambda a: self.main.add_secure_port(a, main_creds), cfg.listen, "listen")
        enroll_creds = grpc.ssl_server_credentials(pair)
        self.enroll_port = bind(lambda a: self.enroll.add_secure_port(a, enroll_creds), cfg.enroll_listen,
                                "enroll_listen")

    async def start(self) -> None:
        if self.state.renewal is not None:
            loop = asyncio.get_running_loop()
            self.state.renewal.broker.set_notifier(lambda agent_id: loop.call_soon_threadsafe(self.hub.notify, agent_id))
        await self.main.start()
        await self.enroll.start()
        self.crl_listener = None
        listen = self.state.config.crl.get("listen")
        if listen and self.state.renewal is not None:
            host, port = split_hostport(listen, "[crl] listen")
            self.crl_listener = CrlListener(host, port, self.state.renewal.issuers, self.clock)
            self.crl_listener.start()
        self.scheduler = self.build_scheduler()
        self.scheduler.start()
        self.metrics_server: MetricsServer | None = None
        self.metrics_port: int | None = None
        if self.prom is not None:
            host, port = self.state.config.metrics.host_port()
            self.metrics_server = MetricsServer(self.prom, host, port, self.state.config.metrics.token())
            self.metrics_server.start()
            self.metrics_port = self.metrics_server.port
            self._refresh_tasks = [asyncio.create_task(self._refresh(part, every)) for part, every in self.refreshed]
            log.info("metrics on http://%s:%d/metrics%s", host, self.metrics_port,
                     " (bearer token)" if self.state.config.metrics.bearer_token_file else "")
        log.info(
            "collector listening: agents/admin on %s (mutual TLS), enrollment on %s; CA fingerprint %s",
            self.state.config.listen, self.state.config.enroll_listen, self.state.ca.fingerprint_sha256,
        )

    #: the stuck-job sweep's interval (seconds)
    SWEEP_INTERVAL = 30.0

    def build_scheduler(self) -> Scheduler:
        """The periodic work, each run once across the collectors on this database (collector/server/scheduler.py).

        Leases are timed by the wall clock (the scheduler fires in real time), whatever ``clock`` the
        jobs use. Silent agents are part of the notification run (Notifier.agent_notices).
        """
        sched = Scheduler(self.state.registry)
        sched.recorder = self.recorder
        if self.state.renewal is not None:
            # jobs past their deadline become stuck, visibly, whichever collector notices first
            sched.add("renewal.sweep", self.state.renewal.sweep, self.SWEEP_INTERVAL)
        auto = self.state.autorenew
        if auto is not None:
            loop = asyncio.get_running_loop()
            auto.notify = lambda agent_id: loop.call_soon_threadsafe(self.hub.notify, agent_id)
            sched.add("renewal.auto", auto.run_once, auto.check_interval)
        # approvals past their expiry end expired; approvers are told of pending ones (issue 11)
        sched.add("approvals.sweep", self.approvals.sweep, self.SWEEP_INTERVAL)
        # network scans whose agent went quiet fail visibly (collector/domain/netscan.py overdue)
        sched.add("netscan.sweep", self.sweep_scans, self.SWEEP_INTERVAL)
        sched.add("policy.evaluate", self.policy.run_once, self.policy.settings.evaluate_interval.total_seconds())
        # without a channel, notices would be claimed and never told: the notifier waits for one
        if self.notifier.enabled:
            sched.add("notify.run", self.notifier.run_once, self.notifier.settings.interval.total_seconds())
        sched.add("audit.retention", self.retention.run_once, self.retention.settings.purge_interval.total_seconds())
        sched.add("audit.checkpoint", self.checkpoints.run_once, self.state.config.audit.checkpoint_interval.total_seconds())
        return sched

    def sweep_scans(self) -> int:
        failed = self.state.registry.discovery.fail_overdue(self.clock())
        for scan in failed:
            log.warning("network scan %s on agent %s failed: %s", scan.scan_id, scan.agent_id, scan.reason)
        return len(failed)

    async def _refresh(self, part: Refreshed, every: float) -> None:
        """The expiry windows and the owner breakdown: recounted in a thread every ``every`` seconds
        (collector/metrics/fleet.py); the scrapes serve the last counts."""
        while True:
            try:
                await asyncio.to_thread(part.refresh)
            except Exception as e:  # noqa: BLE001 - the next round tries again
                log.warning("metrics: computing %s failed: %s", part.part, e)
                self.recorder.db_error(type(e).__name__)
            await asyncio.sleep(every)

    async def stop(self, grace: float = 5.0) -> None:
        if getattr(self, "crl_listener", None) is not None:
            await asyncio.to_thread(self.crl_listener.stop)
        if getattr(self, "scheduler", None) is not None:
            await self.scheduler.shutdown()
        if getattr(self, "metrics_server", None) is not None:
            for task in self._refresh_tasks:
                task.cancel()
            self.metrics_server.stop()
        await asyncio.gather(self.main.stop(grace), self.enroll.stop(grace))


async def serve(config: CollectorConfig, ready: Callable[[CollectorServer], None] | None = None) -> None:
    state = await asyncio.to_thread(prepare, config)
    try:
        server = CollectorServer(state)     # binds its addresses: ConfigError naming one in use
    except BaseException:
        state.registry.close()
        raise
    await server.start()
    if ready:
        ready(server)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        log.info("stopping")
    finally:
        await server.stop()
        state.registry.close()
