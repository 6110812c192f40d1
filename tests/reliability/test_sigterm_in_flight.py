"""Scenario: SIGTERM to a worker with 200 runs in flight in its one process.

Runs that can finish within ``AUTOMATION_SHUTDOWN_GRACE_SECONDS`` complete; the others are
interrupted with a reason naming the worker and the grace period. None is left running.
The agent's limit is the 200 in flight, so the runs queued after them wait in the worker's
spare slots with "agent at its limit"; a stopping worker claims nothing more, and the slots
its runs gave back wake the next worker for them. The limit is never exceeded.
"""

from concurrent.futures import ThreadPoolExecutor

import pytest

from automation.models import AgentRun
from automation.states import RunStatus
from tests.reliability.stack import (
    api_client,
    assert_each_executed_once,
    assert_limits_held,
    running_intervals,
)
from tests.support.services import wait_until

pytestmark = [pytest.mark.reliability, pytest.mark.celery_worker]

IN_FLIGHT = 200  # the agent's limit
HELD = 20  # queued behind the limit
GRACE = 20
# Finishes inside the grace however late the SIGTERM lands (it lands after every short run
# started), and lasts longer than a loaded machine takes to create the hundred of them.
SHORT = GRACE / 2


def test_sigterm_finishes_what_fits_in_the_grace_and_interrupts_the_rest_with_a_reason(
    roster, owner_token, stack_factory
):
    roster.agent.max_concurrent_runs = IN_FLIGHT
    roster.agent.save(update_fields=["max_concurrent_runs"])
    stack = stack_factory(AUTOMATION_SHUTDOWN_GRACE_SECONDS=GRACE)
    api = api_client(stack.web(), owner_token)
    worker = stack.worker("w1", concurrency=IN_FLIGHT + HELD)

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
    with ThreadPoolExecutor(max_workers=8) as pool:
        held = list(pool.map(lambda _: start("!reply after the shutdown"), range(HELD)))
    at_limit = f"agent at its limit ({IN_FLIGHT} / {IN_FLIGHT})"
    wait_until(
        lambda: (
            AgentRun.objects.filter(pk__in=held, waiting_reason=at_limit).count()
            + AgentRun.objects.filter(pk__in=held, status=RunStatus.COMPLETED).count()  # a short run ended
            == HELD
        ),
        timeout=60,
        message="the queued runs held by the agent's limit",
    )
    assert AgentRun.objects.filter(pk__in=held, waiting_reason=at_limit).exists()
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

    # the slots the stopped worker gave back woke the next one for the held runs
    stack.worker("w2", concurrency=HELD)
    wait_until(
        lambda: AgentRun.objects.filter(pk__in=held, status=RunStatus.COMPLETED).count() == HELD,
        timeout=60,
        message="the held runs completed by the next worker",
    )
    assert_each_executed_once(short + held)
    # the limit bound (the held runs said so, above) and was never exceeded
    assert_limits_held(running_intervals(), agents={roster.agent.pk: IN_FLIGHT})
