"""Linking stored certificates to their issuers, both ways, when new certificates are stored.

A certificate's issuer is the stored certificate whose subject DN equals its issuer DN
and, when both carry key identifiers, whose subjectKeyIdentifier equals its
authorityKeyIdentifier. Among several, prefer an exact key-id match, then a CA, then the
latest not_after. Self-signed certificates point at themselves. Links are made when a
certificate is stored, in both directions: to a known issuer (:func:`link_new`), and from
known certificates to a new issuer (:func:`link_existing_children`).

Used by the report transaction (collector/registry/ingest.py), inside its transaction.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Iterable

from sqlalchemy import Connection, or_, select, update

from collector.domain.certinfo import CertFacts, name_hash
from collector.registry.models.inventory import certificates
from collector.registry.sql import chunked

def _compatible(aki: str, ski: str) -> bool:
    return not (aki and ski and aki != ski)


def _rank(aki: str, ski: str, is_ca: bool, not_after: dt.datetime) -> tuple[bool, bool, dt.datetime]:
    return (bool(aki) and aki == ski, is_ca, not_after)


def link_new(conn: Connection, new: list[CertFacts]) -> dict[str, str]:
    """{fingerprint: issuer fingerprint} for the new certificates whose issuer is known."""
    links: dict[str, str] = {}
    wanted: dict[str, list[CertFacts]] = defaultdict(list)
    for f in new:
        if f.self_signed:
            links[f.fingerprint] = f.fingerprint
        else:
            wanted[name_hash(f.issuer)].append(f)
    if not wanted:
        return links
    # candidates: (fingerprint, subject, ski, is_ca, not_after), stored ones and new ones
    cands: dict[str, list[tuple[str, str, str, bool, dt.datetime]]] = defaultdict(list)
    c = certificates.c
    for part in chunked(list(wanted)):
        for r in conn.execute(
            select(c.fingerprint, c.subject, c.subject_hash, c.subject_key_id, c.is_ca, c.not_after)
            .where(c.subject_hash.in_(part))
        ):
            cands[r.subject_hash].append((r.fingerprint, r.subject, r.subject_key_id, r.is_ca, r.not_after))
    for f in new:
        h = name_hash(f.subject)
        if h in wanted:
            cands[h].append((f.fingerprint, f.subject, f.subject_key_id, f.is_ca, f.not_after))
    for h, children in wanted.items():
        options = cands.get(h)
        if not options:
            continue
        for f in children:
            best = max(
                (o for o in options if o[0] != f.fingerprint and o[1] == f.issuer and _compatible(f.authority_key_id, o[2])),
                key=lambda o: _rank(f.authority_key_id, o[2], o[3], o[4]),
                default=None,
            )
            if best is not None:
                links[f.fingerprint] = best[0]
    return links


def issuers_first(new: list[CertFacts], links: dict[str, str]) -> Iterable[CertFacts]:
    """Order new certificates so that an issuer is inserted before what it issued (foreign key)."""
    by_fp = {f.fingerprint: f for f in new}
    depth: dict[str, int] = {}
    for f in new:
        chain = []
        fp: str | None = f.fingerprint
        while fp is not None and fp not in depth:
            if fp in chain:                       # a loop (cross-signed pair): break it here
                links.pop(fp, None)
                depth[fp] = 0
                break
            chain.append(fp)
            parent = links.get(fp)
            fp = parent if parent in by_fp and parent != fp else None
        base = depth[fp] + 1 if fp is not None else 0
        for i, item in enumerate(reversed(chain)):
            depth.setdefault(item, base + i)
    return sorted(new, key=lambda f: depth[f.fingerprint])


def link_existing_children(conn: Connection, new: list[CertFacts], unlinked_issuers: set[str]) -> None:
    """Point stored certificates with no known issuer at a new certificate that issued them.

    One set-based UPDATE per new certificate that can issue and whose subject hash is
    in ``unlinked_issuers`` (issuer hashes of stored certificates without a known
    issuer): thousands of new leaves, often without basicConstraints, cost nothing. CAs with
    key identifiers go first, so a child with an authorityKeyIdentifier gets the CA whose
    subjectKeyIdentifier matches before a CA without one can claim it.
    """
    c = certificates.c
    # a certificate whose basicConstraints say it is not a CA issues nothing
    issuers = [f for f in new if f.is_ca or f.self_signed or not f.has_basic_constraints]
    issuers = [f for f in issuers if name_hash(f.subject) in unlinked_issuers]
    issuers.sort(key=lambda f: (bool(f.subject_key_id), f.is_ca, f.not_after), reverse=True)
    for f in issuers:
        conds = [
            c.issuer_hash == name_hash(f.subject), c.issuer == f.subject,
            c.issuer_fingerprint.is_(None), c.fingerprint != f.fingerprint,
        ]
        if f.subject_key_id:
            conds.append(or_(c.authority_key_id == "", c.authority_key_id == f.subject_key_id))
        conn.execute(update(certificates).where(*conds).values(issuer_fingerprint=f.fingerprint))
