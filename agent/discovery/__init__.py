"""Process discovery: which running process uses which store file, and whether it serves what the file holds.

- :mod:`agent.discovery.processes` / :mod:`~agent.discovery.listeners`: a snapshot of this host's
  processes and the TCP ports they listen on.
- :mod:`agent.discovery.servers`: the certificate files a server names in its configuration
  (nginx, Apache, HAProxy, Postfix, JVMs and Tomcat) or on its command line.
- :mod:`agent.discovery.linker`: links store files to processes (config, command line, open
  files) and suggests the reload action that fits.
- :mod:`agent.discovery.stale`: the stale-service decision (the file was renewed, the port still
  serves the old certificate), pure, with its small state file.
- :mod:`agent.discovery.annotate`: puts both on a report's file locations, once per report.
- :mod:`agent.discovery.settings`: the ``[discovery]`` section.

TLS endpoints, network scans and trust stores have rooms of their own (:mod:`agent.endpoints`,
:mod:`agent.netscan`, :mod:`agent.scan.trust`). May import :mod:`agent.config`,
:mod:`agent.inventory`, :mod:`agent.endpoints`; never the wire.
"""
