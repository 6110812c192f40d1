import json
import uuid

import pytest
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone
from djangorestframework_camel_case.util import camelize
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from automation.api.runs import AgentRunSerializer
from automation.models import AgentRun
from automation.states import RunStatus
from tests.factories import AgentRunFactory

URL = "/api/orgs/acme/agent-runs"


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def seeded(roster):
    rows = {
        "owner_failed": AgentRunFactory(
            agent=roster.agent, run_as=roster.owner, status=RunStatus.FAILED, last_error="boom"
        ),
        "member_pending": AgentRunFactory(agent=roster.agent, run_as=roster.member, status=RunStatus.PENDING),
        "member_done": AgentRunFactory(agent=roster.agent, run_as=roster.member, status=RunStatus.COMPLETED),
        "member2_running": AgentRunFactory(
            agent=roster.agent, run_as=roster.member2, status=RunStatus.RUNNING
        ),
        "foreign": AgentRunFactory(
            agent=roster.other_agent, run_as=roster.other_owner, status=RunStatus.PENDING
        ),
    }
    return rows


def ids(response):
    return {r["id"] for r in response.json()["results"]}


@pytest.mark.sqlite
def test_owner_sees_the_org_and_summary_matches(api, roster, seeded):
    api.force_authenticate(roster.owner)
    body = api.get(URL).json()
    assert {r["id"] for r in body["results"]} == {str(r.pk) for k, r in seeded.items() if k != "foreign"}
    assert body["summary"] == {
        "pending": 1, "running": 1, "completed": 1, "failed": 1, "cancelled": 0, "interrupted": 0,
        "scheduled": 0, "activeFollowUps": 0,
    }  # fmt: skip
    first = body["results"][0]
    assert {
        "agentId",
        "runAsId",
        "threadId",
        "scheduleId",
        "actionId",
        "followUpId",
        "previousRunId",
        "leaseOwner",
    } <= set(first)


@pytest.mark.sqlite
def test_member_sees_only_their_runs_and_summary_counts_their_scope(api, roster, seeded):
    api.force_authenticate(roster.member)
    response = api.get(URL)
    assert ids(response) == {str(seeded["member_pending"].pk), str(seeded["member_done"].pk)}
    summary = response.json()["summary"]
    assert (summary["pending"], summary["completed"], summary["running"], summary["failed"]) == (1, 1, 0, 0)
    assert api.get(f"{URL}/{seeded['owner_failed'].pk}").status_code == 404


def test_summary_ignores_the_status_filter(api, roster, seeded):
    api.force_authenticate(roster.owner)
    body = api.get(URL, {"status": "failed"}).json()
    assert [r["status"] for r in body["results"]] == ["failed"]
    assert body["summary"]["pending"] == 1


@pytest.mark.parametrize(
    "who, status", [("outsider", 404), ("other_owner", 404), ("viewer", 403), ("member", 200), ("admin", 200)]
)
def test_access_rules(api, roster, seeded, who, status):
    api.force_authenticate(getattr(roster, who))
    response = api.get(URL)
    assert response.status_code == status
    assert "detail" in response.json() or status == 200
    assert str(seeded["foreign"].pk) not in response.content.decode()


def test_anonymous_is_refused_and_token_auth_works(api, roster, seeded):
    assert api.get(URL).status_code in (401, 403)
    token = Token.objects.create(user=roster.owner)
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert api.get(URL).status_code == 200


@pytest.mark.parametrize(
    "params, field",
    [
        ({"status": "bogus"}, "status"),
        ({"source": "nope"}, "source"),
        ({"limit": "0"}, "limit"),
        ({"limit": "100000"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"agentId": "999999"}, "agentId"),
        ({"agentId": "abc"}, "agentId"),
        ({"cursor": "%%%not-a-cursor"}, "cursor"),
    ],
)
def test_invalid_filters_answer_400_with_detail(api, roster, seeded, params, field):
    api.force_authenticate(roster.owner)
    response = api.get(URL, params)
    assert response.status_code == 400, response.content
    body = response.json()
    assert "detail" in body and field in body


def test_foreign_agent_id_is_refused(api, roster, seeded):
    api.force_authenticate(roster.owner)
    assert api.get(URL, {"agentId": roster.other_agent.pk}).status_code == 400


def test_malformed_run_id_is_400_and_unknown_is_404(api, roster):
    api.force_authenticate(roster.owner)
    assert api.get(f"{URL}/not-a-uuid").status_code == 400
    assert api.get(f"{URL}/{uuid.uuid4()}").status_code == 404


def test_cursor_pagination_walks_every_row_once(api, roster):
    for _ in range(7):
        AgentRunFactory(agent=roster.agent, run_as=roster.owner)
    api.force_authenticate(roster.owner)
    seen, url = [], URL + "?limit=3"
    while url:
        body = api.get(url).json()
        seen += [r["id"] for r in body["results"]]
        url = body["next"]
    assert len(seen) == 7 == len(set(seen))


def test_manual_run_create_and_mass_assignment_is_ignored(api, roster, django_capture_on_commit_callbacks):
    api.force_authenticate(roster.member)
    with django_capture_on_commit_callbacks():
        response = api.post(
            URL,
            {
                "agentId": roster.agent.pk,
                "prompt": "!reply hi",
                "status": "completed",
                "leaseOwner": "x",
                "organization": roster.other_org.pk,
            },
            format="json",
        )
    assert response.status_code == 201, response.content
    run = AgentRun.objects.get(pk=response.json()["id"])
    assert run.status == RunStatus.PENDING and run.lease_owner == "" and run.organization == roster.org
    assert run.run_as == roster.member and run.source == "manual"


def test_member_cannot_start_a_run_as_someone_else(api, roster):
    api.force_authenticate(roster.member)
    response = api.post(
        URL, {"agentId": roster.agent.pk, "prompt": "x", "runAsId": roster.owner.pk}, format="json"
    )
    assert response.status_code == 403
    assert not AgentRun.objects.exists()


@pytest.mark.parametrize(
    "body, field",
    [
        ({"prompt": "x"}, "agentId"),
        ({"agentId": 1}, "prompt"),
        ({"agentId": 999999, "prompt": "x"}, "agentId"),
        ({"agentId": None, "prompt": "x", "threadId": 999999}, "agentId"),
    ],
)
def test_manual_run_validation(api, roster, body, field):
    api.force_authenticate(roster.owner)
    response = api.post(URL, body, format="json")
    assert response.status_code == 400 and field in response.json()
    assert not AgentRun.objects.exists()


def test_second_manual_run_on_a_busy_context_is_409(api, roster):
    api.force_authenticate(roster.owner)
    body = {"agentId": roster.agent.pk, "prompt": "x", "contextType": "ticket", "contextKey": "T-9"}
    assert api.post(URL, body, format="json").status_code == 201
    response = api.post(URL, body, format="json")
    assert response.status_code == 409 and "activeRunId" in response.json()


def test_cancel_and_retry(api, roster, seeded):
    api.force_authenticate(roster.owner)
    pending = seeded["member_pending"]
    response = api.post(f"{URL}/{pending.pk}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert api.post(f"{URL}/{pending.pk}/cancel").status_code == 409
    response = api.post(f"{URL}/{pending.pk}/retry")
    assert response.status_code == 201 and response.json()["retryOfId"] == str(pending.pk)
    assert api.post(f"{URL}/{seeded['member_done'].pk}/retry").status_code == 409


def test_member_cannot_cancel_someone_elses_run(api, roster, seeded):
    api.force_authenticate(roster.member)
    assert api.post(f"{URL}/{seeded['member2_running'].pk}/cancel").status_code == 404
    seeded["member2_running"].refresh_from_db()
    assert seeded["member2_running"].status == RunStatus.RUNNING


def test_schema_and_docs_are_served(api, roster):
    api.force_authenticate(roster.owner)
    assert api.get("/api/schema/").status_code == 200
    assert api.get("/api/docs/").status_code == 200


@pytest.mark.sqlite
def test_the_list_answers_what_the_serializer_writes(api, roster, seeded):
    AgentRun.objects.filter(pk=seeded["owner_failed"].pk).update(
        started_at=timezone.now(), provider_context={"event_ids": ["e1"]}, retry_of=seeded["member_done"]
    )
    api.force_authenticate(roster.owner)
    listed = api.get(f"/api/orgs/{roster.org.slug}/agent-runs?limit=200").json()["results"]
    runs = AgentRun.objects.filter(organization=roster.org).select_related("agent", "run_as")
    expected = camelize(AgentRunSerializer(runs, many=True).data)
    assert listed == json.loads(json.dumps(expected, cls=DjangoJSONEncoder))
