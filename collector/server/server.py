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
import signal
import socket
from dataclasses import dataclass
from typing import Any, Callable

import grpc

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
from collector.pki import CollectorCA
from collector.pki.shared import load_or_create_shared
from collector.registry import Registry
from collector.server.crl_http import CrlListener
from collector.server.scheduler import Scheduler
from collector.services.agent_session import AgentSessions
from collector.services.audit_retention import AuditRetention
from collector.services.autorenew import AutoRenewer, build_autorenewer
from collector.services.challenges import ChallengeBroker
from collector.services.enrollment import Enrollment
from collector.services.inventory import Inventory
from collector.services.notifier import Notifier
from collector.services.policy_runner import PolicyEvaluator
from collector.services.renewal import RenewalService

log = logging.getLogger(__name__)
MAX_MESSAGE = 32 * 1024 * 1024


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
    return RenewalService(registry, issuers, templates, default, clock, broker=broker)


def policy_evaluator(config: CollectorConfig, registry: Registry, clock: Callable[[], dt.datetime],
                     on_new_violation: Callable[[Any], Any] | None = None) -> PolicyEvaluator:
    """The [policy] table: the policy file and the evaluation interval."""
    return PolicyEvaluator(registry, config.policy, clock, on_new_violation)


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
        ]
        lifetime = dt.timedelta(seconds=cfg.agent_cert_lifetime)
        enrollment = Enrollment(state.registry, state.ca, lifetime, clock)
        self.policy = policy_evaluator(cfg, state.registry, clock, on_new_violation)
        self.retention = AuditRetention(state.registry, cfg.audit, clock)
        self.main = grpc.aio.server(options=options)
        add_main_services(
            self.main,
            agents=AgentServicer(auth, Inventory(state.registry, clock, on_new_violation),
                                 AgentSessions(state.registry, clock, state.renewal), enrollment, hub=self.hub),
            admin=AdminServicer(state.registry, state.ca, auth, cfg.enroll_endpoint, cfg.token_ttl, clock,
                                renewal=state.renewal, hub=self.hub),
            audit=AuditServicer(state.registry, auth, clock),
            governance=GovernanceServicer(state.registry, auth, clock),
            policy=PolicyServicer(state.registry, auth, clock, on_new_violation),
            reports=ReportServicer(state.registry, auth, clock),
            notify=NotifyServicer(self.notifier, auth, clock),
            netscan=DiscoveryServicer(state.registry, auth, clock, hub=self.hub),
        )
        self.enroll = grpc.aio.server(options=options)
        add_enrollment_service(self.enroll, EnrollmentServicer(enrollment, cfg.agent_endpoint))
        pair = [(state.server_key_pem, state.server_cert_pem)]
        self.main_port = self.main.add_secure_port(
            cfg.listen,
            grpc.ssl_server_credentials(pair, root_certificates=state.ca.cert_pem, require_client_auth=True),
        )
        self.enroll_port = self.enroll.add_secure_port(cfg.enroll_listen, grpc.ssl_server_credentials(pair))

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
        if self.state.renewal is not None:
            # jobs past their deadline become stuck, visibly, whichever collector notices first
            sched.add("renewal.sweep", self.state.renewal.sweep, self.SWEEP_INTERVAL)
        auto = self.state.autorenew
        if auto is not None:
            loop = asyncio.get_running_loop()
            auto.notify = lambda agent_id: loop.call_soon_threadsafe(self.hub.notify, agent_id)
            sched.add("renewal.auto", auto.run_once, auto.check_interval)
        # network scans whose agent went quiet fail visibly (collector/domain/netscan.py overdue)
        sched.add("netscan.sweep", self.sweep_scans, self.SWEEP_INTERVAL)
        sched.add("policy.evaluate", self.policy.run_once, self.policy.settings.evaluate_interval.total_seconds())
        # without a channel, notices would be claimed and never told: the notifier waits for one
        if self.notifier.enabled:
            sched.add("notify.run", self.notifier.run_once, self.notifier.settings.interval.total_seconds())
        sched.add("audit.retention", self.retention.run_once, self.retention.settings.purge_interval.total_seconds())
        return sched

    def sweep_scans(self) -> int:
        failed = self.state.registry.discovery.fail_overdue(self.clock())
        for scan in failed:
            log.warning("network scan %s on agent %s failed: %s", scan.scan_id, scan.agent_id, scan.reason)
        return len(failed)

    async def stop(self, grace: float = 5.0) -> None:
        if getattr(self, "crl_listener", None) is not None:
            await asyncio.to_thread(self.crl_listener.stop)
        if getattr(self, "scheduler", None) is not None:
            await self.scheduler.shutdown()
        await asyncio.gather(self.main.stop(grace), self.enroll.stop(grace))


async def serve(config: CollectorConfig, ready: Callable[[CollectorServer], None] | None = None) -> None:
    state = await asyncio.to_thread(prepare, config)
    server = CollectorServer(state)
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
