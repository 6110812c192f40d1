"""The API shows why runs wait (``waitingReason``, filterable) and the capacity, limits and
daily budgets of the organization and its agents."""

from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from automation.models import AgentRun
from automation.services import runs
from automation.states import RunStatus
from tests.factories import AgentRunFactory

RUNS = "/api/orgs/acme/agent-runs"
CAPACITY = "/api/orgs/acme/capacity"


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def at_limit(roster):
    """Acme at its limit of 1: one running run, two held behind it, one not yet due."""
    roster.org.max_concurrent_runs = 1
    roster.org.daily_token_limit = 10_000
    roster.org.save()
    roster.agent.max_tokens_per_run = 4000
    roster.agent.save()
    first, *held = (AgentRunFactory(agent=roster.agent, run_as=roster.owner) for _ in range(3))
    runs.claim_run(run_id=first.pk, worker="w")
    for run in held:
        assert runs.claim_run(run_id=run.pk, worker="w") is None
    later = runs.run_create(
        agent=roster.agent,
        run_as=roster.member,
        source="manual",
        prompt="later",
        not_before=timezone.now() + timezone.timedelta(hours=2),
    )
    AgentRun.objects.filter(pk=first.pk).update(input_tokens=1200, output_tokens=300, cost=Decimal("0.02"))
    return {"first": first, "held": held, "later": later}


@pytest.mark.sqlite
def test_runs_show_their_waiting_reason_and_filter_by_it(api, roster, at_limit):
    api.force_authenticate(roster.owner)
    body = api.get(RUNS).json()
    reasons = {r["id"]: r["waitingReason"] for r in body["results"]}
    assert reasons[str(at_limit["first"].pk)] == ""
    assert {reasons[str(r.pk)] for r in at_limit["held"]} == {"organization at its limit (1 / 1)"}
    assert reasons[str(at_limit["later"].pk)].startswith("not yet due (starts at ")
    held = api.get(RUNS, {"waitingReason": "org_limit"}).json()["results"]
    assert {r["id"] for r in held} == {str(r.pk) for r in at_limit["held"]}
    not_due = api.get(RUNS, {"waitingReason": "not_due"}).json()["results"]
    assert [r["id"] for r in not_due] == [str(at_limit["later"].pk)]
    detail = api.get(f"{RUNS}/{at_limit['held'][0].pk}").json()
    assert detail["waitingReason"] == "organization at its limit (1 / 1)"


@pytest.mark.sqlite
def test_a_member_filtering_by_reason_sees_only_their_own_runs(api, roster, at_limit):
    api.force_authenticate(roster.member)
    assert api.get(RUNS, {"waitingReason": "org_limit"}).json()["results"] == []
    assert len(api.get(RUNS, {"waitingReason": "not_due"}).json()["results"]) == 1


@pytest.mark.sqlite
def test_an_unknown_waiting_reason_is_a_400(api, roster, at_limit):
    api.force_authenticate(roster.owner)
    response = api.get(RUNS, {"waitingReason": "because"})
    assert response.status_code == 400
    assert "waitingReason" in response.json()


@pytest.mark.sqlite
def test_capacity_shows_in_flight_limits_budgets_and_waiting_counts(api, roster, at_limit):
    api.force_authenticate(roster.admin)
    body = api.get(CAPACITY).json()
    assert body["inFlight"] == 1 and body["maxConcurrentRuns"] == 1 and body["effectiveLimit"] == 1
    assert body["dailyTokenLimit"] == 10_000 and body["dailyRunLimit"] is None
    assert body["usageToday"] == {"runs": 1, "tokens": 1500, "cost": "0.020000"}
    waiting = {w["reason"]: w["count"] for w in body["waiting"]}
    assert waiting["org_limit"] == 2 and waiting["not_due"] == 1 and waiting["budget"] == 0
    agent = next(a for a in body["agents"] if a["id"] == roster.agent.pk)
    assert agent["inFlight"] == 1 and agent["effectiveLimit"] is None and agent["maxTokensPerRun"] == 4000
    assert body["timezone"] == "UTC"


@pytest.mark.sqlite
def test_capacity_of_another_org_is_hidden(api, roster, at_limit):
    api.force_authenticate(roster.other_owner)
    assert api.get(CAPACITY).status_code == 404
    api.force_authenticate(roster.viewer)
    assert api.get(CAPACITY).status_code == 403


@pytest.mark.sqlite
def test_the_running_run_has_no_reason(api, roster, at_limit):
    api.force_authenticate(roster.owner)
    running = api.get(RUNS, {"status": RunStatus.RUNNING}).json()["results"]
    assert [r["waitingReason"] for r in running] == [""]
