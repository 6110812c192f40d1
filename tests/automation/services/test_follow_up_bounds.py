"""Issue 13 defect 8: a follow-up request beyond the calendar is refused back to the agent.

Delays, ``at`` instants and deadlines that no date can hold used to fail the whole run with
an overflow. Through both runtimes' tool paths (the scripted ``!follow_up`` directive and
the JSON arguments a model sends) the agent now gets the reason, nothing is stored, and
the run goes on to its answer.
"""

import json

import pytest

from automation.models import FollowUp
from automation.services import runs
from automation.services.execution import execute_run
from automation.states import RunSource, RunStatus
from tests.support.model_stub import ModelStub, Reply, completion

pytestmark = pytest.mark.django_db

HORIZON = "is beyond that horizon"
OUT_OF_RANGE = "is outside the calendar's range in UTC"


def finish(roster, prompt: str):
    run = runs.run_create(agent=roster.agent, run_as=roster.member, source=RunSource.MANUAL, prompt=prompt)
    assert execute_run(run_id=run.pk, worker="test") == "completed"
    run.refresh_from_db()
    return run


def assert_refused_and_run_went_on(run, reason: str, reply: str) -> None:
    assert run.status == RunStatus.COMPLETED and not run.last_error
    assert not FollowUp.objects.exists()
    tool_message = run.thread.messages.get(role="tool")
    assert reason in tool_message.content
    assert [reason in e.detail["reason"] for e in run.events.filter(kind="follow_up_refused")] == [True]
    assert run.thread.messages.filter(role="assistant", content=reply).exists()


@pytest.mark.parametrize(
    "directives, reason",
    [
        ("!follow_up 1e12 check later", HORIZON),
        ("!follow_up 1e15 check later", HORIZON),
        ("!follow_up 1e400 check later", "delay_seconds must be a number of seconds"),
        (f"!follow_up {'9' * 400} check later", "delay_seconds must be a number of seconds"),
        ("!follow_up 3600 check later\n!stop_when deadline 1e15", "is not an ISO 8601 instant"),
        ("!follow_up 3600 check later\n!stop_when deadline 1e12", "is not an ISO 8601 instant"),
        ("!follow_up 3600 check later\n!stop_when deadline 9999-12-31T23:59:00-05:00", OUT_OF_RANGE),
    ],
)
def test_defect8_scripted_follow_up_beyond_the_calendar_is_refused_and_the_run_goes_on(
    roster, directives, reason
):
    run = finish(roster, f"{directives}\n!reply still here")
    assert_refused_and_run_went_on(run, reason, "still here")


@pytest.fixture
def model(settings):
    """A real local chat-completions server, named as an operator endpoint."""
    stub = ModelStub().start()
    settings.AUTOMATION_MODEL_ENDPOINTS = {"stub": {"base_url": stub.url, "max_retries": 0}}
    yield stub
    stub.stop()


def arguments(**fields) -> str:
    return json.dumps({"continuation_prompt": "check later", **fields})


@pytest.mark.parametrize(
    "raw, reason",
    [
        (arguments(delay_seconds=1e12), HORIZON),
        (arguments(delay_seconds=1e15), HORIZON),
        (arguments(delay_seconds=10**400), "delay_seconds must be a number of seconds"),
        ('{"delay_seconds": 1e999, "continuation_prompt": "x"}', "delay_seconds must be a number of seconds"),
        ('{"delay_seconds": NaN, "continuation_prompt": "x"}', "delay_seconds must be a number of seconds"),
        (arguments(at="0001-01-01T00:00+05:00"), OUT_OF_RANGE),
        (arguments(at="9999-12-31T23:59:00-05:00"), OUT_OF_RANGE),
        (arguments(at="9999-12-31T23:59:00Z"), HORIZON),
        (
            arguments(
                delay_seconds=3600, stop_conditions=[{"type": "deadline", "at": "9999-12-31T23:59-05:00"}]
            ),
            OUT_OF_RANGE,
        ),
        (
            arguments(
                delay_seconds=3600, stop_conditions=[{"type": "deadline", "at": "0001-01-01T00:00+05:00"}]
            ),
            OUT_OF_RANGE,
        ),
    ],
)
def test_defect8_tool_json_arguments_beyond_the_calendar_are_refused_and_the_run_goes_on(
    roster, model, raw, reason
):
    """The model's raw JSON text, sent as it would send it: first the call, then its answer."""
    call = {"id": "c1", "type": "function", "function": {"name": "schedule_follow_up", "arguments": raw}}
    model.replies = [
        Reply(body=completion(None, tool_calls=[call])),
        Reply(body=completion("Noted, carrying on.")),
    ]
    roster.agent.runtime, roster.agent.runtime_config = "openai", {"endpoint": "stub", "model": "m"}
    roster.agent.save()
    run = finish(roster, "Follow up if they stay silent.")
    assert_refused_and_run_went_on(run, reason, "Noted, carrying on.")
    assert len(model.requests) == 2
