"""Scenario 2: a run that lasts three times the broker's visibility timeout, heartbeating."""

import re
import time

import pytest

from automation.models import AgentRun
from automation.states import RunStatus
from tests.reliability.stack import api_client, assert_each_executed_once
from tests.support.services import wait_until

pytestmark = [pytest.mark.reliability, pytest.mark.celery_worker]

VISIBILITY_TIMEOUT = 4
RUN_SECONDS = 3 * VISIBILITY_TIMEOUT + 3
RECEIVED = re.compile(r"automation\.execute_run\[[^\]]+\] received")
REFUSED = re.compile(r"automation\.execute_run\[[^\]]+\] succeeded in [\d.]+s: 'not-claimed'")


def redeliver_overdue_messages() -> None:
    """What every Redis consumer does on its periodic sweep: put unacked messages older than
    the visibility timeout back on the queue (kombu's ``restore_visible``), here on demand."""
    from agentpress.celery import app

    with app.connection_for_read(transport_options={"visibility_timeout": VISIBILITY_TIMEOUT}) as conn:
        conn.default_channel.qos.restore_visible(num=100, interval=1)


def test_a_run_longer_than_the_visibility_timeout_executes_once(roster, owner_token, stack_factory):
    stack = stack_factory(
        CELERY_VISIBILITY_TIMEOUT_SECONDS=VISIBILITY_TIMEOUT, AUTOMATION_LEASE_TTL_SECONDS=4
    )
    api = api_client(stack.web(), owner_token)
    stack.beat()
    workers = [stack.worker("first", concurrency=1), stack.worker("second", concurrency=1)]
    response = api.post(
        "/api/orgs/acme/agent-runs",
        json={"agentId": roster.agent.pk, "prompt": f"!sleep {RUN_SECONDS}\n!reply done once"},
    )
    assert response.status_code == 201, response.text
    run_id = response.json()["id"]
    wait_until(lambda: AgentRun.objects.get(pk=run_id).status == RunStatus.RUNNING, message="running")
    owner = AgentRun.objects.get(pk=run_id).lease_owner
    idle = next(w for w in workers if not owner.startswith(f"{w.name}@"))

    # Redelivered once: the copy the other worker acks takes the message out of Redis for good.
    time.sleep(VISIBILITY_TIMEOUT + 1)
    redeliver_overdue_messages()
    wait_until(lambda: RECEIVED.search(idle.output()), timeout=15, message="the redelivery")

    wait_until(
        lambda: AgentRun.objects.get(pk=run_id).status != RunStatus.RUNNING,
        timeout=RUN_SECONDS + 10,
        message="the run ended",
    )
    run = AgentRun.objects.get(pk=run_id)
    assert run.status == RunStatus.COMPLETED, run.last_error
    assert run.attempt == 1 and run.lease_owner == owner
    assert (run.completed_at - run.started_at).total_seconds() >= 3 * VISIBILITY_TIMEOUT
    kinds = list(run.events.values_list("kind", flat=True))
    assert kinds == ["created", "claimed", "completed"], kinds
    assert_each_executed_once([run_id])
    # the redelivered message reached the other worker, which found the run claimed (a slow
    # machine may restore the still-unacked original once more: every copy is refused the same)
    wait_until(lambda: len(REFUSED.findall(idle.output())) >= 1, timeout=15, message="redelivery refused")
