"""The agent's door to the collector: the only agent package that imports the wire (``certfleet.v1``).

- :mod:`agent.transport.wire`: the agent's dataclasses <-> the wire messages, in one place.
- :mod:`agent.transport.channel`: the mutual-TLS channel and what its failures mean.
- :mod:`agent.transport.report`: the Report RPC (a :class:`~agent.sync.ReportSender`).
- :mod:`agent.transport.commands`: the Connect stream (commands down, job updates and scan
  progress up) around the :class:`~agent.commands.CommandHandler`.
- :mod:`agent.transport.enrollment`: the Enrollment RPC.
- :mod:`agent.transport.identity`: RenewIdentity, and the doctor's identity check.

Everything inside the agent takes and returns dataclasses; a test keeps the wire here
(tests/agent/test_agent_house.py). May import any domain module of the agent; none of
them imports this package (the composition roots, :mod:`agent.service` and the CLI, do).
"""
