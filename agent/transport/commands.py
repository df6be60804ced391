"""The Connect stream: the agent dials the collector and keeps the stream open; commands come down, updates go up.

Each command is turned into the agent's dataclass at this door (:func:`agent.transport.wire.command_in`)
and handed to the :class:`~agent.commands.CommandHandler`; its job updates, and network scan
progress sent from any thread (:meth:`CommandStream.send`), go back as wire messages.
Reconnects with backoff and jitter; commands are idempotent on the agent's side.
"""
from __future__ import annotations

import logging
import queue
import random
import threading
from typing import Callable, Iterator

import grpc

from agent import __version__
from agent.commands import CommandHandler
from agent.netscan.records import ScanProgress
from agent.transport.wire import command_in, job_update_out, scan_progress_out
from certfleet.v1 import agent_pb2, agent_pb2_grpc

__all__ = ["CommandStream"]

log = logging.getLogger(__name__)


class CommandStream:
    """Keeps the stream to the collector open, with backoff and jitter between attempts."""

    def __init__(self, channel_factory: Callable[[], grpc.Channel], handler: CommandHandler,
                 reload_actions: list[str], rng: random.Random | None = None) -> None:
        self.channel_factory = channel_factory
        self.handler = handler
        self.reload_actions = reload_actions
        self.rng = rng or random.Random()
        self.connected = threading.Event()
        self._out: queue.Queue[agent_pb2.AgentMessage | None] | None = None

    def send(self, progress: ScanProgress) -> bool:
        """Send a network scan's progress on the open stream from any thread; False when not connected (dropped)."""
        out = self._out
        if out is None:
            return False
        out.put(agent_pb2.AgentMessage(scan_progress=scan_progress_out(progress)))
        return True

    def _outgoing(self, out: "queue.Queue[agent_pb2.AgentMessage | None]") -> Iterator[agent_pb2.AgentMessage]:
        yield agent_pb2.AgentMessage(hello=agent_pb2.AgentHello(agent_version=__version__,
                                                               reload_actions=self.reload_actions))
        while True:
            msg = out.get()
            if msg is None:
                return
            yield msg

    def run_once(self, stop: threading.Event) -> None:
        """One connection, until it drops or ``stop`` is set."""
        out: queue.Queue[agent_pb2.AgentMessage | None] = queue.Queue()
        channel = self.channel_factory()
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        call = stub.Connect(self._outgoing(out))
        stopper = threading.Thread(target=lambda: (stop.wait(), call.cancel()), daemon=True)
        stopper.start()
        try:
            self._out = out
            self.connected.set()
            for update in self.handler.resume_pending():     # an install interrupted by a stop or a lost stream
                out.put(agent_pb2.AgentMessage(job_update=job_update_out(update)))
            for cmd in call:
                for update in self.handler.handle(command_in(cmd)):
                    out.put(agent_pb2.AgentMessage(job_update=job_update_out(update)))
        finally:
            self._out = None
            self.connected.clear()
            out.put(None)
            channel.close()

    def run_forever(self, stop: threading.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                self.run_once(stop)
                failures = 0
            except grpc.RpcError as e:
                if stop.is_set():
                    break
                failures += 1
                log.warning("command stream lost (%s): %s", e.code().name if hasattr(e, "code") else "error",
                            e.details() if hasattr(e, "details") else e)
            except Exception:  # noqa: BLE001 - the stream must come back
                failures += 1
                log.exception("command stream failed")
            cap = min(60.0, 1.0 * 2 ** min(failures, 6))
            stop.wait(self.rng.uniform(cap / 2, cap) if failures else 0.5)
