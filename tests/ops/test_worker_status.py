"""A worker that is connected and heartbeating but no longer consuming shows in ``/metrics``."""

from datetime import timedelta

import pytest
from django.utils import timezone

from agentpress.ops.metrics import consume_deadline
from automation.models import Worker
from automation.states import RunStatus
from tests.factories import AgentRunFactory
from tests.ops.test_metrics import scrape, value


@pytest.fixture
def fleet(db):
    now = timezone.now()
    long_ago = now - consume_deadline() - timedelta(seconds=5)
    Worker.objects.create(
        name="busy/pid:1", concurrency=10, in_flight=3, last_beat_at=now, last_consumed_at=now
    )
    Worker.objects.create(
        name="stuck/pid:2", concurrency=10, in_flight=0, last_beat_at=now, last_consumed_at=long_ago
    )
    Worker.objects.create(
        name="full/pid:3", concurrency=2, in_flight=2, last_beat_at=now, last_consumed_at=long_ago
    )
    Worker.objects.create(name="gone/pid:4", concurrency=10, last_beat_at=long_ago, stopped_at=long_ago)
    return long_ago


def test_a_live_worker_with_free_slots_that_consumes_nothing_while_runs_wait_is_flagged(
    roster, client, fleet
):
    AgentRunFactory(agent=roster.agent, run_as=roster.owner, status=RunStatus.PENDING, dispatched_at=fleet)
    samples = scrape(client)
    assert value(samples, "automation_worker_not_consuming", worker="stuck/pid:2") == 1
    assert value(samples, "automation_worker_not_consuming", worker="busy/pid:1") == 0
    assert value(samples, "automation_worker_not_consuming", worker="full/pid:3") == 0  # no free slot
    assert ("automation_worker_not_consuming", (("worker", "gone/pid:4"),)) not in samples  # stopped
    assert value(samples, "automation_worker_in_flight", worker="busy/pid:1") == 3
    assert value(samples, "automation_worker_seconds_since_consumed", worker="stuck/pid:2") > 0


def test_an_idle_worker_is_not_flagged_when_no_run_waits(roster, client, fleet):
    AgentRunFactory(
        agent=roster.agent, run_as=roster.owner, status=RunStatus.PENDING, dispatched_at=timezone.now()
    )
    samples = scrape(client)
    assert value(samples, "automation_worker_not_consuming", worker="stuck/pid:2") == 0
