"""Scenario: SIGTERM to a worker with 200 runs in flight in its one process.

Runs that can finish within ``AUTOMATION_SHUTDOWN_GRACE_SECONDS`` complete; the others are
interrupted with a reason naming the worker and the grace period. None is left running.
"""

from concurrent.futures import ThreadPoolExecutor

import pytest

from automation.models import AgentRun
from automation.states import RunStatus
from tests.reliability.stack import api_client, assert_each_executed_once
from tests.support.services import wait_until

pytestmark = [pytest.mark.reliability, pytest.mark.celery_worker]

IN_FLIGHT = 200
GRACE = 10
SHORT = 4  # finishes well inside the grace, however late the SIGTERM lands


def test_sigterm_finishes_what_fits_in_the_grace_and_interrupts_the_rest_with_a_reason(
    roster, owner_token, stack_factory
):
    stack = stack_factory(AUTOMATION_SHUTDOWN_GRACE_SECONDS=GRACE)
    api = api_client(stack.web(), owner_token)
    worker = stack.worker("w1", concurrency=IN_FLIGHT)

    def start(prompt):
        response = api.post("/api/orgs/acme/agent-runs", json={"agentId": roster.agent.pk, "prompt": prompt})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        long = list(pool.map(lambda _: start("!sleep 600\n!reply never"), range(IN_FLIGHT // 2)))
    wait_until(
        lambda: AgentRun.objects.filter(pk__in=long, status=RunStatus.RUNNING).count() == len(long),
        timeout=60,
        message="the long runs running",
    )
    with ThreadPoolExecutor(max_workers=8) as pool:
        short = list(pool.map(lambda _: start(f"!sleep {SHORT}\n!reply in time"), range(IN_FLIGHT // 2)))
    wait_until(
        lambda: AgentRun.objects.filter(pk__in=short, status=RunStatus.RUNNING).count() == len(short),
        timeout=60,
        message="the short runs running",
    )
    owner = AgentRun.objects.values_list("lease_owner", flat=True).get(pk=long[0])

    # a clean exit (not the kill after the timeout): the agents were stopped when the grace ran out
    worker.terminate(timeout=GRACE + 60)
    assert worker.popen.returncode == 0, worker.output()[-3000:]

    assert set(AgentRun.objects.filter(pk__in=short).values_list("status", flat=True)) == {
        RunStatus.COMPLETED
    }
    assert_each_executed_once(short)
    interrupted = AgentRun.objects.filter(pk__in=long)
    assert set(interrupted.values_list("status", flat=True)) == {RunStatus.INTERRUPTED}
    for run in interrupted:
        assert (
            f"Worker {owner} shut down" in run.last_error and f"{GRACE:g}s shutdown grace" in run.last_error
        )
    assert not AgentRun.objects.filter(status=RunStatus.RUNNING).exists()
