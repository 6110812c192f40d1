"""Scenario 7: one event delivered 50 times at once, and 100 events on 5 contexts at once."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from django.db.models import Count

from automation.models import AgentRun, ProviderEvent
from automation.states import RUN_ACTIVE, ProviderEventStatus, RunStatus
from tests.reliability.stack import api_client, assert_each_executed_once, post_webhook
from tests.support.services import wait_until

pytestmark = [pytest.mark.reliability, pytest.mark.celery_worker]


class ActiveRunSampler(threading.Thread):
    """Counts active runs per context every few milliseconds while the load runs."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.samples = 0
        self.worst = 0

    def run(self):
        try:
            while not self.stop.is_set():
                per_context = (
                    AgentRun.objects.filter(status__in=RUN_ACTIVE)
                    .exclude(context_key="")
                    .values("agent_id", "context_type", "context_key")
                    .annotate(n=Count("*"))
                    .values_list("n", flat=True)
                )
                self.worst = max([self.worst, *per_context])
                self.samples += 1
                self.stop.wait(0.02)
        finally:
            connection.close()


def test_concurrent_deliveries_start_one_run_per_event_and_context(
    roster, owner_token, action, stack_factory
):
    action.instructions = "!sleep 0.3\n!reply handled"
    action.save(update_fields=["instructions"])
    stack = stack_factory()
    client = api_client(stack.web(workers=2, threads=8), owner_token)
    stack.beat()
    stack.worker("w1", concurrency=2)
    stack.worker("w2", concurrency=2)
    sampler = ActiveRunSampler()
    sampler.start()

    same = [("evt_same", {"ticket": {"id": "T-same"}})] * 50
    distinct = [(f"evt_{n}", {"ticket": {"id": f"T-{n % 5}"}, "n": n}) for n in range(100)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda d: post_webhook(client, action.pk, *d), same + distinct))
    assert sorted({a.status_code for a in answers}) in ([200, 202], [202]), {a.text for a in answers}

    def settled():
        events = ProviderEvent.objects.all()
        return (
            events.count() == 101
            and not events.exclude(
                status__in=[ProviderEventStatus.STARTED, ProviderEventStatus.COALESCED]
            ).exists()
            and not AgentRun.objects.filter(status__in=RUN_ACTIVE).exists()
        )

    wait_until(settled, timeout=120, interval=0.5, message="every event started or coalesced, runs done")
    sampler.stop.set()
    sampler.join()

    repeated = ProviderEvent.objects.get(event_id="evt_same")
    assert repeated.delivery_count == 50
    assert AgentRun.objects.filter(context_key="T-same").count() == 1
    # conservation: each event maps to one run; each run executed once and completed
    by_run = dict(ProviderEvent.objects.values("run_id").annotate(n=Count("*")).values_list("run_id", "n"))
    assert None not in by_run and sum(by_run.values()) == 101
    assert set(by_run) == set(AgentRun.objects.values_list("pk", flat=True))
    assert set(AgentRun.objects.values_list("status", flat=True)) == {RunStatus.COMPLETED}
    assert_each_executed_once(by_run)
    assert sampler.samples > 20 and sampler.worst == 1
