"""The audit trail's hash chain as pure functions: no database, no clock.

An event is ``(seq, at, actor, action, target, reason, detail)`` and carries
``prev_hash`` (the hash of the event before it) and its own::

    hash = sha256(prev_hash || canonical JSON of [seq, at, actor, action, target, reason, detail])

``at`` is hashed as UTC text with microseconds (:func:`at_text`), the canonical
JSON has sorted keys and no spaces. :class:`ChainCheck` takes events in seq
order and names the first one that does not fit: its own hash is wrong (edited,
or moved to another seq), a gap before it (deleted), or it does not link to the
one before (edited, replaced, reordered). The registry verifies with it
(collector/registry/audit.py), and so does ``certfleet audit verify --file`` on
an export, without the collector's database.

Keyed chain (issue 12). Whoever can write the database could rewrite an unkeyed chain and
re-hash it. From the cut-over event (action :data:`CUT_OVER`, recorded by the collector the
first time it runs with an audit key) on, every event's hash is an HMAC::

    hash = HMAC-SHA256(key, prev_hash || canonical JSON of [...])

with a key kept outside the database (a 0600 file the collector reads). Events before the
cut-over keep their SHA-256 hashes and stay verifiable; the cut-over event links to them, so
they cannot be changed either without breaking its HMAC. With the key, :class:`ChainCheck`
requires every event from the cut-over on to carry a valid HMAC (and, when no cut-over
event is left after the anchor, every event): a chain rewritten without the key fails.
Checkpoints (:func:`checkpoint_payload`) are signed by the collector's CA key and kept
outside the collector; a chain that no longer holds a checkpoint's event fails against it.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from collector.errors import InvalidInput

UTC = dt.timezone.utc
#: prev_hash of the first event ever recorded, and the anchor before any purge
GENESIS_HASH = "0" * 64
#: the action of the event from which on the chain is keyed (the cut-over)
CUT_OVER = "audit.keyed"
#: the action of a signed checkpoint event
CHECKPOINT = "audit.checkpoint"


# -- the hash ----------------------------------------------------------------------------


def at_text(at: dt.datetime) -> str:
    """The time as hashed and exported: UTC, microseconds, ``Z``."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"naive datetime {at!r} given to the audit log; use an aware UTC datetime")
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_at(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def plain(detail: Mapping[str, Any] | None) -> dict[str, Any]:
    """``detail`` as plain JSON that survives the database unchanged (JSON text on SQLite,
    JSONB on PostgreSQL): keys are strings, tuples lists, other objects their ``str``,
    integral floats ints (JSONB would print 1e20 back as an integer); NaN and infinities refused."""
    def fix(v: Any) -> Any:
        if isinstance(v, float):
            if not math.isfinite(v):
                raise InvalidInput("audit detail must not hold NaN or infinite numbers")
            return int(v) if v.is_integer() else v
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fix(x) for x in v]
        return v

    return fix(json.loads(json.dumps(dict(detail or {}), default=str)))


def canonical(seq: int, at: str, actor: str, action: str, target: str, reason: str,
              detail: Mapping[str, Any]) -> bytes:
    return json.dumps([seq, at, actor, action, target, reason, detail], sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False).encode("utf-8")


def event_hash(prev_hash: str, seq: int, at: str, actor: str, action: str, target: str, reason: str,
               detail: Mapping[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + canonical(seq, at, actor, action, target, reason, detail)
                          ).hexdigest()


def keyed_hash(key: bytes, prev_hash: str, seq: int, at: str, actor: str, action: str, target: str, reason: str,
               detail: Mapping[str, Any]) -> str:
    """The hash of a keyed event: HMAC-SHA256 with the audit key."""
    return hmac.new(key, prev_hash.encode("ascii") + canonical(seq, at, actor, action, target, reason, detail),
                    hashlib.sha256).hexdigest()


def key_id(key: bytes) -> str:
    """A name for the key that gives nothing of it away (recorded in the cut-over event)."""
    return hmac.new(key, b"certfleet audit key id", hashlib.sha256).hexdigest()[:16]


CHECKPOINT_FIELDS = ("seq", "hash", "event_at", "count", "at")


def checkpoint_payload(cp: Mapping[str, Any]) -> bytes:
    """The bytes a checkpoint's signature covers: the head event's seq, hash and time, the count of
    events kept, and when the checkpoint was made (:data:`CHECKPOINT_FIELDS` of ``cp``)."""
    return json.dumps({k: cp[k] for k in CHECKPOINT_FIELDS}, sort_keys=True, separators=(",", ":")).encode("ascii")


# -- checking ------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int                 # events found intact (before the first broken one)
    first_broken_seq: int = 0    # 0 when ok
    reason: str = ""             # the first break, for people ("" when ok)
    anchor_seq: int = 0          # verification started after this seq (the last purged event)
    last_seq: int = 0            # the newest event the head knows
    keyed_from: int = 0          # the cut-over's seq (0: no keyed event)
    unauthenticated: int = 0     # keyed events whose HMAC was not checked (no key given)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def describe(event: Mapping[str, Any]) -> str:
    at = event.get("at")
    when = at_text(at) if isinstance(at, dt.datetime) else str(at or "")
    if len(when) == 27 and when.endswith("Z"):   # 2026-11-26T10:00:00.000000Z -> ...:00Z
        when = when[:19] + "Z"
    return f"event {event.get('seq')} ({when} {event.get('action', '?')} by {event.get('actor', '?')})"


class ChainCheck:
    """Feed events in seq order; the first that does not fit is named, with why."""

    def __init__(self, anchor_seq: int | None = None, anchor_hash: str | None = None, *,
                 key: bytes | None = None, keyed_from: int | None = None, auto_keyed: bool = False) -> None:
        """``keyed_from``: events from this seq on are keyed (their HMAC is checked with ``key``; without
        a key only their links are). ``auto_keyed`` (an export, offline): the first event of action
        :data:`CUT_OVER` starts the keyed part."""
        self.key = key
        self.keyed_from = keyed_from
        self.auto_keyed = auto_keyed
        self.unauthenticated = 0
        self.anchor_seq = anchor_seq
        self.expect_seq = None if anchor_seq is None else anchor_seq + 1
        self.prev_hash = anchor_hash
        self.checked = 0
        self.broken: tuple[int, str] | None = None
        self.last: Mapping[str, Any] | None = None

    def feed(self, e: Mapping[str, Any]) -> bool:
        """False (and ``broken`` set) when ``e`` breaks the chain; stop feeding then."""
        try:
            seq = int(e["seq"])
            at = e["at"] if isinstance(e["at"], str) else at_text(e["at"])
            if self.auto_keyed and self.keyed_from is None and e["action"] == CUT_OVER:
                self.keyed_from = seq
            stored = e["hash"]
            args = (e["prev_hash"], seq, at, e["actor"], e["action"], e["target"], e["reason"], e["detail"])
            if self.keyed_from is not None and seq >= self.keyed_from:
                if self.key is not None:
                    computed = keyed_hash(self.key, *args)
                else:   # links are checked below; the HMAC needs the key
                    computed = stored
                    self.unauthenticated += 1
            else:
                computed = event_hash(*args)
        except (KeyError, TypeError, ValueError, UnicodeError) as exc:
            raw = e.get("seq") if isinstance(e, Mapping) else None
            where = raw if isinstance(raw, int) and not isinstance(raw, bool) else (self.expect_seq or 0)
            return self._break(where, f"{describe(e)}: unreadable ({type(exc).__name__}: {exc})")
        if not hmac.compare_digest(str(computed), str(stored)):
            if self.keyed_from is not None and seq >= self.keyed_from:
                return self._break(seq, f"{describe(e)}: hash does not match; edited or reordered (its "
                                        "HMAC with the audit key is wrong: also a rewrite without the key)")
            return self._break(seq, f"{describe(e)}: hash does not match; edited or reordered")
        if self.expect_seq is not None and seq != self.expect_seq:
            if seq > self.expect_seq:
                gone = (f"event {self.expect_seq} before it is" if seq == self.expect_seq + 1
                        else f"events {self.expect_seq}..{seq - 1} before it are")
                return self._break(seq, f"{describe(e)}: {gone} missing; deleted")
            return self._break(seq, f"{describe(e)}: out of order (expected seq {self.expect_seq}); reordered")
        if self.prev_hash is not None and e["prev_hash"] != self.prev_hash:
            before = f"event {seq - 1}" if self.checked else f"the anchor (seq {self.anchor_seq})"
            return self._break(seq, f"{describe(e)}: does not follow {before} (prev_hash does not match); "
                                    "an event before it was edited, replaced or reordered")
        self.expect_seq = seq + 1
        self.prev_hash = e["hash"]
        self.checked += 1
        self.last = e
        return True

    def _break(self, seq: int, why: str) -> bool:
        self.broken = (seq, why)
        return False

    def finish(self, head_seq: int | None = None, head_hash: str | None = None) -> VerifyResult:
        """The result; with the head's seq and hash, a deleted or altered newest event is caught too."""
        anchor = self.anchor_seq or 0
        extra = {"keyed_from": self.keyed_from or 0, "unauthenticated": self.unauthenticated}
        if self.broken is not None:
            return VerifyResult(False, self.checked, self.broken[0], self.broken[1], anchor, head_seq or 0, **extra)
        last_seq = int(self.last["seq"]) if self.last is not None else anchor
        if head_seq is not None:
            if head_seq > last_seq:
                missing = (f"event {head_seq} (the newest, as the chain head records) is" if head_seq == last_seq + 1
                           else f"events {last_seq + 1}..{head_seq} (the newest, as the chain head records) are")
                return VerifyResult(False, self.checked, last_seq + 1, f"{missing} missing; deleted", anchor, head_seq, **extra)
            if head_seq < last_seq:
                return VerifyResult(False, self.checked, head_seq + 1,
                                    f"events after seq {head_seq} are not in the chain head; inserted", anchor, head_seq,
                                    **extra)
            if head_hash is not None and self.last is not None and self.last["hash"] != head_hash:
                return VerifyResult(False, self.checked - 1, last_seq,
                                    f"{describe(self.last)}: hash differs from the chain head's; replaced",
                                    anchor, head_seq, **extra)
        return VerifyResult(True, self.checked, 0, "", anchor, last_seq if head_seq is None else head_seq, **extra)


def verify_events(events: Iterable[Mapping[str, Any]], anchor_seq: int | None = None,
                  anchor_hash: str | None = None, key: bytes | None = None) -> VerifyResult:
    """Check a run of events (e.g. an export, as dicts) offline. Without an anchor the first
    event is taken as it is and the rest must follow it. Events from a cut-over event on are
    keyed: with ``key`` their HMACs are checked, without it only their links."""
    check = ChainCheck(anchor_seq, anchor_hash, key=key, auto_keyed=True)
    for e in events:
        if not check.feed(e):
            break
    return check.finish()


def checkpoint_signed(cp: Mapping[str, Any], signature: bytes, ca_pem: bytes) -> bool:
    """Whether ``signature`` is the CA's (the first certificate in ``ca_pem``) over ``cp``'s payload:
    what ``audit verify --checkpoint`` and ``audit checkpoint export`` check, with no secret."""
    from cryptography import x509  # only the checkpoint check needs it; the chain functions stay light
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    try:
        public = x509.load_pem_x509_certificates(ca_pem)[0].public_key()
        data = checkpoint_payload(cp)
        if isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(public, rsa.RSAPublicKey):
            public.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            return False
    except (InvalidSignature, ValueError, KeyError, TypeError, IndexError):
        return False
    return True


def parse_audit_key(text: str) -> bytes:
    """The audit key from its file's text (hex); ValueError when it is not one."""
    key = bytes.fromhex(text.strip())
    if len(key) < 16:
        raise ValueError(f"the audit key is too short ({len(key)} bytes; at least 16)")
    return key
