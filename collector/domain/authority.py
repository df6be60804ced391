"""Who may hold which name: name grants, host allows and the one authorization decision.

Pure functions of the facts (no I/O, no clock); the registry keeps the grants and allows
(collector/registry/authority.py), the services feed them here (collector/services/authority.py).

- A **grant** gives an owner (a team) a name pattern: an exact DNS name (``api.example.com``),
  a wildcard (``*.shop.example.com``: one label under it; ``**.shop.example.com``: any depth,
  and ``shop.example.com`` itself), or an address grant (``10.0.0.5``, ``10.1.0.0/16``).
- An **allow** says which agents may receive a pattern: by host name glob (on the name recorded
  at enrollment, never the one the agent reports), by agent id, or by a collector-side label.
- **The decision**: names N to agent A are authorized iff every name in N is covered by a
  grant *and* by an allow whose hosts include A. An IP SAN is covered by address grants only,
  a DNS name by DNS patterns only; DNS names are compared in their A-label form (IDNA).
- The **owner** of a name is the owner of the grant that decides it: a grant marked ``wins``
  (an admin's choice between overlapping grants), else the most specific one. A certificate's
  owning team (for the owner role) is the team that holds all its names.
"""
from __future__ import annotations

import ipaddress
import re

from cryptography import x509
from cryptography.x509.oid import NameOID
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from collector.domain.globs import dns_matches
from collector.errors import InvalidInput

_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")

__all__ = ["Allow", "Decision", "Grant", "Host", "NameVerdict", "Pattern", "check_host_selector", "conflicts",
           "decide", "holder", "normalize_name", "owning_team", "parse_pattern", "to_alabel",
           "csr_names_differ"]


def to_alabel(name: str) -> str:
    """A DNS name (or wildcard pattern) in lower-case A-label form, without a trailing dot;
    InvalidInput with the reason when a label cannot be one."""
    text = (name or "").strip().rstrip(".")
    if not text:
        raise InvalidInput("an empty name is not a DNS name")
    out = []
    for label in text.split("."):
        if label in ("*", "**"):
            out.append(label)
            continue
        if not label.isascii():
            try:
                label = label.encode("idna").decode("ascii")
            except UnicodeError as e:
                raise InvalidInput(f"{name!r}: the label {label!r} has no IDNA A-label form ({e})") from None
        label = label.lower()
        if not _LABEL.match(label):
            raise InvalidInput(f"{name!r}: {label!r} is not a valid DNS label (letters, digits, '-', '_'; "
                               "at most 63; not starting or ending with '-')")
        out.append(label)
    return ".".join(out)


@dataclass(frozen=True)
class Pattern:
    """A parsed name pattern: ``kind`` is ``dns`` or ``ip``; ``text`` the canonical form."""

    kind: str
    text: str

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(self.text, strict=False)

    @property
    def wildcard(self) -> str:
        """"" (an exact name), "*" (one label) or "**" (any depth)."""
        first = self.text.split(".", 1)[0]
        return first if first in ("*", "**") else ""

    @property
    def suffix(self) -> str:
        return self.text.split(".", 1)[1] if self.wildcard else self.text

    def covers(self, name: str) -> bool:
        """Whether the name (A-label DNS name, a wildcard name, or an IP address) is covered."""
        if self.kind == "ip":
            try:
                addr = ipaddress.ip_address(name)
            except ValueError:
                return False
            net = self.network
            return addr.version == net.version and addr in net
        if _is_ip(name):
            return False
        if not self.wildcard:
            return name == self.text
        if self.wildcard == "**":
            return name == self.suffix or name.endswith("." + self.suffix)
        head, _, rest = name.partition(".")
        return bool(head) and rest == self.suffix

    def specificity(self) -> tuple[int, int]:
        """Larger is more specific: exact names beat wildcards, longer suffixes beat shorter."""
        if self.kind == "ip":
            return (2, self.network.prefixlen)
        rank = {"": 2, "*": 1, "**": 0}[self.wildcard]
        return (rank, len(self.suffix.split(".")))

    def representative(self) -> str:
        """A name this pattern covers, to test overlaps with another pattern."""
        if self.kind == "ip":
            return str(self.network.network_address)
        return self.suffix if self.wildcard == "**" else self.text


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def parse_pattern(text: str) -> Pattern:
    """A grant's pattern, checked; InvalidInput saying why it is not a DNS pattern or address range."""
    raw = (text or "").strip()
    if not raw:
        raise InvalidInput("a name pattern must not be empty")
    if "/" in raw or _is_ip(raw) or raw.replace(":", "").isalnum() and ":" in raw:
        try:
            net = ipaddress.ip_network(raw, strict=True)
        except ValueError as e:
            raise InvalidInput(f"{raw!r} is not an address or address range: {e}") from None
        if net.prefixlen == 0:
            raise InvalidInput(f"{raw!r} would grant every address; name a smaller range")
        return Pattern("ip", str(net) if net.num_addresses > 1 else str(net.network_address))
    if any(("*" in label or "?" in label) and label not in ("*", "**") for label in raw.split(".")):
        raise InvalidInput(f"{raw!r}: a wildcard must be a whole label ('*' or '**'), not part of one")
    name = to_alabel(raw)
    labels = name.split(".")
    if any(label in ("*", "**") for label in labels[1:]):
        raise InvalidInput(f"{raw!r}: a wildcard may only be the leftmost label (e.g. '*.shop.example.com')")
    rest = labels[1:] if labels[0] in ("*", "**") else labels
    if labels[0] in ("*", "**") and len(rest) < 2:
        raise InvalidInput(f"{raw!r} would cover a whole top-level domain; name a domain under it")
    if not rest:
        raise InvalidInput(f"{raw!r} names no domain")
    return Pattern("dns", name)


def normalize_name(name: str) -> str:
    """A certificate's name as the decision compares it: an IP in canonical form, a DNS name as A-label."""
    text = (name or "").strip()
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return to_alabel(text)


@dataclass(frozen=True)
class Grant:
    """Owner ``owner`` holds ``pattern``; ``wins`` when an admin chose it over overlapping grants."""

    id: int
    owner: str
    pattern: str
    wins: bool = False
    created_by: str = field(default="", compare=False)
    source: str = field(default="", compare=False)

    @property
    def parsed(self) -> Pattern:
        return parse_pattern(self.pattern)


@dataclass(frozen=True)
class Allow:
    """Agents chosen by ``hosts`` (a glob on the recorded host name), ``agent_id`` or ``label``
    (``key=value``, collector-side) may receive names covered by ``pattern``."""

    id: int
    pattern: str
    hosts: str = ""
    agent_id: str = ""
    label: str = ""
    created_by: str = field(default="", compare=False)

    def includes(self, host: Host) -> bool:
        if self.agent_id:
            return host.agent_id == self.agent_id
        if self.label:
            key, _, value = self.label.partition("=")
            return str(host.labels.get(key, "")) == value and key in host.labels
        if self.hosts:
            return bool(host.name) and dns_matches(self.hosts, host.name, short_too=True)
        return False

    def describe(self) -> str:
        who = (f"agent {self.agent_id}" if self.agent_id else f"label {self.label}" if self.label
               else f"hosts {self.hosts}")
        return f"allow #{self.id} ({who} may receive {self.pattern})"


def check_host_selector(hosts: str, agent_id: str, label: str) -> None:
    """Exactly one of the three must be given; a label must be ``key=value``."""
    given = [x for x in (hosts, agent_id, label) if x]
    if len(given) != 1:
        raise InvalidInput("name exactly one of --hosts GLOB, --agent ID or --label KEY=VALUE")
    if label and ("=" not in label or not label.partition("=")[0]):
        raise InvalidInput(f"a label selector is KEY=VALUE, not {label!r}")


@dataclass(frozen=True)
class Host:
    """An agent as authorization sees it: its id, the name recorded at enrollment (or set by an
    admin's rename) and its collector-side labels. Never what the agent reports."""

    agent_id: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NameVerdict:
    name: str
    grant: Grant | None
    allow: Allow | None
    reason: str

    @property
    def ok(self) -> bool:
        return self.grant is not None and self.allow is not None


@dataclass(frozen=True)
class Decision:
    """The answer for names N to host A: ``authorized`` iff every name's verdict is ok."""

    host: Host
    verdicts: tuple[NameVerdict, ...]

    @property
    def authorized(self) -> bool:
        return bool(self.verdicts) and all(v.ok for v in self.verdicts)

    @property
    def reasons(self) -> list[str]:
        if not self.verdicts:
            return ["the request names nothing"]
        return [v.reason for v in self.verdicts if not v.ok]

    def explain(self) -> list[str]:
        return [v.reason for v in self.verdicts]


def holder(name: str, grants: Sequence[Grant]) -> Grant | None:
    """The grant that decides who holds ``name`` (normalized): a covering grant marked ``wins``,
    else the most specific covering one; None when no grant covers it."""
    covering = [g for g in grants if g.parsed.covers(name)]
    if not covering:
        return None
    return max(covering, key=lambda g: (g.wins, g.parsed.specificity(), -g.id))


def decide(names: Iterable[str], host: Host, grants: Sequence[Grant], allows: Sequence[Allow]) -> Decision:
    """Whether ``names`` may be issued to ``host``: every name needs a grant that covers it and an
    allow that covers it and includes the host. Each name gets a verdict saying which grant and
    allow decide, or why none does."""
    verdicts: list[NameVerdict] = []
    seen: set[str] = set()
    who = host.name or host.agent_id
    for raw in names:
        try:
            name = normalize_name(raw)
        except InvalidInput as e:
            verdicts.append(NameVerdict(str(raw), None, None, f"{raw}: {e}"))
            continue
        if name in seen:
            continue
        seen.add(name)
        grant = holder(name, grants)
        kind = "address" if _is_ip(name) else "name"
        if grant is None:
            extra = " (an IP address is authorized only by an address grant)" if kind == "address" else ""
            verdicts.append(NameVerdict(name, None, None, f"{name}: no grant covers this {kind}{extra}"))
            continue
        covering = [a for a in allows if parse_pattern(a.pattern).covers(name)]
        allow = next((a for a in sorted(covering, key=lambda a: a.id) if a.includes(host)), None)
        if allow is None:
            why = (f"{name}: held by {grant.owner} (grant #{grant.id} {grant.pattern}), but no allow lets "
                   f"{who} receive it")
            if covering:
                why += " (allowed to: " + ", ".join(a.describe() for a in covering[:3]) + ")"
            verdicts.append(NameVerdict(name, grant, None, why))
            continue
        verdicts.append(NameVerdict(name, grant, allow, f"{name}: held by {grant.owner} (grant #{grant.id} "
                                                        f"{grant.pattern}); {allow.describe()}"))
    return Decision(host, tuple(verdicts))


def owning_team(names: Iterable[str], grants: Sequence[Grant]) -> str | None:
    """The team that holds every one of ``names`` (None when a name is unheld or holders differ)."""
    owners = set()
    for raw in names:
        try:
            g = holder(normalize_name(raw), grants)
        except InvalidInput:
            return None
        if g is None:
            return None
        owners.add(g.owner)
    return owners.pop() if len(owners) == 1 else None


def conflicts(pattern: Pattern, owner: str, grants: Sequence[Grant]) -> list[Grant]:
    """Grants of *other* owners whose patterns overlap ``pattern`` (some name matches both)."""
    out = []
    for g in grants:
        if g.owner == owner:
            continue
        other = g.parsed
        if other.kind != pattern.kind:
            continue
        if pattern.kind == "ip":
            if pattern.network.overlaps(other.network):
                out.append(g)
        elif pattern.covers(other.representative()) or other.covers(pattern.representative()):
            out.append(g)
    return out


def csr_names_differ(csr_der: bytes, job_names: Iterable[str]) -> str:
    """Why a CSR's names are not the job's ("" when they are, or when the CSR names nothing: the
    issued names always come from the job). A host that asks for more, fewer or other names than
    the job's is refused: what it may hold was decided on the job's names."""
    try:
        csr = x509.load_der_x509_csr(bytes(csr_der))
    except ValueError:
        try:
            csr = x509.load_pem_x509_csr(bytes(csr_der))
        except ValueError:
            return ""   # not a CSR: the issuer refuses it with its own reason
    asked: set[str] = set()
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        asked |= {str(v) for v in san.get_values_for_type(x509.DNSName)}
        asked |= {str(v) for v in san.get_values_for_type(x509.IPAddress)}
    except x509.ExtensionNotFound:
        pass
    for attr in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        value = str(attr.value).strip()
        if value and ("." in value or _is_ip(value)):
            asked.add(value)
    if not asked:
        return ""
    try:
        got = {normalize_name(n) for n in asked}
    except InvalidInput as e:
        return f"the CSR names something that is not a name: {e}"
    want = {normalize_name(n) for n in job_names}
    extra, missing = sorted(got - want), sorted(want - got)
    if not extra and not missing:
        return ""
    parts = []
    if extra:
        parts.append("asks for " + ", ".join(extra) + " which the job does not name")
    if missing:
        parts.append("leaves out " + ", ".join(missing))
    return "the CSR's names differ from the job's: " + "; ".join(parts)
