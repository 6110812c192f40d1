"""Scenario 3: Redis stopped for 20 seconds or more while 200 webhook events and 50 manual runs arrive.

Recovery is a bound stated from settings: once Redis is back, the worker consumes again
within one reconnect interval plus the connect timeout (``automation.worker.consumer``), and
beat's next sweep (one sweep interval, and one more for its trip) sends every run whose
publish failed. What remains is executing the runs themselves.
"""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings

from automation.models import AgentRun, ProviderEvent
from automation.states import ProviderEventStatus, RunStatus
from tests.reliability.private_services import RedisServer
from tests.reliability.stack import api_client, assert_each_executed_once, post_webhook
from tests.support.services import wait_until

pytestmark = [pytest.mark.reliability, pytest.mark.celery_worker]

OUTAGE_SECONDS = 20
RUNS = 250
# A publish gives up after the broker's connect timeout (2 s) or socket timeout (5 s).
ANSWER_BOUND_SECONDS = 10
SWEEP = 1  # the stack's AUTOMATION_SWEEP_INTERVAL_SECONDS
# broker back → the worker consuming again → beat's next sweep (and one more for its trip)
# re-sending every stored run; sending is a publish and an update per run, 0.1 s each at worst
BROKER_BACK_TO_SENT = (
    settings.AUTOMATION_BROKER_RECONNECT_SECONDS
    + settings.CELERY_BROKER_CONNECTION_TIMEOUT
    + 2 * SWEEP
    + RUNS * 0.1
)
# executing them as capacity allows: 3 runs/s is a floor measured on the loaded two-core machine
EXECUTION_SECONDS = RUNS / 3
# the default: a run sent once is not re-sent while a slow machine is still executing the others
REDISPATCH_AFTER = 30


@pytest.fixture
def private_redis(tmp_path):
    server = RedisServer(tmp_path)
    yield server
    server.close()


def test_work_arriving_while_redis_is_down_runs_once_after_it_returns(
    roster, owner_token, action, stack_factory, private_redis
):
    stack = stack_factory(
        CELERY_BROKER_URL=private_redis.url,
        AUTOMATION_SWEEP_INTERVAL_SECONDS=SWEEP,
        AUTOMATION_REDISPATCH_AFTER_SECONDS=REDISPATCH_AFTER,
    )
    client = api_client(stack.web(workers=2, threads=8), owner_token, timeout=30)
    stack.beat()
    stack.worker("w1", concurrency=100)

    def deliver(n):
        begin = time.monotonic()
        if n < 200:
            answer = post_webhook(client, action.pk, f"evt_{n}", {"ticket": {"id": f"T-{n}"}})
        else:
            answer = client.post(
                "/api/orgs/acme/agent-runs", json={"agentId": roster.agent.pk, "prompt": f"!reply manual {n}"}
            )
        return answer.status_code, time.monotonic() - begin

    private_redis.kill()
    down_at = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(deliver, range(RUNS)))
    assert sorted({code for code, _ in answers}) in ([201, 202], [202, 201]), answers
    assert max(seconds for _, seconds in answers) < ANSWER_BOUND_SECONDS
    assert AgentRun.objects.count() == RUNS
    assert AgentRun.objects.filter(status=RunStatus.PENDING, dispatched_at__isnull=True).count() == RUNS

    # Redis stays down for the outage and until the whole load has arrived (a loaded machine
    # answers slower); the clock of the bound starts when it is back
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))
    private_redis.start()
    wait_until(
        lambda: not AgentRun.objects.filter(dispatched_at__isnull=True).exists(),
        timeout=BROKER_BACK_TO_SENT,
        interval=0.5,
        message=f"every stored run sent within {BROKER_BACK_TO_SENT:g}s of Redis returning",
    )
    wait_until(
        lambda: AgentRun.objects.filter(status=RunStatus.COMPLETED).count() == RUNS,
        timeout=EXECUTION_SECONDS,
        interval=0.5,
        message=f"all {RUNS} runs completed after they were sent",
    )
    time.sleep(3)  # any duplicate delivery still in flight would now show up as a second claim
    assert set(AgentRun.objects.values_list("status", flat=True)) == {RunStatus.COMPLETED}
    assert set(ProviderEvent.objects.values_list("status", flat=True)) == {ProviderEventStatus.STARTED}
    assert_each_executed_once(AgentRun.objects.values_list("pk", flat=True))
