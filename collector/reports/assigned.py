"""Certificates with each present location's resolved assignment, read page by page."""
from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from typing import Any, Iterator

from collector import ownership as own
from collector.registry.types import CertFilter


@dataclasses.dataclass(frozen=True)
class Placed:
    certificate: Any             # CertificateView (present locations only, no DER)
    location: Any                # LocationView
    assignment: own.Assignment


def placed(registry: Any, flt: CertFilter, now: dt.datetime, rules: list[own.Rule] | None = None) -> Iterator[Placed]:
    """Every present location of the certificates matching ``flt`` (soonest expiry first) with
    its assignment (collector/ownership.py ``resolve``); the explicit assignments are fetched per page,
    so memory stays bounded by the page size."""
    store = registry.owners
    resolver = own.Resolver(store.list_rules() if rules is None else rules)
    it = registry.list_certificates(flt, now)
    try:
        while True:
            page = list(itertools.islice(it, registry.PAGE_SIZE))
            if not page:
                return
            explicit = store.explicit_for(page)
            by_fp: dict[str, list[own.Explicit]] = {}
            by_loc: dict[tuple[str, str, str, str], list[own.Explicit]] = {}
            for e in explicit:
                if e.scope == own.SCOPE_CERTIFICATE:
                    by_fp.setdefault(e.fingerprint, []).append(e)
                else:
                    by_loc.setdefault((e.agent_id, e.store_type, e.path, e.alias), []).append(e)
            for cert in page:
                facts = own.facts_of(cert)        # once per certificate, not per location
                for loc in cert.locations:
                    if loc.status != "present":
                        continue
                    mine = by_fp.get(cert.fingerprint, []) + by_loc.get(
                        (loc.agent_id, loc.store_type, loc.path, loc.alias), [])
                    yield Placed(cert, loc, resolver(facts, loc, mine))
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()
