"""Trends over a range, per-agent health on the Agents list, and the Workers view."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from automation.models import AgentRun, Worker
from automation.states import RunStatus
from tests.factories import AgentRunFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def made(roster, status, at, seconds=None, run_as=None):
    run = AgentRunFactory(agent=roster.agent, run_as=run_as or roster.member, status=status)
    fields = {"created_at": at}
    if seconds is not None:
        fields |= {"started_at": at, "completed_at": at + timedelta(seconds=seconds)}
    AgentRun.objects.filter(pk=run.pk).update(**fields)
    return run


def test_trends_count_runs_per_hour_with_failure_rate_and_percentiles(client, roster, runs_url):
    for i in range(3):
        made(roster, RunStatus.COMPLETED, T0 + timedelta(minutes=5 + i), seconds=10 * (i + 1))
    made(roster, RunStatus.FAILED, T0 + timedelta(minutes=20), seconds=40)
    made(roster, RunStatus.COMPLETED, T0 + timedelta(hours=1, minutes=5), seconds=50)
    made(roster, RunStatus.FAILED, T0 + timedelta(hours=5))  # outside the range
    made(roster, RunStatus.FAILED, T0 + timedelta(minutes=30), seconds=1, run_as=roster.member2)
    client.force_login(roster.member)
    response = client.get(f"{runs_url}trends/", {"start": "2026-03-02T10:00", "end": "2026-03-02T12:00"})
    trends = response.context["trends"]
    assert [h["total"] for h in trends["hours"]] == [4, 1]
    assert trends["hours"][0]["failure_rate"] == 0.25
    assert dict(trends["percentiles"])["p50"] == 30
    page = response.content.decode()
    assert "25 %" in page and 'id="trend-data"' in page and "uPlot.iife.min.js" in page


def test_a_bad_or_too_long_range_is_reported(client, roster, runs_url):
    client.force_login(roster.owner)
    page = client.get(f"{runs_url}trends/", {"start": "2026-01-01T00:00", "end": "2026-03-01T00:00"})
    assert "A range is at most 14 days." in page.content.decode()


def test_agents_list_shows_health_in_scope(client, roster):
    now = timezone.now()
    made(roster, RunStatus.COMPLETED, now - timedelta(hours=2), seconds=5)
    made(roster, RunStatus.FAILED, now - timedelta(hours=1))
    made(roster, RunStatus.FAILED, now - timedelta(hours=30))
    made(roster, RunStatus.FAILED, now - timedelta(hours=1), run_as=roster.member2)
    AgentRunFactory(agent=roster.agent, run_as=roster.member, status=RunStatus.RUNNING)
    roster.agent.max_concurrent_runs = 3
    roster.agent.save()
    client.force_login(roster.member)
    (agent,) = [a for a in client.get("/orgs/acme/agents/").context["agents"] if a.pk == roster.agent.pk]
    assert agent.failures_24h == 1
    assert agent.last_success_at is not None


def test_workers_view_flags_an_overdue_heartbeat(client, roster, runs_url, settings):
    now = timezone.now()
    Worker.objects.create(name="w-alive", hostname="h1", pid=1, concurrency=4, in_flight=2, last_beat_at=now)
    Worker.objects.create(
        name="w-quiet",
        hostname="h2",
        pid=2,
        last_beat_at=now - timedelta(seconds=settings.AUTOMATION_LEASE_TTL_SECONDS * 2),
    )
    Worker.objects.create(name="w-gone", hostname="h3", pid=3, last_beat_at=now, stopped_at=now)
    client.force_login(roster.admin)
    page = client.get(f"{runs_url}workers/").content.decode()
    assert "2 / 4" in page
    assert page.count("heartbeat overdue") == 1 and "worker-overdue" in page and "stopped" in page
    client.force_login(roster.member)
    assert client.get(f"{runs_url}workers/").status_code == 403
