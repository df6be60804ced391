"""ACME (RFC 8555) issuer, on certbot's ``acme`` package.

Flow of :meth:`AcmeIssuer.issue`: the common checks (CSR signature, key type,
names against the template), then a new order for the names, one challenge per
pending authorization through a :class:`ChallengeSolver`, finalization with the
**agent-made CSR**, polling until the certificate is ready (``order_timeout``),
download of the full chain, split into leaf + intermediates (+ root when the
server sends it).

The agent's CSR must carry every requested name as a subjectAltName (DNS
names, IP addresses) and, if it has a CN, one of those names: ACME CAs issue
for the CSR's names only, so a CSR whose names differ from the request is
refused before contacting the server.

The ACME CA chooses validity, key usage and extended key usage itself
(``applies_template_profile = False``); the template still decides which names
may be requested and which key the CSR must have.

Account: an EC P-256 key in ``<data_dir>/issuers/<name>/account.key`` (0600),
made once. The account is found again by that key (``newAccount`` answers with
the existing account), so the registration is reused across restarts and by
every collector sharing the directory; ``account.json`` records its URL. Run by the collector
server, the key is the registry's instead (``shared_key``: wrapped with the KEK,
collector/issuers/ca_registry.py): one account per issuer per registry, whichever collector
registers first; an ``account.key`` left by an older collector is imported.

Config (``[issuers.<name>]``, ``type = "acme"``)::

    directory_url = "https://acme-v02.api.letsencrypt.org/directory"
    ca_bundle = ""                 # PEM file to verify the ACME server's TLS (default: system store)
    email = "pki@example.com"      # account contact (optional)
    eab_kid = ""                   # external account binding, when the CA requires it
    eab_hmac_key_file = ""         #   the base64url HMAC key, read from this file (0600)
    challenge = "http-01"          # or "dns-01"
    http01_listen = "127.0.0.1:80" # http-01 answered by a responder on the collector host;
                                   # without it, the collector passes a solver (the agent serves it)
    dns01_hook = ["/usr/local/bin/dns-hook", "--zone", "example.com"]   # argument list, no shell
    dns01_timeout = "60s"          # per hook run
    dns01_propagation_wait = "0s"  # wait after publishing a TXT record
    order_timeout = "120s"         # challenge validation + finalization
    network_timeout = "30s"        # one HTTP request

The challenge solvers (http-01 on the collector host or through the agent, dns-01
through a hook) are in :mod:`collector.issuers.solvers`.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import josepy as jose
import requests
from acme import challenges
from acme import client as acme_client
from acme import errors as acme_errors
from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from collector.domain.templates import SubjectNames, Template, TemplateConfigError
from collector.errors import IssuerError, IssuerUnavailable
from collector.issuers.base import Issued, RevocationReason, prepare_request, utc
from collector.issuers.settings import check_keys, config_duration, config_path, issuer_error, split_listen
from collector.issuers.solvers import ChallengeSolver, Dns01HookSolver, StandaloneHttp01Solver
from collector.pki import write_private_file, write_public_file

log = logging.getLogger(__name__)

ACCOUNT_KEY_FILE = "account.key"
ACCOUNT_FILE = "account.json"
DEFAULT_ORDER_TIMEOUT = dt.timedelta(seconds=120)
DEFAULT_NETWORK_TIMEOUT = dt.timedelta(seconds=30)
DEFAULT_HOOK_TIMEOUT = dt.timedelta(seconds=60)

CONFIG_KEYS = {
    "type", "directory_url", "ca_bundle", "email", "eab_kid", "eab_hmac_key_file", "challenge",
    "http01_listen", "dns01_hook", "dns01_timeout", "dns01_propagation_wait", "order_timeout",
    "network_timeout",
}


# ---------------------------------------------------------------------------
# the issuer


class AcmeIssuer:
    """An RFC 8555 CA; implements :class:`~collector.issuers.base.Issuer`."""

    applies_template_profile = False

    def __init__(
        self,
        name: str,
        directory_url: str,
        state_dir: Path,
        solver: ChallengeSolver,
        *,
        ca_bundle: Path | None = None,
        email: str | None = None,
        eab_kid: str | None = None,
        eab_hmac_key: str | None = None,
        order_timeout: dt.timedelta = DEFAULT_ORDER_TIMEOUT,
        network_timeout: dt.timedelta = DEFAULT_NETWORK_TIMEOUT,
        user_agent: str = "certfleet",
        shared_key: Callable[[Callable[[], Any], Path], Any] | None = None,
    ) -> None:
        if not directory_url.startswith(("https://", "http://")):
            raise TemplateConfigError(f"issuer {name!r}: directory_url must be an https:// URL")
        if getattr(solver, "challenge_type", None) not in ("http-01", "dns-01"):
            raise TemplateConfigError(f"issuer {name!r}: the challenge solver must handle http-01 or dns-01")
        if (eab_kid is None) != (eab_hmac_key is None):
            raise TemplateConfigError(f"issuer {name!r}: eab_kid and eab_hmac_key_file go together")
        self.name = name
        self.directory_url = directory_url
        self.state_dir = Path(state_dir)
        self.solver = solver
        self.ca_bundle = Path(ca_bundle) if ca_bundle else None
        self.email = email or None
        self._eab = (eab_kid, eab_hmac_key) if eab_kid else None
        self.order_timeout = order_timeout
        self.network_timeout = network_timeout
        self.user_agent = user_agent
        self._lock = threading.Lock()
        # the registry's account key (one account per issuer per registry): (make, old file) -> key
        self.shared_key = shared_key
        self._account: tuple[jose.JWKEC, messages.Directory, messages.RegistrationResource] | None = None

    def __repr__(self) -> str:
        return f"AcmeIssuer(name={self.name!r}, directory_url={self.directory_url!r}, challenge={self.solver.challenge_type})"

    @classmethod
    def from_config(
        cls, name: str, cfg: Mapping[str, Any], data_dir: Path, base_dir: Path | None = None,
        solver: ChallengeSolver | None = None, shared_key: Callable[[Callable[[], Any], Path], Any] | None = None,
    ) -> "AcmeIssuer":
        check_keys(name, cfg, CONFIG_KEYS)
        base = Path(base_dir) if base_dir is not None else Path(data_dir)
        url = cfg.get("directory_url")
        if not isinstance(url, str) or not url:
            raise issuer_error(cfg, f"issuer {name!r}: directory_url is required")
        if not url.startswith(("https://", "http://")):
            raise issuer_error(cfg, f"issuer {name!r}: directory_url must be an https:// URL", "directory_url")
        challenge = str(cfg.get("challenge", "http-01"))
        if challenge not in ("http-01", "dns-01"):
            raise issuer_error(cfg, f"issuer {name!r}: challenge must be \"http-01\" or \"dns-01\"", "challenge")
        if solver is None:
            if challenge == "http-01":
                listen = cfg.get("http01_listen")
                if not listen:
                    raise issuer_error(
                        cfg, f"issuer {name!r}: http-01 needs http01_listen (a responder on the collector host) "
                             "or a solver given by the collector (the agent serves the challenge)"
                    )
                host, port = split_listen(name, "http01_listen", str(listen), cfg)
                solver = StandaloneHttp01Solver(host, port)
            else:
                hook = cfg.get("dns01_hook")
                if not isinstance(hook, list) or not hook or not all(isinstance(a, str) and a for a in hook):
                    raise issuer_error(
                        cfg, f"issuer {name!r}: dns-01 needs dns01_hook, an argument list such as "
                             "[\"/usr/local/bin/hook\"]", "dns01_hook"
                    )
                solver = Dns01HookSolver(
                    hook,
                    timeout=config_duration(name, cfg, "dns01_timeout", DEFAULT_HOOK_TIMEOUT).total_seconds(),
                    propagation_wait=_wait(name, cfg),
                )
        eab_kid = cfg.get("eab_kid") or None
        eab_key = None
        key_file = config_path(cfg, "eab_hmac_key_file", base)
        if key_file is not None:
            try:
                eab_key = key_file.read_text().strip()
            except OSError as e:
                raise issuer_error(cfg, f"issuer {name!r}: cannot read {key_file}: {e.strerror}",
                                   "eab_hmac_key_file") from None
        return cls(
            name, url, Path(data_dir) / "issuers" / name, solver,
            ca_bundle=config_path(cfg, "ca_bundle", base),
            email=cfg.get("email") or None,
            eab_kid=eab_kid, eab_hmac_key=eab_key,
            order_timeout=config_duration(name, cfg, "order_timeout", DEFAULT_ORDER_TIMEOUT),
            network_timeout=config_duration(name, cfg, "network_timeout", DEFAULT_NETWORK_TIMEOUT),
            shared_key=shared_key,
        )

    # -- account ----------------------------------------------------------------

    def _account_key(self) -> jose.JWKEC:
        if self.shared_key is not None:
            self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)   # account.json (the URL) goes there
            # kept in the registry, wrapped; an account.key of a collector from before is imported
            key = self.shared_key(lambda: ec.generate_private_key(ec.SECP256R1()), self.state_dir / ACCOUNT_KEY_FILE)
            return jose.JWKEC(key=key)
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.state_dir / ACCOUNT_KEY_FILE
        if not path.exists():
            key = ec.generate_private_key(ec.SECP256R1())
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            try:
                write_private_file(path, pem, replace=False)
            except FileExistsError:
                pass  # another collector made it first: use theirs
        try:
            if os.name == "posix" and os.stat(path).st_mode & 0o077:
                raise IssuerError(f"{path}: an ACME account key must be readable by its owner only (chmod 600 {path})")
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except OSError as e:
            raise IssuerError(f"{path}: cannot read: {e.strerror}") from None
        except (ValueError, TypeError):
            raise IssuerError(f"{path}: not an unencrypted PEM private key") from None
        if not isinstance(loaded, ec.EllipticCurvePrivateKey) or loaded.curve.name != "secp256r1":
            raise IssuerError(f"{path}: the ACME account key must be EC P-256")
        return jose.JWKEC(key=loaded)

    def _net(self, key: jose.JWKEC, account: messages.RegistrationResource | None) -> acme_client.ClientNetwork:
        verify: bool | str = str(self.ca_bundle) if self.ca_bundle else True
        return _Network(
            key, account=account, alg=jose.ES256, verify_ssl=verify,  # type: ignore[arg-type]  # requests takes a CA path
            user_agent=self.user_agent, timeout=int(self.network_timeout.total_seconds()),
        )

    def _connect(self) -> acme_client.ClientV2:
        """A new client for one operation, with the registered account.

        The account (made, or found by its key) and the directory are looked up
        once and cached; each call gets its own network object, so concurrent
        issuances share no nonces or sessions.
        """
        with self._lock:
            if self._account is None:
                key = self._account_key()
                net = self._net(key, None)
                directory = acme_client.ClientV2.get_directory(self.directory_url, net)
                client = acme_client.ClientV2(directory, net)
                extra: dict[str, Any] = {}
                if self._eab is not None:
                    extra["external_account_binding"] = messages.ExternalAccountBinding.from_data(
                        account_public_key=key.public_key(), kid=self._eab[0], hmac_key=self._eab[1],
                        directory=directory,
                    )
                reg = messages.NewRegistration.from_data(email=self.email, terms_of_service_agreed=True, **extra)
                try:
                    regr = client.new_account(reg)
                except acme_errors.ConflictError as e:  # the key already has an account: reuse it
                    regr = client.query_registration(
                        messages.RegistrationResource(uri=e.location, body=messages.Registration())
                    )
                write_public_file(
                    self.state_dir / ACCOUNT_FILE,
                    json.dumps({"directory_url": self.directory_url, "account_url": regr.uri}, indent=2).encode()
                    + b"\n",
                    mode=0o600,
                )
                self._account = (key, directory, regr)
            key, directory, regr = self._account
        return acme_client.ClientV2(directory, self._net(key, regr))

    def account_url(self) -> str:
        """The account's URL at the CA (registers on first call)."""
        with self._errors("register an account"):
            client = self._connect()
        return client.net.account.uri  # type: ignore[union-attr]

    # -- issuing ------------------------------------------------------------------

    def issue(self, csr_der: bytes, template: Template, names: SubjectNames, now: dt.datetime) -> Issued:
        csr = prepare_request(self.name, csr_der, template, names)
        in_csr = SubjectNames.from_csr(csr)
        if set(in_csr.dns) != set(names.dns) or set(in_csr.ips) != set(names.ips):
            raise IssuerError(
                "an ACME CA issues for the names in the CSR: the agent's CSR must carry exactly the requested "
                f"names as subjectAltNames; requested {', '.join(names.all())}, the CSR has "
                f"{', '.join(in_csr.all()) or 'none'}"
            )
        csr_pem = csr.public_bytes(serialization.Encoding.PEM)
        for attempt in (1, 2):
            try:
                with self._errors("issue a certificate"):
                    fullchain = self._order(csr_pem)
                break
            except _AccountGone:
                # The CA forgot the account (a test CA restarted, an account deactivated): register again.
                with self._lock:
                    self._account = None
                if attempt == 2:
                    raise IssuerError(f"the ACME server at {self.directory_url} does not accept the account") from None
        return _split_chain(fullchain, csr)

    def _order(self, csr_pem: bytes) -> str:
        client = self._connect()
        order = client.new_order(csr_pem)
        account_key = client.net.key
        presented: list[tuple[str, str, str]] = []
        try:
            for authzr in order.authorizations:
                if authzr.body.status == messages.STATUS_VALID:
                    continue
                domain = authzr.body.identifier.value
                challb = next(
                    (c for c in authzr.body.challenges if c.chall.typ == self.solver.challenge_type), None
                )
                if challb is None:
                    offered = ", ".join(sorted({c.chall.typ for c in authzr.body.challenges})) or "none"
                    wildcard = " (wildcard names need dns-01)" if authzr.body.wildcard else ""
                    raise IssuerError(
                        f"the ACME server offers no {self.solver.challenge_type} challenge for {domain}"
                        f"{wildcard}; it offers: {offered}"
                    )
                chall = challb.chall
                assert isinstance(chall, challenges.KeyAuthorizationChallenge)
                token = chall.encode("token")
                key_authorization = chall.key_authorization(account_key)
                self.solver.present(token, key_authorization, domain)
                presented.append((token, key_authorization, domain))
                client.answer_challenge(challb, chall.response(account_key))
            deadline = dt.datetime.now() + self.order_timeout  # the acme package compares naive local times
            order = client.poll_and_finalize(order, deadline)
        finally:
            for token, key_authorization, domain in presented:
                try:
                    self.solver.cleanup(token, key_authorization, domain)
                except Exception:  # noqa: BLE001 - a stale challenge is harmless; the issuance stands
                    log.warning("cleaning up the %s challenge for %s failed", self.solver.challenge_type, domain,
                                exc_info=True)
        if not order.fullchain_pem:
            raise IssuerError("the ACME server finished the order without a certificate")
        return order.fullchain_pem

    # -- revocation ---------------------------------------------------------------

    def revoke(self, certificate_der: bytes, reason: RevocationReason, now: dt.datetime) -> None:
        """Revoke with this issuer's account; revoking twice is harmless.

        ACME has no certificate hold: ``certificateHold`` and ``removeFromCRL``
        are refused. The CA may refuse other reasons (Let's Encrypt accepts
        unspecified, keyCompromise, affiliationChanged, superseded,
        cessationOfOperation).
        """
        reason = RevocationReason.parse(reason)
        utc(now)
        if reason in (RevocationReason.certificate_hold, RevocationReason.remove_from_crl):
            raise IssuerError("ACME revocation is permanent: certificateHold and removeFromCRL are not available")
        try:
            cert = x509.load_der_x509_certificate(bytes(certificate_der))
        except ValueError:
            raise IssuerError("not a DER X.509 certificate") from None
        for attempt in (1, 2):
            try:
                with self._errors("revoke the certificate"):
                    try:
                        self._connect().revoke(cert, int(reason))
                    except messages.Error as e:
                        if e.code == "alreadyRevoked":
                            return
                        raise
                return
            except _AccountGone:
                with self._lock:
                    self._account = None
                if attempt == 2:
                    raise IssuerError(f"the ACME server at {self.directory_url} does not accept the account") from None

    # -- errors ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn the acme package's and requests' exceptions into user-safe IssuerErrors."""
        try:
            yield
        except (IssuerError, _AccountGone):
            raise
        except acme_errors.ValidationError as e:
            parts = []
            for authzr in e.failed_authzrs:
                for c in authzr.body.challenges:
                    if c.error is not None:
                        parts.append(f"{authzr.body.identifier.value} ({c.chall.typ}): {_problem(c.error)}")
            raise IssuerError("the ACME server could not validate " + ("; ".join(parts) or "the names")) from None
        except acme_errors.TimeoutError:
            raise IssuerUnavailable(
                f"the ACME server did not finish the order within {self.order_timeout.total_seconds():g}s"
            ) from None
        except acme_errors.IssuanceError as e:
            raise IssuerError(f"the ACME server did not issue: {_problem(e.error)}") from None
        except messages.Error as e:
            if e.code == "accountDoesNotExist":
                raise _AccountGone() from None
            if e.code in RETRYABLE_PROBLEMS:     # worth trying again later: the job's backoff
                raise IssuerUnavailable(f"the ACME server could not {action} now: {_problem(e)}") from None
            raise IssuerError(f"the ACME server refused to {action}: {_problem(e)}") from None
        except requests.exceptions.SSLError:
            raise IssuerError(
                f"cannot verify the TLS certificate of {self.directory_url}: set ca_bundle to the CA that "
                "signed the ACME server's certificate"
            ) from None
        except requests.RequestException as e:
            raise IssuerUnavailable(f"cannot reach the ACME server at {self.directory_url}: {type(e).__name__}") from None
        except acme_errors.Error as e:
            log.warning("ACME error while trying to %s", action, exc_info=True)
            raise IssuerError(f"ACME error while trying to {action}: {_short(str(e) or type(e).__name__)}") from None


class _AccountGone(Exception):
    """The CA does not know the cached account any more."""


#: ACME problem types (RFC 8555 section 6.7) that say "not now" rather than "no": the job is
#: retried with its backoff, as for an unreachable server
RETRYABLE_PROBLEMS = frozenset({"badNonce", "rateLimited", "serverInternal"})
#: how many times one request is sent when the server rejects its nonce (each rejection carries
#: a fresh nonce; RFC 8555 section 6.5: the client should retry)
BAD_NONCE_TRIES = 8


class _Network(acme_client.ClientNetwork):
    """The acme package's network, retrying a request the server refused for its nonce
    (``badNonce``) up to :data:`BAD_NONCE_TRIES` times instead of once."""

    def post(self, *args: Any, **kwargs: Any) -> Any:
        for attempt in range(1, BAD_NONCE_TRIES + 1):
            try:
                return self._post_once(*args, **kwargs)
            except messages.Error as e:
                if e.code != "badNonce" or attempt == BAD_NONCE_TRIES:
                    raise
                log.debug("ACME badNonce (attempt %d of %d); sending again with a fresh nonce", attempt,
                          BAD_NONCE_TRIES)
        raise AssertionError("unreachable")


def _problem(err: Any) -> str:
    detail = getattr(err, "detail", None) or getattr(err, "description", None) or ""
    code = getattr(err, "code", None) or ""
    text = f"{detail} ({code})" if detail and code else (detail or code or str(err))
    return _short(text)


def _short(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _split_chain(fullchain_pem: str, csr: x509.CertificateSigningRequest) -> Issued:
    try:
        certs = x509.load_pem_x509_certificates(fullchain_pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise IssuerError("the ACME server returned a certificate chain that does not parse") from None
    leaf, rest = certs[0], certs[1:]
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if leaf.public_key().public_bytes(*fmt) != csr.public_key().public_bytes(*fmt):
        raise IssuerError("the ACME server returned a certificate for a different key than the CSR's")
    root: x509.Certificate | None = None
    if rest and rest[-1].subject == rest[-1].issuer:
        try:
            rest[-1].verify_directly_issued_by(rest[-1])
            root = rest.pop()
        except Exception:  # noqa: BLE001 - same names but not self-signed: an intermediate
            pass
    der = serialization.Encoding.DER
    return Issued(
        certificate_der=leaf.public_bytes(der),
        chain_ders=tuple(c.public_bytes(der) for c in rest),
        root_der=root.public_bytes(der) if root is not None else None,
        not_after=leaf.not_valid_after_utc,
        serial=format(leaf.serial_number, "x"),
    )


def _wait(name: str, cfg: Mapping[str, Any]) -> float:
    if cfg.get("dns01_propagation_wait") in (None, 0, "0", "0s"):
        return 0.0
    return config_duration(name, cfg, "dns01_propagation_wait", dt.timedelta(0)).total_seconds()
