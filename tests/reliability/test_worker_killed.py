"""Scenario 1: ``kill -9`` a worker while 200 runs are in flight in its one process.

The organization's limit is the 200 in flight: the worker has slots to spare, so the runs
queued after them are claimed and held, waiting with "organization at its limit". The
kill must give the 200 slots back when their runs are recovered, and the held runs then
run, the limit never exceeded.
"""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from automation.models import AgentRun, FollowUp
from automation.states import FollowUpStatus, RunSource, RunStatus
from tests.reliability.stack import (
    api_client,
    assert_each_executed_once,
    assert_limits_held,
    execution_counts,
    running_intervals,
)
from tests.support.services import wait_until

pytestmark = [pytest.mark.reliability, pytest.mark.celery_worker]

LEASE_TTL = 6
SWEEP = 1
IN_FLIGHT = 200  # the organization's limit: all of it busy at the kill
QUEUED = 50  # held by the limit, in the victim's spare slots
# beat's tick resolution and the sweep task's trip through the broker, plus settling each
# interrupted run (five statements; up to ~130 ms each on a loaded two-core machine, measured)
SLACK = 2 + IN_FLIGHT * 0.15


def statuses(**filters) -> dict:
    return dict(AgentRun.objects.filter(**filters).values_list("pk", "status"))


def test_kill_9_interrupts_claimed_runs_and_a_survivor_runs_the_rest(roster, owner_token, stack_factory):
    roster.org.max_concurrent_runs = IN_FLIGHT
    roster.org.save(update_fields=["max_concurrent_runs"])
    stack = stack_factory(
        AUTOMATION_LEASE_TTL_SECONDS=LEASE_TTL,
        AUTOMATION_SWEEP_INTERVAL_SECONDS=SWEEP,
        AUTOMATION_FOLLOW_UP_MIN_DELAY_SECONDS=1,
    )
    api = api_client(stack.web(), owner_token)
    stack.beat()
    victim = stack.worker("victim", concurrency=IN_FLIGHT + QUEUED)

    def start(prompt):
        response = api.post("/api/orgs/acme/agent-runs", json={"agentId": roster.agent.pk, "prompt": prompt})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def start_many(prompt, n):
        with ThreadPoolExecutor(max_workers=8) as pool:
            return list(pool.map(lambda _: start(prompt), range(n)))

    # 4 runs that schedule a follow-up; each follow-up's run sleeps, so it is in flight at the kill
    seeds = start_many("!follow_up 1 !sleep 120\n!reply seeded", 4)
    wait_until(
        lambda: AgentRun.objects.filter(source=RunSource.FOLLOW_UP, status=RunStatus.RUNNING).count() == 4,
        timeout=30,
        message="4 follow-up runs running",
    )
    sleepers = start_many("!sleep 120\n!reply never", IN_FLIGHT - 4)
    wait_until(
        lambda: set(statuses(pk__in=sleepers).values()) == {RunStatus.RUNNING},
        timeout=60,
        message=f"{IN_FLIGHT - 4} sleepers running",
    )
    # the organization's every slot is busy: the victim claims these and finds them held
    queued = start_many("!reply after the crash", QUEUED)
    wait_until(
        lambda: (
            set(AgentRun.objects.filter(pk__in=queued).values_list("waiting_reason", flat=True))
            == {f"organization at its limit ({IN_FLIGHT} / {IN_FLIGHT})"}
        ),
        timeout=60,
        message="the queued runs held by the organization's limit",
    )
    claimed = set(
        AgentRun.objects.filter(status=RunStatus.RUNNING, lease_owner__startswith="victim@").values_list(
            "pk", flat=True
        )
    )
    assert len(claimed) == IN_FLIGHT and set(statuses(pk__in=queued).values()) == {RunStatus.PENDING}

    victim.kill9()
    killed_at = time.time()
    stack.worker("survivor", concurrency=QUEUED)
    # the sweep needs a live worker: the leases expire TTL after the kill, the sweep after that
    # runs on the survivor once it is up
    recovery_due = max(killed_at + LEASE_TTL, time.time()) + SWEEP + SLACK

    wait_until(
        lambda: set(statuses(pk__in=claimed).values()) == {RunStatus.INTERRUPTED},
        timeout=LEASE_TTL + SWEEP + SLACK + 30,
        message="claimed runs interrupted",
    )
    wait_until(
        lambda: set(statuses(pk__in=queued).values()) == {RunStatus.COMPLETED},
        timeout=60,
        message="queued runs completed by the survivor",
    )

    ended = sorted(run.completed_at.timestamp() for run in AgentRun.objects.filter(pk__in=claimed))
    late = [round(t - recovery_due, 1) for t in ended if t > recovery_due]
    assert not late, f"{len(late)} runs interrupted later than TTL + one sweep (+ {SLACK:g}s): {late[:10]}"
    for run in AgentRun.objects.filter(pk__in=claimed):
        assert "victim@" in run.last_error, run.last_error
    survivors = set(AgentRun.objects.filter(pk__in=queued).values_list("lease_owner", flat=True))
    assert all(owner.startswith("survivor@") for owner in survivors), survivors
    follow_ups = FollowUp.objects.all()
    assert [f.status for f in follow_ups] == [FollowUpStatus.FAILED] * 4
    assert all("victim@" in f.last_error for f in follow_ups)
    # conservation: 4 seeds + 4 follow-up runs + the sleepers + the queued, each claimed exactly once
    assert AgentRun.objects.count() == 4 + IN_FLIGHT + QUEUED
    assert set(statuses(pk__in=seeds).values()) == {RunStatus.COMPLETED}
    assert not AgentRun.objects.filter(status__in=[RunStatus.PENDING, RunStatus.RUNNING]).exists()
    assert_each_executed_once(seeds + queued)
    claims, _ = execution_counts(claimed)
    assert {r: claims[r] for r in claimed if claims[r] != 1} == {}
    # the limit bound (the queued runs were held at it, above) and was never exceeded
    assert_limits_held(running_intervals(), organizations={roster.org.pk: IN_FLIGHT})
