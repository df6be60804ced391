"""certfleet agent: reads the host's certificate stores and reports them to the collector; installs renewals.

The rooms, contracts at the bottom and choices at the top:

- leaves: :mod:`~agent.errors`, :mod:`~agent.inventory` (what a scan finds), :mod:`~agent.fsutil`,
  :mod:`~agent.keys`, :mod:`~agent.probe` (one TLS handshake), :mod:`~agent.reload`,
  :mod:`~agent.host`, :mod:`~agent.identity` (the enrolled identity on disk), :mod:`~agent.pinning`,
  :mod:`~agent.state` (what the collector acknowledged), :mod:`~agent.delta` (pure: what a report
  must carry), :mod:`~agent.jobs` (commands and job updates as dataclasses).
- :mod:`agent.config`: the configuration file, typed per section.
- :mod:`agent.stores` (formats), :mod:`agent.scan` (the file stores), :mod:`agent.endpoints`
  (TLS endpoints), :mod:`agent.netscan`, :mod:`agent.discovery` (processes, stale services),
  :mod:`agent.windows` (the platform layer): features, each behind its room's contract.
- :mod:`agent.sources` (what a report holds besides files), :mod:`agent.install` (install
  pipelines, one dispatch), :mod:`agent.sync` (reports), :mod:`agent.commands` (what the agent
  does with the collector's commands): domain services, wire-free.
- :mod:`agent.transport`: the one door to the collector, the only package importing ``certfleet.v1``.
- :mod:`agent.service`: the composition root of the running agent; :mod:`agent.cli`: the command
  lines (``certfleet-agent``, ``certfleet-agent-service``).

The agent never imports ``collector``. tests/agent/test_agent_house.py keeps the shape: no import
circles, the wire only in the transport, no module over 500 lines.
"""

__version__ = "0.1.0"
