"""The runs API's filters and short ids: each filter narrows, an unknown one is a 400, scope holds."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from automation.models import AgentRun
from automation.states import RunStatus
from tests.factories import AgentRunFactory, ThreadFactory

URL = "/api/orgs/acme/agent-runs"

pytestmark = pytest.mark.django_db


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def runs(roster):
    thread = ThreadFactory(agent=roster.agent)
    now = timezone.now()
    made = {
        "ticket": AgentRunFactory(
            agent=roster.agent, run_as=roster.member, context_type="ticket", context_key="T-1", thread=thread
        ),
        "mail": AgentRunFactory(
            agent=roster.agent,
            run_as=roster.member2,
            context_type="mail",
            context_key="T-1",
            status=RunStatus.COMPLETED,
        ),
        "old": AgentRunFactory(agent=roster.agent, run_as=roster.member, status=RunStatus.COMPLETED),
    }
    for _ in range(24):
        AgentRunFactory(agent=roster.agent, run_as=roster.owner, status=RunStatus.COMPLETED)
    AgentRun.objects.filter(pk=made["old"].pk).update(created_at=now - timedelta(days=3))
    made["thread"] = thread
    return made


def ids(response):
    assert response.status_code == 200, response.content
    return {r["id"] for r in response.json()["results"]}


def test_each_filter_narrows_to_what_it_names(api, roster, runs):
    api.force_authenticate(roster.owner)
    assert ids(api.get(URL, {"contextType": "ticket", "contextKey": "T-1"})) == {str(runs["ticket"].pk)}
    assert ids(api.get(URL, {"contextKey": "T-1"})) == {str(runs["ticket"].pk), str(runs["mail"].pk)}
    assert ids(api.get(URL, {"threadId": runs["thread"].pk})) == {str(runs["ticket"].pk)}
    two_days_ago = (timezone.now() - timedelta(days=2)).isoformat()
    assert ids(api.get(URL, {"createdBefore": two_days_ago})) == {str(runs["old"].pk)}
    after = ids(api.get(URL, {"createdAfter": two_days_ago, "limit": 200}))
    assert str(runs["old"].pk) not in after and len(after) == 26


@pytest.mark.parametrize(
    "params",
    [
        {"contextkey": "T-1"},
        {"thread": "1"},
        {"bogus": "x"},
        {"createdAfter": "yesterday"},
        {"threadId": "x"},
    ],
)
def test_an_unknown_or_malformed_filter_is_400_not_everything(api, roster, runs, params):
    api.force_authenticate(roster.owner)
    response = api.get(URL, params)
    assert response.status_code == 400
    body = response.json()
    assert "detail" in body and set(params) <= set(body)


def test_a_member_filtering_by_another_users_values_finds_nothing(api, roster, runs):
    api.force_authenticate(roster.member2)
    assert ids(api.get(URL, {"threadId": runs["thread"].pk})) == set()
    assert ids(api.get(URL, {"contextType": "ticket", "contextKey": "T-1"})) == set()
    assert api.get(f"{URL}/{str(runs['ticket'].pk)[:8]}").status_code == 404


def test_short_ids_name_a_run_in_the_api(api, roster, runs):
    api.force_authenticate(roster.owner)
    run = runs["ticket"]
    response = api.get(f"{URL}/{str(run.pk)[:8]}")
    assert response.status_code == 200 and response.json()["id"] == str(run.pk)
    assert api.get(f"{URL}/{str(run.pk)[:8]}/cancel").status_code == 405
    response = api.post(f"{URL}/{str(run.pk)[:8]}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert api.get(f"{URL}/abc").status_code == 400
    assert api.get(f"{URL}/zzzzzzzz").status_code == 400
