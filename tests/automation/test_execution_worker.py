"""The run engine with real ``celery worker`` processes on PostgreSQL and Redis."""

import subprocess
import sys
import time
import uuid

import pytest
from django.db import connection

from agentpress.agents.models import Message
from automation.models import AgentRun, RunEvent
from automation.services import recovery, runs, settlement
from automation.states import RunSource, RunStatus
from automation.tasks import execute_run
from tests.support.services import child_env, wait_until

pytestmark = pytest.mark.celery_worker


def status_of(run):
    return AgentRun.objects.values_list("status", flat=True).get(pk=run.pk)


def start(roster, prompt, **kw):
    return runs.run_create(
        agent=roster.agent, run_as=roster.owner, source=RunSource.MANUAL, prompt=prompt, **kw
    )


def test_worker_executes_a_scripted_run_end_to_end(roster, worker_pool):
    worker_pool()
    run = start(roster, "!reply Hello from the worker")
    wait_until(lambda: status_of(run) == RunStatus.COMPLETED, message="run completed")
    run.refresh_from_db()
    assert run.started_at and run.completed_at and run.attempt == 1 and run.lease_owner.startswith("w1@")
    assert (
        Message.objects.filter(thread=run.thread, role="assistant", content="Hello from the worker").count()
        == 1
    )
    assert list(run.events.values_list("kind", flat=True)) == ["created", "claimed", "completed"]


def test_a_message_delivered_twice_executes_the_agent_once(roster, worker_pool):
    worker_pool(concurrency=2)
    run = start(roster, "!sleep 1\n!reply once")
    execute_run.apply_async(args=[str(run.pk)])  # the duplicate delivery
    wait_until(lambda: status_of(run) == RunStatus.COMPLETED, message="run completed")
    time.sleep(1.5)  # give the duplicate time to be consumed
    assert Message.objects.filter(thread=run.thread, content="once").count() == 1
    assert run.events.filter(kind="claimed").count() == 1


def test_cancelling_a_running_run_stops_the_agent_within_a_heartbeat(roster, worker_pool):
    worker_pool(AUTOMATION_LEASE_TTL_SECONDS=2)
    run = start(roster, "!sleep 60\n!reply never")
    wait_until(lambda: status_of(run) == RunStatus.RUNNING, message="run running")
    settlement.cancel_run(run_id=run.pk, reason="test")
    cancelled_at = time.monotonic()
    wait_until(lambda: run.events.filter(kind="agent_stopped").exists(), timeout=10, message="agent stopped")
    assert time.monotonic() - cancelled_at < 2 / 4 + 1.5
    assert status_of(run) == RunStatus.CANCELLED
    assert not Message.objects.filter(thread=run.thread, content="never").exists()


def test_kill_9_mid_run_is_recovered_as_interrupted(roster, worker_pool):
    worker = worker_pool(AUTOMATION_LEASE_TTL_SECONDS=3)
    run = start(roster, "!sleep 60\n!reply never")
    wait_until(lambda: status_of(run) == RunStatus.RUNNING, message="run running")
    owner = AgentRun.objects.get(pk=run.pk).lease_owner
    worker.kill9()
    killed_at = time.monotonic()
    # the sweep, as beat would run it every second in this test
    wait_until(lambda: recovery.recover_stale_leases() or status_of(run) == RunStatus.INTERRUPTED, timeout=10)
    assert time.monotonic() - killed_at <= 3 + 1 + 1
    run.refresh_from_db()
    assert run.status == RunStatus.INTERRUPTED
    assert owner in run.last_error
    assert list(run.events.values_list("kind", flat=True))[-1] == "lease_expired"


def test_a_run_created_while_the_broker_is_down_runs_after_the_resend_sweep(roster, worker_pool):
    unreachable = child_env(CELERY_BROKER_URL="redis://127.0.0.1:1/0")  # nothing listens there
    begin = time.monotonic()
    out = subprocess.run(
        [sys.executable, "manage.py", "start_run", "--org", "acme", "--agent", str(roster.agent.pk), "--as", "owner",
         "--prompt", "!reply after the outage"],
        env=unreachable, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert time.monotonic() - begin < 20
    run = AgentRun.objects.get(pk=out.stdout.strip())
    assert run.status == RunStatus.PENDING and run.dispatched_at is None
    assert run.events.filter(kind="dispatch_failed").exists()
    worker_pool()
    assert recovery.redispatch_pending_runs() == 1
    wait_until(lambda: status_of(run) == RunStatus.COMPLETED, message="run completed after resend")
    assert Message.objects.filter(thread=run.thread, content="after the outage").count() == 1


def worker_connections(app_name: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [app_name])
        return cursor.fetchone()[0]


def test_hundreds_in_flight_hold_a_bounded_pool_and_cancel_stops_exactly_the_cancelled(roster, worker_pool):
    """One worker process, 300 runs waiting at once: at most 30 PostgreSQL connections, and
    cancelling 100 of them stops those agents within one heartbeat interval, the others go on."""
    in_flight, ttl, pool_max = 300, 4, 20
    interval = ttl / 4
    app_name = f"h14-worker-{uuid.uuid4().hex[:8]}"
    worker_pool(
        concurrency=in_flight,
        AUTOMATION_LEASE_TTL_SECONDS=ttl,
        DATABASE_POOL_MAX_SIZE=pool_max,
        PGAPPNAME=app_name,
    )
    started = [start(roster, "!sleep 40\n!reply finished") for _ in range(in_flight)]
    peak = 0

    def all_running():
        nonlocal peak
        peak = max(peak, worker_connections(app_name))
        return AgentRun.objects.filter(status=RunStatus.RUNNING).count() == in_flight

    wait_until(all_running, timeout=120, interval=0.2, message=f"{in_flight} runs running at once")
    for _ in range(20):  # several heartbeats while every agent waits
        peak = max(peak, worker_connections(app_name))
        time.sleep(0.1)
    assert peak <= 30, f"the worker held {peak} connections with {in_flight} runs in flight"
    assert len(set(AgentRun.objects.values_list("lease_owner", flat=True))) == 1, "one worker process"

    cancelled, kept = started[:100], started[100:]
    for run in cancelled:
        settlement.cancel_run(run_id=run.pk, reason="test")
    ids = [r.pk for r in cancelled]
    wait_until(
        lambda: RunEvent.objects.filter(run_id__in=ids, kind="agent_stopped").count() == len(ids),
        timeout=interval + 30,
        message="every cancelled agent stopped",
    )
    margin = 3  # the loaded two-core machine: the stopped agent's thread writes its event
    for run in cancelled:
        cancelled_at = run.events.get(kind="cancelled").at
        stopped_at = run.events.get(kind="agent_stopped").at
        assert (stopped_at - cancelled_at).total_seconds() <= interval + margin
    assert not RunEvent.objects.filter(run__in=kept, kind="agent_stopped").exists()
    assert AgentRun.objects.filter(pk__in=[r.pk for r in kept], status=RunStatus.RUNNING).count() == len(kept)
    assert not Message.objects.filter(run__in=cancelled, content="finished").exists()
