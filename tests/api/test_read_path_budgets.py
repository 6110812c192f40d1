"""Statement budgets of the read path: the runs list with its summary, and the admin changelist.

Each answer costs a fixed number of statements however many runs there are (no query per row,
per related row or per registered model), and nothing counts a whole table: the summary is one
grouped statement, the changelist's count stops at its cap. Counted with Django's
``CaptureQueriesContext``, every round trip included.
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from automation.admin.runs import CappedCountPaginator
from automation.states import RunStatus
from tests.factories import AgentFactory, AgentRunFactory, FollowUpFactory, ScheduleFactory, UserFactory

pytestmark = pytest.mark.sqlite

# The caller's organization and membership (get_access_or_404), the page, the summary.
LIST_BUDGET = 4
# Session and user, "owns an organization?" (once, not once per model and permission), the
# capped count, the page with organization, agent and run-as user joined, and the org switcher
# of the base template (organizations, membership).
OWNER_CHANGELIST_BUDGET = 7
SUPERUSER_CHANGELIST_BUDGET = 6  # the superuser owns nothing to ask about

CHANGELIST = "/admin/automation/agentrun/"
STATUSES = [RunStatus.PENDING, RunStatus.RUNNING, RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED]


def seed_runs(roster, n: int) -> None:
    """``n`` runs of the org spread over two agents, three run-as users and five statuses, each in its
    own thread, with schedules and follow-ups to count beside them."""
    agents = [roster.agent, AgentFactory(organization=roster.org, name=f"Agent {n}")]
    people = [roster.owner, roster.member, roster.member2]
    for i in range(n):
        AgentRunFactory(
            agent=agents[i % 2],
            run_as=people[i % 3],
            status=STATUSES[i % len(STATUSES)],
        )
    ScheduleFactory(agent=agents[0], run_as=people[n % 3], next_run_at="2030-01-01T00:00:00Z")
    FollowUpFactory(agent=agents[1], run_as=people[n % 3])


def answered(get, url, **params):
    """(the statements of one request, its response)."""
    with CaptureQueriesContext(connection) as captured:
        response = get(url, params)
    assert response.status_code == 200, response.content[:300]
    return [query["sql"] for query in captured.captured_queries], response


def counting(sql: list[str]) -> list[str]:
    return [statement for statement in sql if "COUNT(" in statement.upper()]


@pytest.mark.parametrize("who", ["owner", "member"])
def test_the_runs_list_and_its_summary_cost_four_statements_however_many_runs(roster, who):
    api = APIClient()
    api.force_authenticate(getattr(roster, who))
    url = f"/api/orgs/{roster.org.slug}/agent-runs"
    seed_runs(roster, 3)
    few, _ = answered(api.get, url, limit=50)
    seed_runs(roster, 60)
    many, response = answered(api.get, url, limit=50)
    assert len(few) == len(many) == LIST_BUDGET, "\n".join(many)
    # the summary is the one statement that counts, and it counts every status in one go
    assert len(counting(many)) == 1 and "GROUP BY" in counting(many)[0].upper()
    body = response.json()
    in_scope = 63 if who == "owner" else 21
    assert sum(body["summary"][status] for status in RunStatus.values) == in_scope
    assert (body["summary"]["scheduled"], body["summary"]["activeFollowUps"]) == (
        (2, 2) if who == "owner" else (0, 0)
    )
    assert len(body["results"]) == min(50, in_scope)


def test_a_later_page_of_runs_costs_what_the_first_does(roster):
    api = APIClient()
    api.force_authenticate(roster.owner)
    seed_runs(roster, 12)
    url = f"/api/orgs/{roster.org.slug}/agent-runs"
    first, response = answered(api.get, url, limit=5)
    later, _ = answered(api.get, response.json()["next"])
    assert len(first) == len(later) == LIST_BUDGET and len(counting(later)) == 1


@pytest.mark.parametrize(
    ("who", "budget"), [("owner", OWNER_CHANGELIST_BUDGET), ("superuser", SUPERUSER_CHANGELIST_BUDGET)]
)
def test_the_admin_runs_changelist_costs_the_same_however_many_runs(client, roster, who, budget):
    client.force_login(getattr(roster, who))
    seed_runs(roster, 3)
    few, _ = answered(client.get, CHANGELIST)
    seed_runs(roster, 60)
    many, response = answered(client.get, CHANGELIST)
    assert len(few) == len(many) == budget, "\n".join(many)
    # the one count is capped: never the whole table
    assert len(counting(many)) == 1 and "LIMIT" in counting(many)[0].upper()
    body = response.content.decode()
    assert roster.agent.name in body and roster.member2.username in body


def test_the_admin_count_stops_at_its_cap(client, roster, monkeypatch):
    monkeypatch.setattr(CappedCountPaginator, "CAP", 10)
    seed_runs(roster, 15)
    client.force_login(roster.superuser)
    _, response = answered(client.get, CHANGELIST)
    assert "10 agent runs" in response.content.decode()


def test_the_admin_finds_a_run_by_its_id_or_its_start_through_the_index(client, roster):
    seed_runs(roster, 5)
    run = AgentRunFactory(agent=roster.agent, run_as=UserFactory(username="findme"), context_key="T-9")
    client.force_login(roster.superuser)
    for term in (str(run.pk), run.pk.hex[:8], str(run.pk)[:8].upper()):
        sql, response = answered(client.get, CHANGELIST, q=term)
        assert "findme" in response.content.decode() and "1 agent run" in response.content.decode(), term
        # a range of the primary key, not a text match against every id
        assert not any("LIKE" in statement.upper() for statement in sql), term
    _, response = answered(client.get, CHANGELIST, q="T-9")
    assert "findme" in response.content.decode()
