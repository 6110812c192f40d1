"""Scenarios 5 and 6: two beats over 200 interval schedules; beat stopped across daily slots."""

import os
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db.models import Count

from automation.models import AgentRun, Schedule
from automation.states import RunStatus
from tests.reliability.stack import api_client, assert_each_executed_once
from tests.support.services import wait_until

pytestmark = [pytest.mark.reliability, pytest.mark.celery_worker]

BEAT_SECONDS = float(os.environ.get("RELIABILITY_BEAT_SECONDS", 120))


def create_schedule(api, agent_id, **fields) -> dict:
    body = {"agentId": agent_id, "timezone": "UTC", "instructions": "!reply tick", **fields}
    answer = api.post("/api/orgs/acme/agent-run-schedules", json=body)
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_two_beats_fire_exactly_one_run_per_interval_slot(roster, owner_token, stack_factory):
    stack = stack_factory(AUTOMATION_MIN_INTERVAL_MINUTES=1)
    api = api_client(stack.web(), owner_token)
    anchor = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=5)
    for n in range(200):  # anchors spread over the minute, so every tick has some due
        create_schedule(
            api,
            roster.agent.pk,
            name=f"every minute {n}",
            cadence="interval",
            intervalMinutes=1,
            runAt=(anchor + timedelta(seconds=(n * 0.3))).isoformat(),
        )
    stack.worker("w1", concurrency=2)
    stack.worker("w2", concurrency=2)
    # every tick logged (AUTOMATION_QUIET_TASKS empty), so the log shows that both beats sent
    beats = [stack.beat("beat-a", AUTOMATION_QUIET_TASKS=""), stack.beat("beat-b", AUTOMATION_QUIET_TASKS="")]
    time.sleep(BEAT_SECONDS)
    for beat in beats:
        beat.terminate()
    stopped_at = datetime.now(UTC)
    wait_until(
        lambda: not AgentRun.objects.filter(status__in=[RunStatus.PENDING, RunStatus.RUNNING]).exists(),
        timeout=60,
        message="runs drained",
    )

    expected_missing, unexpected = {}, {}
    for schedule in Schedule.objects.all():
        fired = set(schedule.runs.values_list("scheduled_for", flat=True))
        slots, slot = set(), schedule.run_at
        # the last tick may have sent a wake-up for a slot up to one tick (1 s) after the stop
        while slot <= stopped_at + timedelta(seconds=1):
            if slot > schedule.created_at:
                slots.add(slot)
            slot += timedelta(minutes=1)
        settled = {s for s in slots if s < stopped_at - timedelta(seconds=3)}  # beat ticks every 1 s
        if settled - fired:
            expected_missing[schedule.pk] = sorted(settled - fired)
        if fired - slots:
            unexpected[schedule.pk] = sorted(fired - slots)
        assert schedule.missed_count == 0, schedule.blocked_reason
    assert expected_missing == {}, "slots with no run"
    assert unexpected == {}, "runs for slots that do not exist"
    duplicates = (
        AgentRun.objects.values("schedule_id", "scheduled_for").annotate(n=Count("*")).filter(n__gt=1).count()
    )
    assert duplicates == 0
    total = AgentRun.objects.count()
    assert total >= 200 * int(BEAT_SECONDS // 60)
    assert set(AgentRun.objects.values_list("status", flat=True)) == {RunStatus.COMPLETED}
    assert_each_executed_once(AgentRun.objects.values_list("pk", flat=True))
    assert all("Sending due task" in beat.output() for beat in beats), "both beats were sending"


def test_beat_stopped_across_daily_slots_catches_up_inside_the_window_only(
    roster, owner_token, stack_factory
):
    stack = stack_factory()
    api = api_client(stack.web(), owner_token)
    stack.worker("w1", concurrency=2)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    cases = {
        # name: (the slot beat slept through, catch-up window, runs expected, slots counted missed)
        "inside": (now - timedelta(minutes=10), 3600, 1, 0),
        "outside": (now - timedelta(hours=2), 3600, 0, 1),
        "several inside": (now - timedelta(days=3, minutes=10), 4 * 86400, 1, 3),
    }
    ids = {}
    for name, (slot, window, _, _) in cases.items():
        created = create_schedule(
            api,
            roster.agent.pk,
            name=name,
            cadence="daily",
            timeOfDay=slot.strftime("%H:%M"),
            catchupWindowSeconds=window,
        )
        ids[name] = created["id"]
        # Beat was down across the slot: the row still points at it, as beat left it.
        Schedule.objects.filter(pk=created["id"]).update(next_run_at=slot)
    time.sleep(2)
    assert AgentRun.objects.count() == 0, "nothing fires while beat is stopped"

    stack.beat()
    wait_until(
        lambda: all(Schedule.objects.get(pk=i).next_run_at > now for i in ids.values()),
        timeout=30,
        message="every schedule moved past its slot",
    )
    time.sleep(3)  # several more ticks: nothing else may fire
    for name, (slot, _, runs, missed) in cases.items():
        schedule = Schedule.objects.get(pk=ids[name])
        fired = list(schedule.runs.values_list("scheduled_for", flat=True))
        latest = slot + timedelta(days=(now - slot).days)
        assert len(fired) == runs, (name, fired)
        if runs:
            assert fired == [latest], name
        assert schedule.missed_count == missed, (name, schedule.missed_count)
        assert schedule.next_run_at == latest + timedelta(days=1), name
        if name == "outside":
            assert "catch-up window" in schedule.blocked_reason and schedule.last_missed_at == slot
    wait_until(
        lambda: set(AgentRun.objects.values_list("status", flat=True)) == {RunStatus.COMPLETED},
        message="the caught-up runs completed",
    )
    assert_each_executed_once(AgentRun.objects.values_list("pk", flat=True))
