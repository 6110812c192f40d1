"""Wake-ups: the tick looks one tick ahead so due work is fired on time, not a tick late."""

from datetime import timedelta

import pytest
from django.utils import timezone

from automation import tasks
from automation.models import AgentRun
from automation.services import wakeups
from automation.states import FollowUpStatus
from tests.factories import FollowUpFactory, ScheduleFactory

pytestmark = pytest.mark.sqlite


@pytest.fixture
def frozen(time_machine):
    time_machine.move_to("2026-11-28 12:00:00+00:00", tick=False)
    return timezone.now()


def test_due_times_within_the_next_tick_become_wakeups(roster, frozen, settings):
    settings.AUTOMATION_TICK_SECONDS = 5
    for offset in (1.0, 1.1, 2.0, 4.9, 6.0):  # 1.0 and 1.1 share a wake-up; 6.0 is the next tick's
        ScheduleFactory(
            agent=roster.agent, run_as=roster.owner, next_run_at=frozen + timedelta(seconds=offset)
        )
    ScheduleFactory(
        agent=roster.agent, run_as=roster.owner, enabled=False, next_run_at=frozen + timedelta(seconds=3)
    )
    assert wakeups.schedule_wakeups() == [frozen + timedelta(seconds=s) for s in (1.0, 2.0, 4.9)]


def test_only_pending_follow_ups_wake_the_dispatcher(roster, frozen):
    FollowUpFactory(agent=roster.agent, run_as=roster.owner, scheduled_for=frozen + timedelta(seconds=2))
    FollowUpFactory(
        agent=roster.agent,
        run_as=roster.owner,
        scheduled_for=frozen + timedelta(seconds=3),
        status=FollowUpStatus.CANCELLED,
    )
    assert wakeups.follow_up_wakeups() == [frozen + timedelta(seconds=2)]


def test_the_tick_sends_its_wakeups_and_a_wakeup_sends_none(roster, frozen, monkeypatch):
    sent = []
    monkeypatch.setattr(tasks.fire_due_schedules, "apply_async", lambda **kw: sent.append(kw))
    due = ScheduleFactory(
        agent=roster.agent, run_as=roster.owner, run_at=frozen, next_run_at=frozen - timedelta(seconds=1)
    )
    ScheduleFactory(agent=roster.agent, run_as=roster.owner, next_run_at=frozen + timedelta(seconds=2))
    assert tasks.fire_due_schedules() == 1
    assert AgentRun.objects.get().schedule == due
    assert [kw["eta"] for kw in sent] == [frozen + timedelta(seconds=2)] and sent[0]["kwargs"] == {
        "wakeup": True
    }
    sent.clear()
    tasks.fire_due_schedules(wakeup=True)
    assert sent == []


def test_a_broker_failure_on_a_wakeup_does_not_fail_the_tick(roster, frozen, monkeypatch):
    def refuse(**kw):
        raise ConnectionError("broker down")

    monkeypatch.setattr(tasks.fire_due_follow_ups, "apply_async", refuse)
    FollowUpFactory(agent=roster.agent, run_as=roster.owner, scheduled_for=frozen + timedelta(seconds=2))
    assert tasks.fire_due_follow_ups() == 0
