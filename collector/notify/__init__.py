"""Expiry and event notifications: pure decisions (decisions.py), channels (channels/),
settings (settings.py) and the notifier that runs them against the registry (notifier.py).

The policy engine's hook: ``Notifier.notify_violation(rule=..., fingerprint=..., reason=...,
environment=..., owner=...)`` -- see its docstring.
"""
