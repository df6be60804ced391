"""The local ``certfleet-agent scan`` output: a table for people, JSON for tools.

:func:`render_scan` scans (always reading every file) and writes the report.
The formatting functions are pure: they take the facts and an injected
``now`` and return text, so they are easy to test.
"""
from __future__ import annotations

import datetime as dt
import io
import json
import math
import textwrap
import warnings
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, TextIO

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from agent.config import AgentConfig
from agent.discovery.annotate import FileAnnotator
from agent.errors import AgentError
from agent.cli.rawnames import raw_names
from agent.cli.rowspool import RowSpool
from agent.inventory import FoundCert, ScanProblem
from agent.scan.scanner import ScanCounters, Scanner

__all__ = [
    "render_scan", "CertFacts", "cert_facts", "cert_row", "format_table", "format_json", "FORMATS",
]

FORMATS = ("table", "json")
TABLE_WIDTH = 100
SOON_DAYS = 30

_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
_UTC = dt.timezone.utc


@dataclass(frozen=True)
class CertFacts:
    """What a person wants to know about a certificate, parsed once per fingerprint."""

    subject: str                   # RFC 4514, most specific first ("CN=www.example.test,O=Example")
    common_name: str               # "" when the subject has none
    sans: tuple[str, ...]          # DNS names as is; others prefixed: "IP:...", "email:...", "URI:..."
    issuer: str
    not_before: dt.datetime | None
    not_after: dt.datetime | None
    key_type: str                  # RSA, EC, Ed25519, Ed448, DSA, or "?"
    key_size: int | None
    key_curve: str | None          # "P-256" ...
    serial: str
    error: str = ""                # set when the certificate could not be parsed
    warning: str = ""              # set when a part of it (its extensions...) could not be parsed


def cert_facts(der: bytes) -> CertFacts:
    """Parse ``der`` with cryptography; unparseable certificates get ``error`` set."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # old trust anchors with non-positive serials: shown, not warned about
        return _cert_facts(der)


def _cert_facts(der: bytes) -> CertFacts:
    warning = ""
    try:
        cert = x509.load_der_x509_certificate(der)
        try:
            subject, issuer, cn = cert.subject.rfc4514_string(), cert.issuer.rfc4514_string(), _cn(cert.subject)
        except ValueError:
            # a name cryptography refuses (a UTF8String that is not UTF-8): decoded here, with U+FFFD, and marked
            raw = raw_names(cert.tbs_certificate_bytes)
            if raw is None:
                raise
            subject, issuer, cn = raw.subject, raw.issuer, raw.common_name
            warning = ("has a subject or issuer with bytes that are not valid in their string type; "
                       "shown with \ufffd in their place")
        not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
        serial = format(cert.serial_number, "x")
    except Exception as e:  # noqa: BLE001 - any parse failure is reported, not raised
        return CertFacts("?", "?", (), "?", None, None, "?", None, None, "", f"cannot be parsed: {e}")
    sans: list[str] = []
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        for name in ext:
            if isinstance(name, x509.DNSName):
                sans.append(name.value)
            elif isinstance(name, x509.IPAddress):
                sans.append(f"IP:{name.value}")
            elif isinstance(name, x509.RFC822Name):
                sans.append(f"email:{name.value}")
            elif isinstance(name, x509.UniformResourceIdentifier):
                sans.append(f"URI:{name.value}")
    except x509.ExtensionNotFound:
        pass
    except x509.DuplicateExtension as e:
        warning = _also(warning, f"has the extension {e.oid.dotted_string} twice; its extensions (names) are not read")
    except Exception as e:  # noqa: BLE001 - untrusted input: a bad extension is reported, never raised
        warning = _also(warning, f"has extensions that cannot be parsed ({type(e).__name__}: {e}); "
                                 "its names are not read")
    key_type, size, curve = "?", None, None
    try:
        key = cert.public_key()
        if isinstance(key, rsa.RSAPublicKey):
            key_type, size = "RSA", key.key_size
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key_type, size, curve = "EC", key.curve.key_size, _CURVES.get(key.curve.name, key.curve.name)
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key_type, size = "Ed25519", 256
        elif isinstance(key, ed448.Ed448PublicKey):
            key_type, size = "Ed448", 456
        elif isinstance(key, dsa.DSAPublicKey):
            key_type, size = "DSA", key.key_size
    except Exception:  # noqa: BLE001 - unsupported key algorithms still get a row
        pass
    return CertFacts(subject, cn, tuple(sans), issuer, not_before, not_after, key_type, size, curve, serial,
                     warning=warning)


def _also(warning: str, more: str) -> str:
    return f"{warning}; and {more}" if warning else more


def _cn(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


def days_left(not_after: dt.datetime | None, now: dt.datetime) -> int | None:
    """Whole days until ``not_after`` (negative once expired)."""
    if not_after is None:
        return None
    return math.floor((not_after - _aware(now)).total_seconds() / 86400)


def _aware(now: dt.datetime) -> dt.datetime:
    return now if now.tzinfo is not None else now.replace(tzinfo=_UTC)


def cert_row(found: FoundCert, facts: CertFacts, now: dt.datetime, store: str = "") -> dict[str, Any]:
    """One certificate at one location as a JSON-ready dict."""
    k = found.key
    return {
        "subject": facts.subject,
        "common_name": facts.common_name,
        "sans": list(facts.sans),
        "issuer": facts.issuer,
        "not_before": _iso(facts.not_before),
        "not_after": _iso(facts.not_after),
        "days_left": days_left(facts.not_after, now),
        "not_yet_valid": facts.not_before is not None and facts.not_before > _aware(now),
        "names_repaired": "\ufffd" in facts.subject or "\ufffd" in facts.issuer,
        "key_type": facts.key_type,
        "key_size": facts.key_size,
        "key_curve": facts.key_curve,
        "serial": facts.serial,
        "path": k.path,
        "alias": k.alias,
        "chain_index": k.chain_index,
        "store_type": k.store_type,
        "store": store,
        "entry_type": found.entry_type,
        "has_private_key": found.has_private_key,
        "key_encrypted": found.key_encrypted,
        "key_match": found.key_match,
        "fingerprint_sha256": found.fingerprint,
        "file_owner": found.file_owner,
        "file_group": found.file_group,
        "file_mode": f"{found.file_mode:04o}",
        "labels": dict(found.labels),
        "role": found.role,
        "processes": [{
            "pid": p.pid, "name": p.name, "executable": p.executable, "user": p.user, "service": p.service,
            "listen": list(p.listen), "evidence": p.evidence, "config_path": p.config_path,
            "suggested_reload": p.suggested_reload,
        } for p in found.processes],
        "stale": None if found.stale is None else {
            "endpoint": found.stale.endpoint, "served_fingerprint": found.stale.served_fingerprint,
            "pid": found.stale.pid, "process_name": found.stale.process_name,
            "since": _iso(dt.datetime.fromtimestamp(found.stale.since, _UTC)),
        },
    }


def _iso(t: dt.datetime | None) -> str | None:
    return t.astimezone(_UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if t is not None else None


def problem_row(p: ScanProblem, store: str = "") -> dict[str, Any]:
    """A ScanProblem as a JSON-ready dict."""
    return {"store_type": p.store_type, "path": p.path, "alias": p.alias, "reason": p.reason,
            "message": p.message, "store": store}


def format_json(rows: list[dict[str, Any]] | RowSpool, problems: list[dict[str, Any]], counters: ScanCounters,
                hostname: str, now: dt.datetime) -> str:
    """The JSON report: ``certificates`` sorted by not_after, ``trust_anchors`` (entries of trust
    stores) apart, ``errors`` and a ``summary``."""
    out = io.StringIO()
    write_json(out, _spool(rows), problems, counters, hostname, now)
    return out.getvalue()


def write_json(out: TextIO, spool: RowSpool, problems: list[dict[str, Any]], counters: ScanCounters,
               hostname: str, now: dt.datetime) -> None:
    """:func:`format_json`, written to ``out`` row by row (the rows come from the spool, in order)."""
    head = {"hostname": hostname, "scanned_at": _iso(_aware(now)), "summary": _summary(spool, problems, counters)}
    text = json.dumps(head, indent=2, ensure_ascii=False)
    out.write(text[:-2] + ",\n")                      # without the closing "\n}"
    _json_list(out, "certificates", spool.certificates_json())
    out.write(",\n")
    _json_list(out, "trust_anchors", spool.trust_anchors_json())
    out.write(",\n")
    _json_list(out, "errors", (json.dumps(p, ensure_ascii=False) for p in problems))
    out.write("\n}\n")


def _json_list(out: TextIO, name: str, rows: Iterator[str]) -> None:
    """A list member of the report, one row (compact JSON) per line."""
    out.write(f'  "{name}": [')
    first = True
    for row in rows:
        out.write(("\n    " if first else ",\n    ") + row)
        first = False
    out.write("]" if first else "\n  ]")


def _spool(rows: list[dict[str, Any]] | RowSpool) -> RowSpool:
    return rows if isinstance(rows, RowSpool) else RowSpool.of(rows, SOON_DAYS)


def _summary(spool: RowSpool, problems: list[dict[str, Any]], counters: ScanCounters) -> dict[str, int]:
    return {
        "stores": counters.stores_scanned,
        "files": counters.files_seen,
        "certificates": spool.certificate_count,
        "expired": spool.expired,
        "expiring_soon": spool.expiring_soon,
        "not_yet_valid": spool.not_yet_valid,
        "problems": len(problems),
        "trust_anchors": spool.anchor_count,
        "stale": spool.stale,
        "linked_to_processes": spool.linked,
    }


def _cut(text: str, width: int, ell: str) -> str:
    """Shorten from the right: "CN=averyl…"."""
    if len(text) <= width:
        return text
    return text[: max(0, width - len(ell))] + ell


def _cut_left(text: str, width: int, ell: str) -> str:
    """Shorten from the left, keeping the end (a path's file name): "…/ssl/cert.pem"."""
    if len(text) <= width:
        return text
    return ell + text[len(text) - max(0, width - len(ell)):]


def _key_state(row: dict[str, Any]) -> str:
    if not row["has_private_key"]:
        return "-"
    if row["key_match"] == "matches":
        return "matches"
    if row["key_match"] == "mismatch":
        return "MISMATCH"
    return "encrypted" if row["key_encrypted"] else "unknown"


def _location(row: dict[str, Any]) -> str:
    loc = row["path"]
    if row["alias"]:
        loc += f" [{row['alias']}]"
    if row["chain_index"] or row["alias"]:
        loc += f" #{row['chain_index']}"
    return loc


def format_table(rows: list[dict[str, Any]] | RowSpool, problems: list[dict[str, Any]], counters: ScanCounters,
                 hostname: str, now: dt.datetime, width: int = TABLE_WIDTH, ellipsis: str = "…") -> str:
    """The human report: one line per certificate (soonest expiry first), then the problems.

    Every line fits in ``width`` columns. Long subjects are cut on the right,
    long locations on the left (the file name stays visible).
    """
    out = io.StringIO()
    write_table(out, _spool(rows), problems, counters, hostname, now, width, ellipsis)
    return out.getvalue()


def write_table(out: TextIO, spool: RowSpool, problems: list[dict[str, Any]], counters: ScanCounters,
                hostname: str, now: dt.datetime, width: int = TABLE_WIDTH, ellipsis: str = "…") -> None:
    """:func:`format_table`, written to ``out`` line by line."""
    s = _summary(spool, problems, counters)
    anchors = spool.anchor_count
    lines = [
        _cut(f"{hostname}: {s['certificates']} certificates in {s['files']} files from {s['stores']} stores"
             + (f", and {s['trust_anchors']} trust anchors" if anchors else ""), width, ellipsis),
        _cut(f"{s['expired']} expired, {s['expiring_soon']} expiring within {SOON_DAYS} days, "
             f"{s['problems']} problems" + (f", {s['stale']} STALE (renewed on disk, not served)" if s["stale"] else "")
             + (f", {s['not_yet_valid']} not yet valid" if s["not_yet_valid"] else ""),
             width, ellipsis),
        "",
    ]
    out.write("\n".join(lines) + "\n")
    cols = [("NOT AFTER", 10), ("DAYS", 5), ("SUBJECT", 24), ("KEY", 8), ("PRIVATE", 9)]
    fixed = sum(w for _, w in cols) + len(cols)
    loc_w = max(12, width - fixed)
    if spool.certificate_count:
        header = " ".join(f"{n:>{w}}" if n == "DAYS" else f"{n:<{w}}" for n, w in cols) + " LOCATION"
        out.write(header + "\n")
        for r in spool.certificates():
            days = r["days_left"]
            cells = [
                (r["not_after"] or "?")[:10],
                f"{days:>5}" if days is not None else f"{'?':>5}",
                _cut(r["common_name"] or r["subject"], 24, ellipsis),
                _cut(_key_cell(r), 8, ellipsis),
                _key_state(r),
            ]
            line = " ".join(f"{c:<{w}}" for c, (_, w) in zip(cells, cols, strict=True))
            line += " " + _cut_left(_location(r), loc_w, ellipsis)
            out.write("\n".join([line.rstrip(), *_process_lines(r, width, ellipsis)]) + "\n")
    else:
        out.write("No certificates found.\n")
    lines = []
    if anchors:
        lines += ["", _cut(f"Trust anchors ({anchors}; inventoried apart, never renewed):", width, ellipsis)]
        by_store: dict[str, list[int]] = {}
        for (store, _path), n in spool.anchor_files.items():
            by_store.setdefault(store, []).append(n)
        for store, counts in sorted(by_store.items()):
            expired = spool.anchor_expired.get(store, 0)
            lines.append(_cut(f"  {store or '-'}: {sum(counts)} certificates in {len(counts)} files"
                              + (f", {expired} expired" if expired else ""), width, ellipsis))
    if problems:
        lines += ["", f"Problems ({len(problems)}):"]
        for p in sorted(problems, key=lambda p: (p["path"], p["alias"], p["reason"])):
            where = p["path"] + (f" [{p['alias']}]" if p["alias"] else "")
            lines.append(f"  {p['reason']:<15} " + _cut_left(where, width - 18, ellipsis))
            for part in textwrap.wrap(p["message"], width - 18) or [""]:
                lines.append(" " * 18 + part)
    if lines:
        out.write("\n".join(lines) + "\n")


def _process_lines(row: dict[str, Any], width: int, ellipsis: str) -> list[str]:
    """Indented lines under a certificate: the processes using it, and a stale flag."""
    out = []
    for p in row.get("processes") or []:
        text = f"used by {p['name']} (pid {p['pid']}"
        if p["service"]:
            text += f", {p['service']}"
        text += f", {p['evidence']}"
        if p["listen"]:
            text += ", listens " + " ".join(p["listen"])
        if p["suggested_reload"]:
            text += f", reload: {p['suggested_reload']}"
        out.extend(textwrap.wrap(text + ")", width, initial_indent="    ", subsequent_indent="      "))
    st = row.get("stale")
    if st:
        out.extend(textwrap.wrap(
            f"STALE since {st['since']}: {st['endpoint']} still serves {st['served_fingerprint'][:12]} "
            f"({st['process_name']} pid {st['pid']}); reload it", width, initial_indent="    ",
            subsequent_indent="      "))
    return out


def _key_cell(row: dict[str, Any]) -> str:
    if row["key_curve"]:
        return f"{row['key_type']} {row['key_curve']}"
    if row["key_size"] and row["key_type"] in ("RSA", "DSA"):
        return f"{row['key_type']} {row['key_size']}"
    return row["key_type"]


#: distinct certificates whose facts are kept while scanning (most files repeat a few chains)
FACTS_CACHE = 4096


def collect(scans: Iterable[Any], now: dt.datetime, spool: RowSpool | None = None) -> tuple[RowSpool, list[dict[str, Any]]]:
    """Rows (into ``spool``, a new one by default) and problem rows from FileScans.

    A certificate that cannot be parsed is reported once per fingerprint. Only the facts of the
    last :data:`FACTS_CACHE` distinct certificates are kept: memory does not grow with the scan.
    """
    spool = spool if spool is not None else RowSpool(SOON_DAYS)
    facts: dict[str, CertFacts] = {}
    reported: set[str] = set()
    problems: list[dict[str, Any]] = []
    for fs in scans:
        for e in fs.entries:
            f = facts.get(e.fingerprint)
            if f is None:
                if len(facts) >= FACTS_CACHE:
                    facts.clear()
                f = facts[e.fingerprint] = cert_facts(e.der)
                if (f.error or f.warning) and e.fingerprint not in reported:
                    reported.add(e.fingerprint)
                    problems.append(problem_row(ScanProblem(
                        e.key.store_type, e.key.path, e.key.alias, "corrupt",
                        f"certificate {e.key.chain_index} {f.error or f.warning}"), fs.store_name))
            spool.add(cert_row(e, f, now, fs.store_name))
        for p in fs.problems:
            problems.append(problem_row(p, fs.store_name))
    return spool, problems


def render_scan(config: AgentConfig, fmt: str, out: TextIO, now: dt.datetime) -> int:
    """Scan every store (reading every file) and write the report in ``fmt`` to ``out``.

    ``fmt`` is "table" or "json". Returns the exit code: 0, also when some
    items had problems (they are part of the output: a "Problems" section, or
    the JSON "errors" list). Raises AgentError for an unknown format.

    Rows wait in a spool on disk (agent/cli/rowspool.py) until the scan is complete, then the
    report is written in one go: nothing reaches ``out`` when the scan fails, and memory stays
    bounded however many certificates the host holds.
    """
    if fmt not in FORMATS:
        raise AgentError(f"unknown output format {fmt!r}; use one of: {', '.join(FORMATS)}")
    scanner = Scanner(config)
    annotator = FileAnnotator.from_config(config)
    annotation = annotator.begin(persist=False) if annotator is not None else None   # the agent service owns stale.json
    scans = scanner.scan(force=True)
    if annotation is not None:
        scans = (_Annotated(fs, annotation.annotate(fs.entries)) for fs in scans)
    spool, problems = collect(scans, now)
    try:
        if fmt == "json":
            write_json(out, spool, problems, scanner.counters, config.hostname, now)
        else:
            write_table(out, spool, problems, scanner.counters, config.hostname, now, ellipsis=_ellipsis_for(out))
        out.flush()
    finally:
        spool.close()
    return 0


@dataclass(frozen=True)
class _Annotated:
    """A FileScan with annotated entries (the fields collect() reads)."""

    fs: Any
    entries: list[FoundCert]

    @property
    def problems(self) -> Any:
        return self.fs.problems

    @property
    def store_name(self) -> str:
        return self.fs.store_name


def _ellipsis_for(out: TextIO) -> str:
    encoding = getattr(out, "encoding", None) or "utf-8"
    try:
        "…".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return "..."
    return "…"
