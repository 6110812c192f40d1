from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from automation.models import FollowUp
from automation.states import FollowUpStatus
from tests.factories import AgentFactory, AgentRunFactory, FollowUpFactory, ThreadFactory

URL = "/api/orgs/acme/agent-run-follow-ups"


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def seeded(roster):
    second_agent = AgentFactory(organization=roster.org, name="Second agent")
    thread = ThreadFactory(agent=roster.agent)
    soon = timezone.now() + timedelta(hours=1)

    def make(run_as, status=FollowUpStatus.PENDING, agent=roster.agent, **kw):
        return FollowUpFactory(agent=agent, run_as=run_as, status=status, scheduled_for=soon, **kw)

    return {
        "owner_pending": make(roster.owner, context_type="ticket", context_key="T-1", thread=thread),
        "owner_running": make(roster.owner, FollowUpStatus.RUNNING, context_type="ticket", context_key="T-2"),
        "owner_completed": make(roster.owner, FollowUpStatus.COMPLETED, agent=second_agent),
        "owner_cancelled": make(roster.owner, FollowUpStatus.CANCELLED, thread=thread),
        "owner_failed": make(roster.owner, FollowUpStatus.FAILED, context_type="mail", context_key="T-1"),
        "member_pending": make(roster.member, agent=second_agent),
        "member_done": make(roster.member, FollowUpStatus.COMPLETED),
        "member2_pending": make(roster.member2),
        "foreign": make(roster.other_owner, agent=roster.other_agent),
        "second_agent": second_agent,
        "thread": thread,
    }


def ids(response):
    assert response.status_code == 200, response.content
    return {r["id"] for r in response.json()["results"]}


def pks(seeded, *names):
    return {seeded[n].pk for n in names}


ACME = {k for k in ("owner_pending", "owner_running", "owner_completed", "owner_cancelled", "owner_failed",
                    "member_pending", "member_done", "member2_pending")}  # fmt: skip


@pytest.mark.sqlite
def test_owner_sees_the_org_with_camel_case_keys(api, roster, seeded):
    api.force_authenticate(roster.owner)
    response = api.get(URL)
    assert ids(response) == pks(seeded, *ACME)
    row = next(r for r in response.json()["results"] if r["id"] == seeded["owner_pending"].pk)
    assert {"agentId", "runAsId", "previousRunId", "threadId", "runId", "scheduledFor", "stopConditions",
            "continuationPrompt", "cancelReason", "claimedAt", "lastError"} <= set(row)  # fmt: skip
    assert row["threadId"] == seeded["thread"].pk and row["contextKey"] == "T-1"
    assert set(response.json()) == {"results", "next", "previous"}


@pytest.mark.sqlite
@pytest.mark.parametrize(
    "params, expected",
    [
        ({"status": "pending"}, {"owner_pending", "member_pending", "member2_pending"}),
        ({"status": "failed"}, {"owner_failed"}),
        ({"statusGroup": "active"}, {"owner_pending", "owner_running", "member_pending", "member2_pending"}),
        ({"contextType": "ticket"}, {"owner_pending", "owner_running"}),
        ({"contextKey": "T-1"}, {"owner_pending", "owner_failed"}),
        ({"contextType": "ticket", "contextKey": "T-1"}, {"owner_pending"}),
        ({"statusGroup": "active", "contextType": "ticket"}, {"owner_pending", "owner_running"}),
    ],
)
def test_each_filter_narrows(api, roster, seeded, params, expected):
    api.force_authenticate(roster.owner)
    assert ids(api.get(URL, params)) == pks(seeded, *expected)


@pytest.mark.sqlite
def test_agent_and_thread_filters_narrow(api, roster, seeded):
    api.force_authenticate(roster.owner)
    assert ids(api.get(URL, {"agentId": seeded["second_agent"].pk})) == pks(
        seeded, "owner_completed", "member_pending"
    )
    assert ids(api.get(URL, {"threadId": seeded["thread"].pk})) == pks(
        seeded, "owner_pending", "owner_cancelled"
    )


@pytest.mark.sqlite
def test_status_group_active_returns_only_pending_and_running(api, roster, seeded):
    api.force_authenticate(roster.owner)
    statuses = {r["status"] for r in api.get(URL, {"statusGroup": "active", "limit": 200}).json()["results"]}
    assert statuses == {"pending", "running"}


@pytest.mark.sqlite
@pytest.mark.parametrize(
    "params",
    [
        {"status": "sleeping"},
        {"statusGroup": "done"},
        {"agentId": "abc"},
        {"agentId": "1.5"},
        {"agentId": "99999999999999999999999"},
        {"threadId": "-3"},
        {"contextKey": "a\x00b"},
        {"limit": "0"},
        {"limit": "lots"},
        {"cursor": "not-a-cursor"},
    ],
)
def test_bad_filter_values_answer_400_with_a_detail(api, roster, seeded, params):
    api.force_authenticate(roster.owner)
    response = api.get(URL, params)
    assert response.status_code == 400, response.content
    assert "detail" in response.json()


@pytest.mark.sqlite
def test_an_agent_of_another_org_is_a_400(api, roster, seeded):
    api.force_authenticate(roster.owner)
    response = api.get(URL, {"agentId": roster.other_agent.pk})
    assert response.status_code == 400 and "agentId" in response.json()


@pytest.mark.sqlite
def test_pagination_walks_every_row_once(api, roster, seeded):
    api.force_authenticate(roster.owner)
    seen, url, params = [], URL, {"limit": 3}
    while url:
        body = api.get(url, params).json()
        seen += [r["id"] for r in body["results"]]
        url, params = body["next"], None
    assert len(seen) == len(set(seen)) and set(seen) == pks(seeded, *ACME)


@pytest.mark.sqlite
def test_member_sees_only_their_own(api, roster, seeded):
    api.force_authenticate(roster.member)
    assert ids(api.get(URL)) == pks(seeded, "member_pending", "member_done")
    assert api.get(f"{URL}/{seeded['owner_pending'].pk}").status_code == 404
    assert api.delete(f"{URL}/{seeded['member2_pending'].pk}").status_code == 404
    assert FollowUp.objects.get(pk=seeded["member2_pending"].pk).status == FollowUpStatus.PENDING


@pytest.mark.sqlite
def test_delete_cancels_a_pending_follow_up(api, roster, seeded):
    api.force_authenticate(roster.member)
    target = seeded["member_pending"]
    response = api.delete(f"{URL}/{target.pk}")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["id"] == target.pk and body["status"] == "cancelled" and body["cancelledAt"]
    assert "member" in body["cancelReason"]
    assert api.get(f"{URL}/{target.pk}").json()["status"] == "cancelled"


@pytest.mark.sqlite
@pytest.mark.parametrize("name", ["owner_running", "owner_completed", "owner_cancelled"])
def test_delete_on_a_running_or_ended_follow_up_is_409(api, roster, seeded, name):
    api.force_authenticate(roster.owner)
    response = api.delete(f"{URL}/{seeded[name].pk}")
    assert response.status_code == 409 and "detail" in response.json()
    assert FollowUp.objects.get(pk=seeded[name].pk).status == seeded[name].status


@pytest.mark.sqlite
def test_detail_shows_the_run_it_became(api, roster, seeded):
    run = AgentRunFactory(agent=roster.agent, run_as=roster.owner)
    FollowUp.objects.filter(pk=seeded["owner_running"].pk).update(run=run, previous_run=run)
    api.force_authenticate(roster.admin)
    body = api.get(f"{URL}/{seeded['owner_running'].pk}").json()
    assert body["runId"] == str(run.pk) and body["previousRunId"] == str(run.pk)


@pytest.mark.sqlite
@pytest.mark.parametrize(
    "who, status", [("viewer", 403), ("outsider", 404), ("other_owner", 404), ("superuser", 200), (None, 401)]
)
def test_permissions(api, roster, seeded, who, status):
    if who:
        api.force_authenticate(getattr(roster, who))
    assert api.get(URL).status_code == status
    assert api.delete(f"{URL}/{seeded['owner_pending'].pk}").status_code == status


@pytest.mark.sqlite
def test_other_orgs_follow_up_is_404(api, roster, seeded):
    api.force_authenticate(roster.owner)
    assert api.get(f"{URL}/{seeded['foreign'].pk}").status_code == 404
    assert api.delete(f"{URL}/{seeded['foreign'].pk}").status_code == 404


@pytest.mark.sqlite
def test_runs_summary_counts_active_follow_ups(api, roster, seeded):
    api.force_authenticate(roster.owner)
    assert api.get("/api/orgs/acme/agent-runs").json()["summary"]["activeFollowUps"] == 4
    api.force_authenticate(roster.member)
    assert api.get("/api/orgs/acme/agent-runs").json()["summary"]["activeFollowUps"] == 1
