"""README.md documents every setting the configuration readers accept: its *Settings reference* has one
list per table, compared here with the readers' own known-keys lists (both ways: nothing undocumented,
nothing documented that the reader would refuse)."""
from __future__ import annotations

import pathlib
import re

import pytest

from agent.config import SECTIONS
from agent.config import core as agent_core
from agent.discovery import settings as discovery_settings
from agent.endpoints import settings as endpoint_settings
from agent.windows import settings as windows_settings
from collector.config import approvals, audit, core, limits, netscan, notify, policy, renewal, templates
from collector.config import metrics as metrics_settings
from agent.metrics import settings as agent_metrics
from collector.domain.policy_rules import RULES
from collector.issuers import acme, internal_ca, pkcs11_signer
from collector.pki import keywrap
from collector.notify.channels import TYPES as CHANNEL_TYPES

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"

#: heading in the README's settings reference -> the keys its reader accepts
READERS: dict[str, frozenset[str]] = {
    "`[collector]` (collector.toml)": frozenset(core._KEYS),
    '`[issuers.<name>]` with `type = "internal_ca"` (collector.toml)': frozenset(internal_ca.CONFIG_KEYS),
    '`[issuers.<name>]` with `type = "acme"` (collector.toml)': frozenset(acme.CONFIG_KEYS),
    "`[templates.<name>]` (collector.toml)": frozenset(templates._TEMPLATE_KEYS),
    "`[renewal]` (collector.toml)": renewal.RENEWAL_KEYS,
    "`[[renewal.auto]]` (collector.toml)": renewal.RULE_KEYS,
    "`[policy]` (collector.toml)": policy.KEYS,
    "`[global]` and `[[scope]]` (the policy document)": frozenset(RULES) | {"environment", "owner", "locked"},
    "`[notify]` (collector.toml)": notify.KEYS,
    **{f'`[[notify.channel]]` with `type = "{t}"` (collector.toml)': frozenset(cls.KEYS)
       for t, cls in CHANNEL_TYPES.items()},
    "`[audit]` (collector.toml)": audit.KEYS,
    "`[metrics]` (collector.toml)": metrics_settings.KEYS,
    "`[log]` (collector.toml)": metrics_settings.LOG_KEYS,
    "`[limits]` (collector.toml)": limits.KEYS,
    "`[approvals]` (collector.toml)": approvals.KEYS,
    "`[netscan]` (collector.toml)": netscan.KEYS,
    "`[keys]` (collector.toml)": keywrap.KEYS,
    "`[keys.pkcs11]` (collector.toml)": pkcs11_signer.KEYS,
    "`[crl]` (collector.toml)": core.CRL_KEYS,
    "`[agent]` (agent.toml)": frozenset(agent_core._AGENT_KEYS),
    "`[[store]]` (agent.toml)": frozenset(agent_core._STORE_KEYS),
    "`verify` entries of a `[[store]]` (agent.toml)": frozenset(agent_core._VERIFY_KEYS),
    "`[reload.<name>]` (agent.toml)": frozenset(agent_core._RELOAD_KEYS),
    "`[endpoints]` (agent.toml)": frozenset(endpoint_settings._ENDPOINT_KEYS),
    "`targets` tables of `[endpoints]` (agent.toml)": frozenset(endpoint_settings._TARGET_KEYS),
    "`[discovery]` (agent.toml)": frozenset(discovery_settings._DISCOVERY_KEYS),
    "`[windows]` (agent.toml)": frozenset(windows_settings._KEYS),
    "`[metrics]` (agent.toml)": frozenset(agent_metrics._KEYS),
    "`[log]` (agent.toml)": frozenset(agent_metrics._LOG_KEYS),
}


def documented() -> dict[str, list[str]]:
    """Each heading of the settings reference -> the keys its list names (``- `key`: ...``)."""
    text = README.read_text()
    start = text.index("\n## Settings reference\n")
    end = text.index("\n## ", start + 1)
    out: dict[str, list[str]] = {}
    current = None
    for line in text[start:end].splitlines():
        if line.startswith("### "):
            current = line[4:].strip()
            out[current] = []
        elif current is not None and (m := re.match(r"- `([a-z0-9_]+)`:", line)):
            out[current].append(m.group(1))
    return out


def test_every_table_has_a_list_and_every_list_a_reader() -> None:
    assert set(documented()) == set(READERS)
    # every collector table and every agent feature section is covered
    tables = {h.split("`")[1].split(".")[0].strip("[]") for h in READERS}
    assert set(core.TABLES) <= tables | {"issuers", "templates"}
    assert set(SECTIONS) <= tables           # the agent's feature sections


@pytest.mark.parametrize("heading", sorted(READERS))
def test_the_readme_lists_exactly_the_keys_the_reader_accepts(heading: str) -> None:
    keys = documented()[heading]
    assert len(keys) == len(set(keys)), f"{heading}: a key is listed twice"
    missing = sorted(READERS[heading] - set(keys))
    extra = sorted(set(keys) - READERS[heading])
    assert not missing, f"README {heading}: undocumented setting(s) {missing}"
    assert not extra, f"README {heading}: documented but not accepted: {extra}"
