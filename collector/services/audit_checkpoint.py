"""Signed audit checkpoints: now and then, the chain's head (seq, hash, time of its newest event,
how many events are kept) signed by the collector's CA key and recorded as an audit event of action
``audit.checkpoint`` (collector/domain/auditchain.py ``checkpoint_payload``).

``certfleet audit checkpoint export`` writes the newest one out for an external system to keep;
``certfleet audit verify --checkpoint FILE`` checks the chain against it later: a chain cut back or
rewritten before the checkpoint's event no longer holds that event with that hash. The signature is
checked with the CA certificate alone (no secret), so a checkpoint cannot be forged with database
access; the chain is not verified here first (``audit verify`` does that), so a checkpoint taken
of a chain already broken says so only against a later export.
"""
from __future__ import annotations

import base64
import datetime as dt
import logging
from typing import Callable

from collector.domain.auditchain import CHECKPOINT, at_text, checkpoint_payload
from collector.registry import Registry

log = logging.getLogger(__name__)


class AuditCheckpointer:
    def __init__(self, registry: Registry, sign: Callable[[bytes], bytes], ca_fingerprint: str,
                 clock: Callable[[], dt.datetime]) -> None:
        self.registry = registry
        self.sign = sign
        self.ca_fingerprint = ca_fingerprint
        self.clock = clock

    def run_once(self) -> int:
        """Record a checkpoint when events came since the last one; its seq (0: nothing new)."""
        audit = self.registry.audit
        head = audit.head()
        newest = audit.list(limit=1)
        if not newest or newest[0].seq != head["last_seq"] or newest[0].action == CHECKPOINT:
            return 0    # nothing since the last checkpoint (or the head moved meanwhile: next time)
        now = self.clock()
        cp = {"seq": head["last_seq"], "hash": head["last_hash"], "event_at": at_text(newest[0].at),
              "count": audit.count(), "at": at_text(now)}
        signature = base64.b64encode(self.sign(checkpoint_payload(cp))).decode("ascii")
        seq = audit.record(now, "collector", CHECKPOINT, "audit", f"signed checkpoint of event {cp['seq']}",
                           {**cp, "signature": signature, "ca_fingerprint": self.ca_fingerprint})
        log.info("audit checkpoint of event %d recorded as event %d", cp["seq"], seq)
        return seq
