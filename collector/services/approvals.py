"""Approvals as the admin calls and the scheduler use them (the store is collector/registry/approvals.py).

- ``decide``: an approver's yes or no; four eyes are the store's (the requester is refused, audited);
- ``sweep`` (scheduled): pending approvals past their expiry end ``expired``, and approvers are told
  of new pending ones through the existing notification channels (once per approval).
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Callable

from collector.registry.approvals import ApprovalView

log = logging.getLogger(__name__)

__all__ = ["ApprovalService"]


class ApprovalService:
    def __init__(self, registry: Any, clock: Callable[[], dt.datetime], notifier: Any = None,
                 notify_owner: str = "") -> None:
        self.registry = registry
        self.clock = clock
        self.notifier = notifier
        self.notify_owner = notify_owner

    def decide(self, approval_id: str, approve: bool, actor: str, reason: str) -> ApprovalView:
        view = self.registry.approvals.decide(approval_id, approve, actor, reason, self.clock())
        log.info("approval %s %s by %s: %s", view.approval_id, view.state, actor, view.decision_reason)
        return view

    def tell(self, view: ApprovalView) -> bool:
        """Tell the approvers about one pending approval (once; False without channels)."""
        if self.notifier is None or not getattr(self.notifier, "enabled", False):
            return False
        try:
            host = self.registry.authority.host(view.agent_id).name
        except Exception:  # noqa: BLE001 - an agent gone since: the id will do
            host = ""
        return self.notifier.notify_approval(view, self.notify_owner, host, self.clock())

    def sweep(self) -> int:
        """Expire what waited too long; tell approvers about what waits. Returns how many expired."""
        expired = self.registry.approvals.expire(self.clock())
        for v in expired:
            log.info("approval %s of job %s expired without a decision", v.approval_id, v.job_id)
        for v in self.registry.approvals.list():
            try:
                self.tell(v)
            except Exception:  # noqa: BLE001 - one notice must not stop the sweep
                log.exception("could not notify approvers of %s", v.approval_id)
        return len(expired)
