"""Scenario 8: a soak of mixed load with a worker killed and restarted every 2 minutes.

``SOAK_SECONDS`` sets the length (60 in CI; ``make soak`` runs 600). At the end, the
conservation check: every event, follow-up and schedule slot maps to exactly one run or
a recorded reason, and no run is left pending or running.
"""

import itertools
import os
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db.models import Count

from automation.models import AgentRun, FollowUp, ProviderEvent, RunEvent, Schedule
from automation.states import RUN_ACTIVE, FollowUpStatus, ProviderEventStatus, RunStatus
from tests.reliability.stack import api_client, execution_counts, post_webhook
from tests.support.services import wait_until

pytestmark = [pytest.mark.reliability, pytest.mark.celery_worker]

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", 60))
KILL_EVERY = min(120.0, SOAK_SECONDS / 2)
LEASE_TTL = 4
TICK = 0.5


def test_soak_conserves_every_event_follow_up_and_slot(roster, owner_token, action, stack_factory):
    action.instructions = "!sleep 0.5\n!reply handled"
    action.save(update_fields=["instructions"])
    stack = stack_factory(
        AUTOMATION_LEASE_TTL_SECONDS=LEASE_TTL,
        AUTOMATION_MIN_INTERVAL_MINUTES=1,
        AUTOMATION_FOLLOW_UP_MIN_DELAY_SECONDS=1,
    )
    api = api_client(stack.web(), owner_token)
    begin = datetime.now(UTC)
    for n in range(20):
        answer = api.post(
            "/api/orgs/acme/agent-run-schedules",
            json={
                "agentId": roster.agent.pk,
                "name": f"soak {n}",
                "cadence": "interval",
                "intervalMinutes": 1,
                "runAt": (begin + timedelta(seconds=5 + n * 2.5)).isoformat(),
                "timezone": "UTC",
                "instructions": "!sleep 1\n!reply scheduled",
            },
        )
        assert answer.status_code == 201, answer.text
    stack.beat()
    workers = {name: stack.worker(name, concurrency=2) for name in ("wa", "wb")}

    manual, to_cancel, cancelled, kills = [], [], set(), []
    victims = itertools.cycle(workers)
    started = time.monotonic()
    next_kill = started + KILL_EVERY
    for tick in itertools.count():
        now = time.monotonic()
        if now - started >= SOAK_SECONDS:
            break
        if now >= next_kill:
            name = next(victims)
            workers[name].kill9()
            kills.append(name)
            workers[name] = stack.worker(name, concurrency=2)
            next_kill += KILL_EVERY
        answer = post_webhook(api, action.pk, f"evt_{tick}", {"ticket": {"id": f"T-{tick % 7}"}})
        assert answer.status_code == 202, answer.text
        if tick % 2 == 0:
            prompt = "!follow_up 2 !reply followed up\n!reply scheduled a follow-up"
        elif tick % 6 == 1:
            prompt = "!sleep 3\n!reply maybe cancelled"
        else:
            prompt = f"!reply manual {tick}"
        answer = api.post("/api/orgs/acme/agent-runs", json={"agentId": roster.agent.pk, "prompt": prompt})
        assert answer.status_code == 201, answer.text
        manual.append(answer.json()["id"])
        if tick % 6 == 1:
            to_cancel.append((now + 1, manual[-1]))
        while to_cancel and to_cancel[0][0] <= now:
            run_id = to_cancel.pop(0)[1]
            if api.post(f"/api/orgs/acme/agent-runs/{run_id}/cancel").status_code == 200:
                cancelled.add(run_id)
        time.sleep(max(0.0, TICK - (time.monotonic() - now)))
    stopped_at = datetime.now(UTC)
    assert kills, "the soak must kill a worker at least once"
    for proc in stack.processes:
        if proc.name == "beat":
            proc.terminate()

    def drained():
        return (
            not AgentRun.objects.filter(status__in=RUN_ACTIVE).exists()
            and not FollowUp.objects.filter(
                status__in=[FollowUpStatus.PENDING, FollowUpStatus.RUNNING]
            ).exists()
        )

    # beat is stopped: the sweeps a worker would get from beat are sent here, as beat would
    from automation.tasks import fire_due_follow_ups, recover_runs

    def drain_step():
        recover_runs.delay()
        fire_due_follow_ups.delay()
        time.sleep(1)
        return drained()

    wait_until(drain_step, timeout=LEASE_TTL + 90, interval=0, message="everything settled")
    check_conservation(manual=manual, cancelled=cancelled, stopped_at=stopped_at)


def check_conservation(*, manual, cancelled, stopped_at) -> None:
    runs = AgentRun.objects.all()
    assert not runs.filter(status__in=RUN_ACTIVE).exists()
    assert set(map(str, runs.filter(source="manual").values_list("pk", flat=True))) == set(manual)
    assert cancelled <= set(map(str, runs.filter(status=RunStatus.CANCELLED).values_list("pk", flat=True)))

    # each run executed at most once; a completed run exactly once; an interrupted one names its worker
    claims, replies = execution_counts(runs.values_list("pk", flat=True))
    assert max(claims.values()) == 1 and max(replies.values()) == 1
    for run in runs.filter(status=RunStatus.COMPLETED):
        assert claims[run.pk] == 1 and replies[run.pk] == 1, run.pk
    for run in runs.filter(status=RunStatus.INTERRUPTED):
        assert run.lease_owner and run.lease_owner in run.last_error, run.last_error

    # every provider event maps to exactly one run
    events = ProviderEvent.objects.all()
    assert set(events.values_list("status", flat=True)) <= {
        ProviderEventStatus.STARTED,
        ProviderEventStatus.COALESCED,
    }
    assert not events.filter(run__isnull=True).exists()
    per_run = events.values("run_id").annotate(n=Count("*"))
    provider_runs = set(runs.filter(source="provider_event").values_list("pk", flat=True))
    assert {row["run_id"] for row in per_run} == provider_runs

    # every follow-up ended with its run, or was cancelled with a reason
    for follow_up in FollowUp.objects.all():
        if follow_up.status == FollowUpStatus.CANCELLED:
            assert follow_up.cancel_reason, follow_up.pk
            continue
        run = runs.get(follow_up=follow_up)
        expected = {
            RunStatus.COMPLETED: FollowUpStatus.COMPLETED,
            RunStatus.FAILED: FollowUpStatus.FAILED,
            RunStatus.INTERRUPTED: FollowUpStatus.FAILED,
            RunStatus.CANCELLED: FollowUpStatus.CANCELLED,
        }[run.status]
        assert follow_up.status == expected, (follow_up.pk, follow_up.status, run.status)

    # every schedule slot became one run, or was counted skipped or missed
    for schedule in Schedule.objects.all():
        slots, slot = [], schedule.run_at
        # the last tick may have sent a wake-up for a slot up to one tick (1 s) after the stop
        while slot <= stopped_at + timedelta(seconds=1):
            slots.append(slot)
            slot += timedelta(minutes=1)
        fired = list(schedule.runs.values_list("scheduled_for", flat=True))
        assert len(fired) == len(set(fired)) and set(fired) <= set(slots), schedule.pk
        skipped = RunEvent.objects.filter(
            kind="schedule_slot_skipped", detail__schedule_id=schedule.pk
        ).count()
        assert skipped == schedule.skipped_count
        accounted = len(fired) + schedule.skipped_count + schedule.missed_count
        settled = [s for s in slots if s < stopped_at - timedelta(seconds=3)]
        assert len(settled) <= accounted <= len(slots), (schedule.pk, slots, fired, schedule.skipped_count)
