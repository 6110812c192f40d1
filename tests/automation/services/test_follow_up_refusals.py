"""A refused ``schedule_follow_up`` request is kept: a record, one timeline entry, the tab and the API."""

import pytest
from rest_framework.test import APIClient

from automation.models import FollowUp, FollowUpRefusal
from automation.services import runs
from automation.services.execution import execute_run
from automation.states import RunSource

pytestmark = pytest.mark.django_db

TOO_SOON = "!follow_up 5 check again very soon"
LATER = "!follow_up 7200 check back on the refund"


def run_script(roster, prompt, run_as=None, **kw):
    run = runs.run_create(
        agent=roster.agent, run_as=run_as or roster.member, source=RunSource.MANUAL, prompt=prompt, **kw
    )
    assert execute_run(run_id=run.pk, worker="test") == "completed"
    run.refresh_from_db()
    return run


def refused_entries(run):
    return list(run.events.filter(kind="follow_up_refused").values_list("detail", flat=True))


def test_a_request_under_the_minimum_delay_is_recorded(roster):
    run = run_script(roster, TOO_SOON, context_type="ticket", context_key="T-5")
    refusal = FollowUpRefusal.objects.get()
    assert (refusal.run, refusal.run_as, refusal.code) == (run, roster.member, "invalid_request")
    assert "at least" in refusal.reason
    assert refusal.arguments["continuation_prompt"] == "check again very soon"
    assert (refusal.context_type, refusal.context_key, refusal.thread_id) == ("ticket", "T-5", run.thread_id)
    (entry,) = refused_entries(run)
    assert entry == {"refusal_id": refusal.pk, "code": "invalid_request", "reason": refusal.reason}
    assert not FollowUp.objects.exists()


def test_capability_off_is_refused_by_name_with_the_same_entry(roster):
    roster.agent.self_reschedule_enabled = False
    roster.agent.save()
    run = run_script(roster, LATER)
    refusal = FollowUpRefusal.objects.get()
    assert refusal.code == "capability_off" and "Self-reschedule" in refusal.reason
    (entry,) = refused_entries(run)
    assert entry["code"] == "capability_off" and "Self-reschedule" in entry["reason"]
    assert "Self-reschedule" in run.thread.messages.get(role="tool").content


def test_the_tab_and_the_api_show_refusals_in_scope(client, roster):
    mine = run_script(roster, TOO_SOON)
    run_script(roster, TOO_SOON, run_as=roster.member2)
    client.force_login(roster.member)
    page = client.get("/orgs/acme/agents/monitor/automation-runs/follow-ups/", {"status": "refused"})
    html = page.content.decode()
    assert html.count('class="refusal-row"') == 1 and str(mine.pk)[:8] in html and "invalid_request" in html

    api = APIClient()
    api.force_authenticate(roster.owner)
    body = api.get("/api/orgs/acme/agent-run-follow-up-refusals").json()
    assert len(body["results"]) == 2
    assert {"runId", "code", "reason", "arguments", "runAsId"} <= set(body["results"][0])
    api.force_authenticate(roster.member)
    (only,) = api.get("/api/orgs/acme/agent-run-follow-up-refusals").json()["results"]
    assert only["runId"] == str(mine.pk)
    api.force_authenticate(roster.other_owner)
    assert api.get("/api/orgs/globex/agent-run-follow-up-refusals").json()["results"] == []
