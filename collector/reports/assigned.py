"""Present locations with their resolved assignment, for the reports that judge ownership.

Column-only (collector/registry/expiry.py: one joined query, soonest expiry first, read a
batch at a time), ownership resolved with ``ownership.Resolver`` (a memo over the facts the
rules look at) and the explicit assignments of the whole range read in bulk beforehand.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Iterator

from collector.domain import ownership as own
from collector.registry.expiry import BATCH, ExpiryStore, ExplicitIndex, Placement

#: "no horizon": every present location
FOREVER = dt.datetime(9999, 1, 1, tzinfo=dt.timezone.utc)


def placed(registry: Any, before: dt.datetime | None = None, *, since: dt.datetime | None = None,
           batch: int | None = None, resolver: own.Resolver | None = None,
           explicit: ExplicitIndex | None = None,
           services_only: bool = False) -> Iterator[tuple[Placement, own.Assignment]]:
    """Every present location of the certificates with ``since`` <= not_after < ``before`` (all when
    None), soonest expiry first, with its assignment (collector/domain/ownership.py ``resolve``). ``resolver``
    and ``explicit`` may be given to share them between calls; ``batch``: certificates per page;
    ``services_only``: trust anchors left out (ExpiryStore.placements)."""
    before = before or FOREVER
    store = ExpiryStore(registry.engine)
    resolver = resolver or own.Resolver(registry.owners.list_rules())
    explicit = explicit or store.explicit(before)
    fp, facts = None, None
    for pl in store.placements(before, since=since, with_issuer=resolver.by_issuer, with_names=resolver.by_names,
                               batch=batch or BATCH, services_only=services_only):
        if pl.fingerprint != fp:                 # the locations of one certificate come together
            fp, facts = pl.fingerprint, pl.facts()
        yield pl, resolver(facts, pl, explicit.at(pl))
