"""Issue 13 defect 8: a follow-up request beyond the calendar is refused back to the agent.

Delays, ``at`` instants and deadlines that no date can hold used to fail the whole run with
an overflow. Through both runtimes' tool paths (the scripted ``!follow_up`` directive and
the JSON arguments a model sends) the agent now gets the reason, nothing is stored, and
the run goes on to its answer.
"""

import json
from types import SimpleNamespace

import openai
import pytest
from openai.types.chat import ChatCompletion

from automation.models import FollowUp
from automation.services import runs
from automation.services.execution import execute_run
from automation.states import RunSource, RunStatus

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


class ModelAsking:
    """The SDK client: first a ``schedule_follow_up`` call with ``arguments`` (the raw JSON
    text a model sends), then a reply."""

    arguments = "{}"
    calls = 0

    def __init__(self, **kwargs):
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self.create))

    def create(self, **request):
        ModelAsking.calls += 1
        if ModelAsking.calls == 1:
            call = {"id": "c1", "type": "function",
                    "function": {"name": "schedule_follow_up", "arguments": ModelAsking.arguments}}  # fmt: skip
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
        else:
            message = {"role": "assistant", "content": "Noted, carrying on."}
        return ChatCompletion.model_validate(
            {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
             "choices": [{"index": 0, "finish_reason": "stop", "message": message}]}
        )  # fmt: skip


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
    roster, monkeypatch, raw, reason
):
    monkeypatch.setattr(openai, "OpenAI", ModelAsking)
    monkeypatch.setattr(ModelAsking, "arguments", raw)
    monkeypatch.setattr(ModelAsking, "calls", 0)
    roster.agent.runtime, roster.agent.runtime_config = "openai", {"model": "m"}
    roster.agent.save()
    run = finish(roster, "Follow up if they stay silent.")
    assert_refused_and_run_went_on(run, reason, "Noted, carrying on.")
