"""The collector's configuration: the TOML file's tables as typed values, and the admin client's config.

- ``reader``: the one small table reader (values by key, unknown keys refused, errors naming the
  file and line) and the value grammar's ``parse_duration``;
- ``core``: the ``[collector]`` table and ``load_config``, which composes every section into one
  ``CollectorConfig``;
- one module per section: ``templates`` ([templates.*]), ``renewal`` ([renewal], [[renewal.auto]]),
  ``policy`` ([policy]), ``notify`` ([notify], [[notify.channel]]), ``audit`` ([audit]); each issuer
  type reads its ``[issuers.<name>]`` table itself (collector/issuers/settings.py);
- ``client``: the admin CLI's own config file (its wing's).

May import ``collector.errors``, ``certfleet.values``, the pure ``collector.domain`` value types the
sections are read into, and ``collector.notify.channels`` (each delivery backend checks its own
``[[notify.channel]]`` settings). Never the registry, the services, the api or the server: every
other room reads its settings from here.
"""
