"""Which agents hold a command stream to this collector, and a way to wake their senders.

Wake-ups are a latency shortcut only: every stream also polls the registry, so
jobs created through another collector replica reach the agent too.
"""
from __future__ import annotations

import asyncio
from collections import defaultdict


class AgentHub:
    def __init__(self) -> None:
        self._events: dict[str, set[asyncio.Event]] = defaultdict(set)

    def register(self, agent_id: str) -> asyncio.Event:
        ev = asyncio.Event()
        self._events[agent_id].add(ev)
        return ev

    def unregister(self, agent_id: str, ev: asyncio.Event) -> None:
        self._events[agent_id].discard(ev)
        if not self._events[agent_id]:
            del self._events[agent_id]

    def notify(self, agent_id: str | None = None) -> None:
        targets = [agent_id] if agent_id else list(self._events)
        for a in targets:
            for ev in self._events.get(a, ()):
                ev.set()

    def connected(self) -> list[str]:
        return sorted(self._events)
