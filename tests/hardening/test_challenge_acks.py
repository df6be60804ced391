"""An ACME challenge answer is taken only from the agent of the job it is for: another enrolled
agent cannot answer (and so fake) someone else's http-01 challenge."""
from __future__ import annotations

import threading
from types import SimpleNamespace


from collector import errors
from collector.domain.jobstates import CHALLENGE_READY, AgentJobUpdate
from collector.services.challenges import ChallengeBroker

JOB = SimpleNamespace(job_id="job-1", agent_id="agent-a", store_type="pem", path="/etc/ssl/www.pem", alias="",
                      chain_index=0)


def _present(broker: ChallengeBroker, result: list) -> threading.Thread:  # noqa: ANN001
    def run() -> None:
        with broker.for_job(JOB):  # type: ignore[arg-type]
            try:
                broker.present("tok123", "tok123.keyauth", "www.example.com")
                result.append("placed")
            except errors.CollectorError as e:
                result.append(str(e))

    t = threading.Thread(target=run)
    t.start()
    return t


def test_only_the_jobs_agent_answers_its_challenge() -> None:
    broker = ChallengeBroker(timeout=3)
    result: list[str] = []
    t = _present(broker, result)
    while not broker.take("agent-a"):    # the command went to the job's agent
        pass
    answer = AgentJobUpdate(job_id="job-1", state=CHALLENGE_READY, challenge_token="tok123")
    assert broker.ack(answer, "agent-b") is False                           # another agent: ignored
    assert broker.ack(AgentJobUpdate(job_id="job-2", state=CHALLENGE_READY, challenge_token="tok123"),
                      "agent-a") is False                                   # the right agent, another job
    assert broker.ack(answer, "agent-a") is True
    t.join(5)
    assert result == ["placed"]


def test_a_foreign_answer_leaves_the_challenge_unanswered() -> None:
    broker = ChallengeBroker(timeout=1.5)
    result: list[str] = []
    t = _present(broker, result)
    while not broker.take("agent-a"):
        pass
    broker.ack(AgentJobUpdate(job_id="job-1", state=CHALLENGE_READY, challenge_token="tok123"), "agent-b")
    t.join(5)
    assert result and "did not place the http-01 challenge" in result[0]
