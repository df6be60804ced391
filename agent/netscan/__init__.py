"""Network scans: the collector asks this agent to probe address ranges only it can reach.

- :mod:`agent.netscan.plan`: the request (:class:`~agent.netscan.plan.ScanRequest`) and its plan, pure.
- :mod:`agent.netscan.records`: finished scans on disk and their progress.
- :mod:`agent.netscan.runner`: scans run one at a time off the command stream, with progress.

Plain dataclasses in and out: the wire (``NetworkScan``, ``NetworkScanProgress``) is
converted at the agent's door, :mod:`agent.transport`. May import :mod:`agent.endpoints`,
:mod:`agent.config`, :mod:`agent.fsutil` and :mod:`agent.errors`.
"""
