"""Scenario 1: ``kill -9`` a worker while 20 runs are in flight."""

import time

import pytest

from automation.models import AgentRun, FollowUp
from automation.states import FollowUpStatus, RunSource, RunStatus
from tests.reliability.stack import api_client, assert_each_executed_once, execution_counts
from tests.support.services import wait_until

pytestmark = [pytest.mark.reliability, pytest.mark.celery_worker]

LEASE_TTL = 6
SWEEP = 1
SLACK = 2  # beat's tick resolution plus the sweep task's trip through the broker


def statuses(**filters) -> dict:
    return dict(AgentRun.objects.filter(**filters).values_list("pk", "status"))


def test_kill_9_interrupts_claimed_runs_and_a_survivor_runs_the_rest(roster, owner_token, stack_factory):
    stack = stack_factory(
        AUTOMATION_LEASE_TTL_SECONDS=LEASE_TTL,
        AUTOMATION_SWEEP_INTERVAL_SECONDS=SWEEP,
        AUTOMATION_FOLLOW_UP_MIN_DELAY_SECONDS=1,
    )
    api = api_client(stack.web(), owner_token)
    stack.beat()
    victim = stack.worker("victim", concurrency=8)

    def start(prompt):
        response = api.post("/api/orgs/acme/agent-runs", json={"agentId": roster.agent.pk, "prompt": prompt})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    # 4 runs that schedule a follow-up; each follow-up's run sleeps, so it is in flight at the kill
    seeds = [start("!follow_up 1 !sleep 60\n!reply seeded") for _ in range(4)]
    wait_until(
        lambda: AgentRun.objects.filter(source=RunSource.FOLLOW_UP, status=RunStatus.RUNNING).count() == 4,
        timeout=30,
        message="4 follow-up runs running",
    )
    sleepers = [start("!sleep 60\n!reply never") for _ in range(4)]
    wait_until(lambda: set(statuses(pk__in=sleepers).values()) == {RunStatus.RUNNING}, message="sleepers")
    # the victim's 8 processes are busy: these 12 wait in the broker, unclaimed
    queued = [start("!reply after the crash") for _ in range(12)]
    time.sleep(1)
    claimed = set(
        AgentRun.objects.filter(status=RunStatus.RUNNING, lease_owner__startswith="victim@").values_list(
            "pk", flat=True
        )
    )
    assert len(claimed) == 8 and set(statuses(pk__in=queued).values()) == {RunStatus.PENDING}

    victim.kill9()
    killed_at = time.time()
    stack.worker("survivor", concurrency=2)

    wait_until(
        lambda: set(statuses(pk__in=claimed).values()) == {RunStatus.INTERRUPTED},
        timeout=LEASE_TTL + SWEEP + 20,
        message="claimed runs interrupted",
    )
    wait_until(
        lambda: set(statuses(pk__in=queued).values()) == {RunStatus.COMPLETED},
        timeout=60,
        message="queued runs completed by the survivor",
    )

    for run in AgentRun.objects.filter(pk__in=claimed):
        assert "victim@" in run.last_error, run.last_error
        assert run.completed_at.timestamp() - killed_at <= LEASE_TTL + SWEEP + SLACK, run.completed_at
    survivors = set(AgentRun.objects.filter(pk__in=queued).values_list("lease_owner", flat=True))
    assert all(owner.startswith("survivor@") for owner in survivors), survivors
    follow_ups = FollowUp.objects.all()
    assert [f.status for f in follow_ups] == [FollowUpStatus.FAILED] * 4
    assert all("victim@" in f.last_error for f in follow_ups)
    # conservation: 4 seeds + 4 follow-up runs + 4 sleepers + 12 queued, each claimed exactly once
    assert AgentRun.objects.count() == 24
    assert set(statuses(pk__in=seeds).values()) == {RunStatus.COMPLETED}
    assert not AgentRun.objects.filter(status__in=[RunStatus.PENDING, RunStatus.RUNNING]).exists()
    assert_each_executed_once(seeds + queued)
    claims, _ = execution_counts(claimed)
    assert {r: claims[r] for r in claimed if claims[r] != 1} == {}
