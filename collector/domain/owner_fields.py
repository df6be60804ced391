"""The values owners, rules and assignments are made of, checked: names, e-mail contacts,
webhooks, environments, criticalities, services; and what makes a contact *working*.

A contact is working when it is a valid-looking e-mail address (``local@domain.tld``) or an
``https://`` webhook (collector/domain/ownership.py: an owner without one makes orphans).
"""
from __future__ import annotations

import re
from typing import Iterable
from urllib.parse import urlsplit

from collector.errors import InvalidInput

__all__ = ["CRITICALITIES", "check_criticality", "check_email", "check_environment", "check_name", "check_service",
           "check_webhook", "has_working_contact", "is_email", "is_environment", "is_https_url"]

CRITICALITIES = ("low", "medium", "high", "critical")
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")
_ENV = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_EMAIL = re.compile(r"[^@\s<>,;]+@[^@\s<>,;.]+(\.[^@\s<>,;.]+)+")


def is_email(value: str) -> bool:
    return bool(_EMAIL.fullmatch(value.strip()))


def is_https_url(value: str) -> bool:
    try:
        u = urlsplit(value.strip())
    except ValueError:
        return False
    return u.scheme == "https" and bool(u.hostname)


def has_working_contact(contacts: Iterable[str], webhook: str) -> bool:
    """At least one valid-looking e-mail address, or an https webhook."""
    return any(is_email(c) for c in contacts) or is_https_url(webhook or "")


def check_name(value: str, what: str) -> str:
    v = (value or "").strip().lower()
    if not _NAME.fullmatch(v):
        raise InvalidInput(
            f"{what} {value!r} is not valid: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return v


def check_email(value: str, what: str) -> str:
    v = (value or "").strip()
    if not is_email(v):
        raise InvalidInput(f"{what} {value!r} is not an e-mail address (name@example.com)")
    return v


def check_webhook(value: str) -> str:
    v = (value or "").strip()
    if not v:
        return ""
    try:
        u = urlsplit(v)
    except ValueError:
        u = None
    if u is None or u.scheme not in ("http", "https") or not u.hostname:
        raise InvalidInput(f"webhook {value!r} is not an http(s) URL (only https counts as a working contact)")
    return v


def is_environment(value: str) -> bool:
    return bool(value) and _ENV.fullmatch(value) is not None


def check_environment(value: str) -> str:
    v = (value or "").strip().lower()
    if v and not _ENV.fullmatch(v):
        raise InvalidInput(f"environment {value!r} is not valid: use letters, digits, '.', '_' or '-' (e.g. prod, test)")
    return v


def check_criticality(value: str) -> str:
    v = (value or "").strip().lower()
    if v and v not in CRITICALITIES:
        raise InvalidInput(f"criticality {value!r} is not one of {', '.join(CRITICALITIES)}")
    return v


def check_service(value: str) -> str:
    v = (value or "").strip()
    if len(v) > 200:
        raise InvalidInput("a service name has at most 200 characters")
    return v
