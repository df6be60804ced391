"""The agent's command lines: composition roots of the one-shot commands.

- :mod:`agent.cli.main`: ``certfleet-agent`` (``scan``, ``enroll``, ``run``, ``doctor``); each
  command imports what it runs when it runs (start-up time).
- :mod:`agent.cli.localreport`: ``scan``'s table and JSON, without a collector.
- :mod:`agent.cli.enroll`: enrollment (pinned CA, key and CSR made here, the Enrollment RPC).
- :mod:`agent.cli.doctor` (+ :mod:`~agent.cli.doctor_checks`, :mod:`~agent.cli.doctor_collector`):
  what is wrong with this agent and what to do about it.
- :mod:`agent.cli.winservice` (+ :mod:`~agent.cli.service_host`, the Windows-only
  :mod:`~agent.cli.winservice_scm`): ``certfleet-agent-service``, the agent as a Windows service.

May import any room of the agent (the service, the transport for enrollment and the doctor's
identity check); nothing outside this package imports it.
"""
