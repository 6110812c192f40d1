"""Hostile ``schedule_follow_up`` arguments, as a model may send them: any JSON value in any
field. The tool answers with a follow-up or a refusal that carries a reason; it never raises
into the run, and a refusal stores nothing. Bounded, derandomized examples."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from automation import tools
from automation.models import FollowUp
from automation.services import runs
from tests.factories import AgentRunFactory

FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=30)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
    max_leaves=6,
)
MOMENTS = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.builds(lambda s: (timezone.now() + timedelta(seconds=s)).isoformat(), st.integers(-(10**6), 10**8)),
    st.sampled_from(["0001-01-01T00:00+05:00", "9999-12-31T23:59-05:00", "9999-12-31T23:59:59.999999+00:00"]),
)
CONDITION = st.fixed_dictionaries(
    {"type": st.one_of(st.sampled_from(["reply_received", "context_active", "deadline"]), JSON_VALUES)},
    optional={"at": st.one_of(MOMENTS, JSON_VALUES), "description": st.one_of(ANY_TEXT, JSON_VALUES)},
)
ARGUMENTS = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "delay_seconds": st.one_of(
                st.integers(), st.floats(), st.integers(-(10**3), 10**7), st.integers().map(str), JSON_VALUES
            ),
            "at": st.one_of(MOMENTS, JSON_VALUES),
            "continuation_prompt": st.one_of(st.just("check back"), ANY_TEXT, JSON_VALUES),
            "stop_conditions": st.one_of(st.lists(CONDITION, max_size=3), JSON_VALUES),
        },
    ),
    JSON_VALUES,
)


@FUZZ
@given(arguments=ARGUMENTS)
@pytest.mark.django_db
def test_any_tool_arguments_schedule_a_follow_up_or_are_refused_with_a_reason(roster, arguments):
    FollowUp.objects.all().delete()
    run = AgentRunFactory(agent=roster.agent, run_as=roster.member)
    lease = runs.claim_run(run_id=run.pk, worker="fuzz")
    (tool,) = tools.tools_for_run(run=lease.run, lease_token=lease.token)
    # What the openai runtime hands the tool: the model's JSON text, decoded.
    decoded = json.loads(json.dumps(arguments, allow_nan=True))
    result = tool.call(decoded)
    if result["ok"]:
        follow_up = FollowUp.objects.get(pk=result["follow_up_id"])
        assert follow_up.scheduled_for > timezone.now()
        assert follow_up.continuation_prompt.strip()
    else:
        assert isinstance(result["error"], str) and result["error"]
        assert not FollowUp.objects.exists()
