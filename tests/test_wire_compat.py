"""An agent of the previous release (0.1) still works against this collector.

0.1 agents send JobUpdate.state as text in field 2; since then the state is an enum in field 9
and field 2 is reserved. The messages below were recorded from the 0.1 stubs (git show
e7bd622:proto/certfleet/v1/agent_pb2.py) as an agent sends them on its Connect stream.
"""
from __future__ import annotations

from certfleet.v1 import agent_pb2
from collector.api import convert

JOB = "0f5c2d9e-3b7a-4c1e-9d2f-6a8b1c3e5f70"
# AgentMessage(job_update=JobUpdate(job_id=JOB, state="verified", reason="served by 127.0.0.1:8443",
#   served_fingerprint="ab"*32, steps=[JobStep("reload", True, "nginx", 0.25)], reload_seconds=0.25))
OLD_VERIFIED = bytes.fromhex(
    "12b1010a2430663563326439652d336237612d346331652d396432662d366138623163336535663730120876657269666965"
    "641a18736572766564206279203132372e302e302e313a383434332a40616261626162616261626162616261626162616261"
    "62616261626162616261626162616261626162616261626162616261626162616261626162616261626162321a0a0672656c"
    "6f616410011a056e67696e7821000000000000d03f39000000000000d03f")
# AgentMessage(job_update=JobUpdate(job_id=JOB, state="csr_ready", csr_der=b"0\x82CSR"))
OLD_CSR_READY = bytes.fromhex(
    "12380a2430663563326439652d336237612d346331652d396432662d36613862316333653566373012096373725f72656164"
    "7922053082435352")


def _update(raw: bytes):  # noqa: ANN202
    msg = agent_pb2.AgentMessage()
    msg.ParseFromString(raw)
    assert msg.HasField("job_update")
    return convert.job_update_in(msg.job_update)


def test_a_0_1_agent_verified_update_is_read_with_its_state_and_steps() -> None:
    u = _update(OLD_VERIFIED)
    assert (u.job_id, u.state, u.reason) == (JOB, "verified", "served by 127.0.0.1:8443")
    assert u.served_fingerprint == "ab" * 32 and u.reload_seconds == 0.25
    assert [(s.step, s.ok, s.detail, s.seconds) for s in u.steps] == [("reload", True, "nginx", 0.25)]


def test_a_0_1_agent_csr_is_read() -> None:
    u = _update(OLD_CSR_READY)
    assert (u.job_id, u.state, u.csr_der) == (JOB, "csr_ready", b"0\x82CSR")


def test_the_enum_wins_and_unknown_text_is_not_a_state() -> None:
    new = agent_pb2.JobUpdate(job_id=JOB, state=agent_pb2.JOB_UPDATE_STATE_ROLLED_BACK)
    assert convert.job_update_in(new).state == "rolled_back"
    # a text state that is not one an agent may report is no state at all (the renewal service refuses it)
    forged = agent_pb2.JobUpdate()
    forged.ParseFromString(agent_pb2.JobUpdate(job_id=JOB).SerializeToString() + b"\x12\x09cancelled")
    assert convert.job_update_in(forged).state == ""
