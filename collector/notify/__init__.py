"""Notification delivery backends: ``notify/channels/`` (smtp, webhook, slack, ticket) behind one
``Channel`` interface, ``notify/channels/__init__.py`` the chooser of a channel type.

What is due and to whom is decided in collector/domain/notices.py; collector/services/notifier.py
runs it against the registry and delivers through these channels; the ``[notify]`` settings are
collector/config/notify.py's. Imports nothing of the collector but ``collector.errors``.
"""
