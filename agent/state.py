"""What the collector has acknowledged: the base for the next delta report.

Kept in ``<data_dir>/state.json``, written atomically after each stored
report. If it is lost or belongs to another enrollment, the next report is a
full one; nothing else depends on it.
"""
from __future__ import annotations

import json
import logging
import pathlib
from dataclasses import dataclass, field

from agent.fsutil import atomic_write
from agent.inventory import LocationKey

log = logging.getLogger(__name__)
VERSION = 1


def key_str(key: LocationKey) -> str:
    return f"{key.store_type}\0{key.path}\0{key.alias}\0{key.chain_index}"


def key_from_str(s: str) -> LocationKey:
    store_type, path, alias, idx = s.split("\0")
    return LocationKey(store_type=store_type, path=path, alias=alias, chain_index=int(idx))


@dataclass
class SyncState:
    agent_id: str = ""
    sequence: int = 0
    acked: dict[str, str] = field(default_factory=dict)   # key_str -> FoundCert.digest()


def load_state(path: pathlib.Path, agent_id: str) -> SyncState:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return SyncState(agent_id=agent_id)
    except (OSError, ValueError) as e:
        log.warning("sync state %s unreadable (%s); the next report will be a full one", path, e)
        return SyncState(agent_id=agent_id)
    if raw.get("version") != VERSION or raw.get("agent_id") != agent_id:
        return SyncState(agent_id=agent_id)
    return SyncState(agent_id=agent_id, sequence=int(raw.get("sequence", 0)), acked=dict(raw.get("acked", {})))


def save_state(path: pathlib.Path, state: SyncState) -> None:
    data = json.dumps(
        {"version": VERSION, "agent_id": state.agent_id, "sequence": state.sequence, "acked": state.acked},
        separators=(",", ":"),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data.encode("utf-8"), 0o600)
