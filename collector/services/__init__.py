"""The collector's services: what it does with the registry, the issuers and the clock.

- ``agent_session`` (what a connected agent gets on its command stream and what its messages do),
  ``inventory`` (an agent's report into the registry, then the policy), ``enrollment``;
- ``renewal`` (request -> key and CSR on the host -> issue -> install -> verified), ``challenges``
  (ACME http-01 placed by the agent), ``autorenew`` (renewals due by the ``[[renewal.auto]]`` rules);
- ``team_scope`` (role owner's view), ``policy_runner``, ``notifier``, ``audit_retention``.

A service composes the pure decisions (``collector.domain``) with the registry
(``collector.registry``), the issuers (``collector.issuers``, by their contract in ``base``)
and its typed settings (``collector.config``); it takes and returns domain values and
dataclasses, never wire messages (``certfleet.v1`` stops at ``collector.api``). May import those
rooms and ``collector.notify``/``collector.pki``; never the api or the server.
"""
