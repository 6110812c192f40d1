"""The gauges the alert rules in docs/alerts/ read, against rows seeded by state and age."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from automation.models import ProviderEvent
from automation.states import ProviderEventStatus, RunStatus
from tests.factories import ActionFactory, AgentFactory, AgentRunFactory

from .test_metrics import scrape, value

pytestmark = pytest.mark.django_db


def test_alert_gauges_follow_the_rows(client, roster):
    now = timezone.now()
    AgentRunFactory(
        agent=roster.agent,
        run_as=roster.member,
        status=RunStatus.RUNNING,
        lease_expires_at=now - timedelta(minutes=3),
    )
    AgentRunFactory(
        agent=roster.agent,
        run_as=roster.member,
        status=RunStatus.RUNNING,
        lease_expires_at=now + timedelta(minutes=1),
    )
    AgentRunFactory(
        agent=roster.agent,
        run_as=roster.member,
        status=RunStatus.PENDING,
        dispatched_at=now - timedelta(minutes=12),
    )
    flaky = AgentFactory(organization=roster.org)
    for status in (RunStatus.FAILED, RunStatus.FAILED, RunStatus.COMPLETED):
        AgentRunFactory(agent=flaky, run_as=roster.member, status=status)
    action = ActionFactory(agent=roster.agent, run_as=roster.member)
    for i in range(4):
        ProviderEvent.objects.create(
            organization=roster.org,
            action=action,
            agent=roster.agent,
            event_id=f"e{i}",
            context_type="ticket",
            context_key="T-1" if i < 3 else "T-2",
            status=ProviderEventStatus.DEFERRED,
        )
    every = IntervalSchedule.objects.create(every=5, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(
        name="automation: tick",
        task="automation.tick",
        interval=every,
        last_run_at=now - timedelta(minutes=7),
    )

    samples = scrape(client)
    assert value(samples, "automation_runs_heartbeat_overdue") == 1
    assert 11.5 * 60 < value(samples, "automation_pending_oldest_wait_seconds") < 13 * 60
    assert (
        value(samples, "automation_agent_runs_finished_last_hour", agent_id=str(flaky.pk), status="failed")
        == 2
    )
    assert (
        value(samples, "automation_agent_runs_finished_last_hour", agent_id=str(flaky.pk), status="completed")
        == 1
    )
    assert value(samples, "automation_deferred_events_max_per_context") == 3
    beat = value(samples, "automation_beat_last_sent_timestamp_seconds")
    assert abs(beat - (now - timedelta(minutes=7)).timestamp()) < 2
