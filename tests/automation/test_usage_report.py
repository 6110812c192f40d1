"""Usage per day, agent and schedule (issue 17 item 1): on the agent's page, on the monitor's
Trends page and in ``GET /api/orgs/<orgSlug>/usage``, counted in the organization's time zone,
aggregated in the database and scoped like the runs list."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from agentpress.orgs.permissions import access_for
from automation import selectors, usage_report
from automation.models import AgentRun
from tests.factories import AgentFactory, AgentRunFactory, ScheduleFactory

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]

USAGE = "/api/orgs/acme/usage"
TRENDS = "/orgs/acme/agents/monitor/automation-runs/trends/"
# 22:30 and 23:30 UTC on 1 March are 23:30 on the 1st and 00:30 on the 2nd in Berlin.
LATE_ON_THE_FIRST = datetime(2026, 3, 1, 22, 30, tzinfo=UTC)
EARLY_ON_THE_SECOND = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)
RANGE = {"createdAfter": "2026-03-01T00:00:00Z", "createdBefore": "2026-03-03T00:00:00Z"}


def used(agent, run_as, at, tokens=(100, 10), cost="0.01", schedule=None):
    run = AgentRunFactory(agent=agent, run_as=run_as, schedule=schedule, status="completed")
    AgentRun.objects.filter(pk=run.pk).update(
        created_at=at, input_tokens=tokens[0], output_tokens=tokens[1], cost=Decimal(cost)
    )
    return run


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def berlin(roster):
    roster.org.timezone = "Europe/Berlin"
    roster.org.save()
    return roster


def by_key(body):
    return {
        row["key"]: (row["runs"], row["inputTokens"], row["outputTokens"], row["cost"])
        for row in body["results"]
    }


def test_days_are_counted_in_the_organizations_time_zone(api, berlin):
    used(berlin.agent, berlin.owner, LATE_ON_THE_FIRST, tokens=(100, 10), cost="0.01")
    used(berlin.agent, berlin.owner, EARLY_ON_THE_SECOND, tokens=(200, 20), cost="0.02")
    used(berlin.agent, berlin.member, EARLY_ON_THE_SECOND, tokens=(300, 30), cost="0.03")
    api.force_authenticate(berlin.owner)
    body = api.get(USAGE, {"groupBy": "day", **RANGE}).json()
    assert body["timezone"] == "Europe/Berlin" and body["groupBy"] == "day"
    # the range ends at 01:00 on the 3rd in Berlin, so the 3rd is a (empty) day of it
    assert by_key(body) == {
        "2026-03-01": (1, 100, 10, "0.010000"),
        "2026-03-02": (2, 500, 50, "0.050000"),
        "2026-03-03": (0, 0, 0, "0.000000"),
    }
    assert (body["total"]["runs"], body["total"]["tokens"], body["total"]["cost"]) == (3, 660, "0.060000")


def test_totals_per_agent_and_per_schedule_largest_cost_first(api, roster):
    other_agent = AgentFactory(organization=roster.org, name="Billing agent")
    nightly = ScheduleFactory(agent=roster.agent, run_as=roster.owner, name="Nightly digest")
    used(roster.agent, roster.owner, EARLY_ON_THE_SECOND, cost="0.01", schedule=nightly)
    used(roster.agent, roster.owner, EARLY_ON_THE_SECOND, cost="0.01", schedule=nightly)
    used(roster.agent, roster.owner, EARLY_ON_THE_SECOND, cost="0.05")
    used(other_agent, roster.owner, EARLY_ON_THE_SECOND, tokens=(5, 5), cost="0.001")
    api.force_authenticate(roster.owner)
    agents = api.get(USAGE, {"groupBy": "agent", **RANGE}).json()["results"]
    assert [(r["label"], r["runs"], r["tokens"], r["cost"]) for r in agents] == [
        ("Support agent", 3, 330, "0.070000"),
        ("Billing agent", 1, 10, "0.001000"),
    ]
    schedules = api.get(USAGE, {"groupBy": "schedule", **RANGE}).json()["results"]
    assert [(r["key"], r["label"], r["agentId"], r["runs"], r["cost"]) for r in schedules] == [
        (None, usage_report.NO_SCHEDULE, None, 2, "0.051000"),
        (str(nightly.pk), "Nightly digest", roster.agent.pk, 2, "0.020000"),
    ]
    only_billing = api.get(USAGE, {"groupBy": "agent", "agentId": other_agent.pk, **RANGE}).json()
    assert [r["label"] for r in only_billing["results"]] == ["Billing agent"]


def test_a_member_sees_only_their_own_usage_and_never_another_orgs(api, client, roster):
    secret_schedule = ScheduleFactory(
        agent=roster.agent, run_as=roster.member, name="Member A's private schedule"
    )
    used(
        roster.agent,
        roster.member,
        EARLY_ON_THE_SECOND,
        tokens=(7000, 700),
        cost="0.7",
        schedule=secret_schedule,
    )
    used(roster.agent, roster.member2, EARLY_ON_THE_SECOND, tokens=(20, 2), cost="0.002")
    used(roster.other_agent, roster.other_owner, EARLY_ON_THE_SECOND, tokens=(90000, 9000), cost="9")
    api.force_authenticate(roster.member2)
    for group in usage_report.GROUPS:
        body = api.get(USAGE, {"groupBy": group, **RANGE}).json()
        assert (body["total"]["runs"], body["total"]["tokens"], body["total"]["cost"]) == (
            1,
            22,
            "0.002000",
        ), group
        assert "Member A" not in str(body) and "Globex" not in str(body)
    api.force_authenticate(roster.owner)
    owner_total = api.get(USAGE, {"groupBy": "agent", **RANGE}).json()["total"]
    assert (owner_total["runs"], owner_total["tokens"]) == (2, 7722)  # the org's runs, not globex's

    # started that day too, so today's budget meter on the agent's page counts them
    AgentRun.objects.update(started_at=EARLY_ON_THE_SECOND)
    client.force_login(roster.member2)
    with time_machine.travel(EARLY_ON_THE_SECOND + timedelta(minutes=10), tick=False):
        trends = client.get(TRENDS, {"start": "2026-03-01T00:00", "end": "2026-03-03T00:00"}).content.decode()
        capabilities = client.get(f"/orgs/acme/agents/{roster.agent.pk}/capabilities/").content.decode()
    for page in (trends, capabilities):
        assert "Member A&#x27;s private schedule" not in page and "7700" not in page and "7722" not in page
        assert "<td>22</td>" in page  # member B's own tokens
    assert "Globex agent" not in trends and "99000" not in trends
    assert "Today (UTC), your runs: 1 runs, 22 tokens, cost 0.002" in capabilities


@pytest.mark.parametrize(
    "query, field",
    [
        ({"groupBy": "hour"}, "groupBy"),
        ({"createdAfter": "yesterday"}, "createdAfter"),
        ({"createdBefore": "2026-13-40T00:00:00Z"}, "createdBefore"),
        ({"createdAfter": "2026-03-02T00:00:00Z", "createdBefore": "2026-03-01T00:00:00Z"}, "createdBefore"),
        ({"createdAfter": "2026-01-01T00:00:00Z", "createdBefore": "2026-06-01T00:00:00Z"}, "createdBefore"),
        ({"createdBefore": "0001-01-02T00:00:00Z"}, "createdBefore"),
        ({"createdAfter": "9999-12-31T23:00:00Z", "createdBefore": "9999-12-31T23:59:59Z"}, "createdAfter"),
        ({"createdAfter": "9999-12-29T00:00:00Z", "createdBefore": "9999-12-30T00:00:00Z"}, None),
        ({"agentId": "abc"}, "agentId"),
        ({"agentId": "0"}, "agentId"),
        ({"groupby": "day"}, "groupby"),
    ],
)
def test_bad_input_is_a_400_with_a_detail(api, roster, query, field):
    api.force_authenticate(roster.owner)
    response = api.get(USAGE, query)
    if field is None:  # the edge of the calendar is a range like any other
        assert response.status_code == 200 and response.json()["results"][-1]["key"] == "9999-12-29"
        return
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["detail"] and field in body, body


def test_another_orgs_agent_is_a_400_not_its_usage(api, roster):
    used(roster.other_agent, roster.other_owner, EARLY_ON_THE_SECOND)
    api.force_authenticate(roster.owner)
    response = api.get(USAGE, {"agentId": roster.other_agent.pk, **RANGE})
    assert response.status_code == 400 and response.json()["agentId"] == [
        "No such agent in this organization."
    ]


def test_the_agent_page_shows_the_last_days_and_its_schedules(client, berlin):
    weekly = ScheduleFactory(agent=berlin.agent, run_as=berlin.owner, name="Weekly report")
    used(berlin.agent, berlin.owner, LATE_ON_THE_FIRST, tokens=(1000, 100), cost="0.5", schedule=weekly)
    used(berlin.agent, berlin.owner, EARLY_ON_THE_SECOND, tokens=(2000, 200), cost="0.25")
    used(berlin.agent, berlin.owner, EARLY_ON_THE_SECOND - timedelta(days=20))  # before the 14 days
    client.force_login(berlin.owner)
    with time_machine.travel(EARLY_ON_THE_SECOND + timedelta(hours=1), tick=False):
        response = client.get(f"/orgs/acme/agents/{berlin.agent.pk}/capabilities/")
    days = response.context["usage_by_day"].rows
    assert len(days) == 14 and days[-1].key.isoformat() == "2026-03-02"
    assert [(d.key.isoformat(), d.runs, d.tokens) for d in days if d.runs] == [
        ("2026-03-01", 1, 1100),
        ("2026-03-02", 1, 2200),
    ]
    page = response.content.decode()
    assert 'id="usage-by-day"' in page and "Europe/Berlin" in page
    assert (
        '<tr data-usage-key="2026-03-02"><th scope="row">2026-03-02</th><td>1</td><td>2000</td><td>200</td><td>2200</td><td>0.2500</td></tr>'
        in page
    )
    assert "Weekly report</th><td>1</td><td>1000</td><td>100</td><td>1100</td><td>0.5000</td>" in page


def test_the_trends_page_shows_usage_per_day_agent_and_schedule(client, roster):
    nightly = ScheduleFactory(agent=roster.agent, run_as=roster.owner, name="Nightly digest")
    used(roster.agent, roster.owner, EARLY_ON_THE_SECOND, tokens=(400, 40), cost="0.04", schedule=nightly)
    client.force_login(roster.owner)
    page = client.get(TRENDS, {"start": "2026-03-01T00:00", "end": "2026-03-03T00:00"}).content.decode()
    for table in ("usage-by-day", "usage-by-agent", "usage-by-schedule"):
        assert f'id="{table}"' in page
    assert (
        '<th scope="row">2026-03-01</th><td>1</td><td>400</td><td>40</td><td>440</td><td>0.0400</td>' in page
    )
    assert (
        f'href="/orgs/acme/agents/{roster.agent.pk}/capabilities/">Support agent</a></th><td>1</td>' in page
    )
    assert "Nightly digest</th><td>1</td><td>400</td>" in page


def statements(fn):
    with CaptureQueriesContext(connection) as captured:
        fn()
    return len(captured)


def seed(roster, schedules: int, days: int):
    for _ in range(schedules):
        agent = AgentFactory(organization=roster.org)
        schedule = ScheduleFactory(agent=agent, run_as=roster.owner)
        for day in range(days):
            used(agent, roster.owner, EARLY_ON_THE_SECOND - timedelta(days=day), schedule=schedule)


def test_each_grouping_is_one_statement_whatever_the_number_of_rows(api, client, roster):
    access = access_for(roster.owner, roster.org)
    zone = usage_report.zone_of("Europe/Berlin")
    start, end = EARLY_ON_THE_SECOND - timedelta(days=14), EARLY_ON_THE_SECOND + timedelta(hours=1)

    def report(group):
        return lambda: usage_report.usage_report(
            selectors.runs_for(access), group_by=group, start=start, end=end, zone=zone
        )

    api.force_authenticate(roster.owner)
    client.force_login(roster.owner)
    range_query = {"createdAfter": start.isoformat(), "createdBefore": end.isoformat()}
    trends_query = {"start": start.strftime("%Y-%m-%dT%H:%M"), "end": end.strftime("%Y-%m-%dT%H:%M")}
    counts = []
    for schedules, days in ((1, 1), (6, 4)):
        seed(roster, schedules, days)
        with time_machine.travel(end, tick=False):
            counts.append(
                (
                    [statements(report(group)) for group in usage_report.GROUPS],
                    [
                        statements(lambda g=group: api.get(USAGE, {"groupBy": g, **range_query}))
                        for group in usage_report.GROUPS
                    ],
                    statements(lambda: client.get(TRENDS, trends_query)),
                    statements(lambda: client.get(f"/orgs/acme/agents/{roster.agent.pk}/capabilities/")),
                )
            )
    assert counts[0] == counts[1], "statements grow with the rows"
    assert counts[0][0] == [1, 1, 1]
    # the caller's membership and organization, the agent check or not, and the one aggregate
    assert max(counts[0][1]) <= 4, counts
