"""The engine's ticks and sweeps have a queue and a worker of their own (the Procfile's
``maintenance``): a worker whose every slot holds a run, with a backlog behind them, never
holds back the sweep that recovers a crashed worker's runs."""

import uuid
from datetime import timedelta

import pytest
from celery import signature
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from agentpress.celery import app
from automation.models import AgentRun
from automation.services import runs
from automation.states import RunSource, RunStatus
from tests.support import services

QUEUE = settings.AUTOMATION_MAINTENANCE_QUEUE


def _queue_of(task_name: str) -> str:
    return app.amqp.router.route({}, task_name)["queue"].name


def test_every_periodic_task_goes_to_the_maintenance_queue_and_runs_do_not(db):
    call_command("setup_periodic_tasks")
    periodic = set(PeriodicTask.objects.exclude(task="celery.backend_cleanup").values_list("task", flat=True))
    assert periodic, "setup_periodic_tasks registered nothing"
    assert {name: _queue_of(name) for name in periodic} == dict.fromkeys(periodic, QUEUE)
    assert _queue_of("automation.execute_run") == app.conf.task_default_queue
    assert _queue_of("automation.outlook_ingest_message") == app.conf.task_default_queue


def _worker_argv(name: str, concurrency: int, queues: str) -> list[str]:
    argv = services.celery_worker_argv(concurrency, name)
    argv[argv.index("-Q") + 1] = queues
    return argv


@pytest.mark.celery_worker
def test_a_saturated_worker_does_not_hold_back_the_recovery_sweep(roster, transactional_db, tmp_path):
    services.require_postgres()
    services.require_redis()
    services.flush_test_broker()
    started = []
    try:
        busy = services.Process("busy", _worker_argv("busy", 1, "celery"), services.child_env(), tmp_path)
        started.append(busy)
        busy.wait_for("ready.", timeout=60)
        holding = runs.run_create(
            agent=roster.agent, run_as=roster.owner, source=RunSource.MANUAL, prompt="!sleep 120\n!reply late"
        )
        services.wait_until(
            lambda: AgentRun.objects.filter(pk=holding.pk, status=RunStatus.RUNNING).exists(),
            message="the busy worker's one slot is taken",
        )
        backlog = [
            runs.run_create(
                agent=roster.agent, run_as=roster.owner, source=RunSource.MANUAL, prompt=f"!reply {n}"
            )
            for n in range(3)
        ]
        # a run whose worker died: running, its lease expired
        lost = runs.run_create(
            agent=roster.agent,
            run_as=roster.owner,
            source=RunSource.MANUAL,
            prompt="!reply lost",
            not_before=timezone.now() + timedelta(hours=1),
        )
        now = timezone.now()
        AgentRun.objects.filter(pk=lost.pk).update(
            status=RunStatus.RUNNING,
            started_at=now - timedelta(minutes=5),
            heartbeat_at=now - timedelta(minutes=5),
            lease_owner="gone@nowhere/pid:1",
            lease_token=uuid.uuid4(),
            lease_expires_at=now - timedelta(seconds=1),
            attempt=1,
        )
        maintenance = services.Process(
            "maintenance", _worker_argv("maintenance", 2, QUEUE), services.child_env(), tmp_path
        )
        started.append(maintenance)
        maintenance.wait_for("ready.", timeout=60)

        signature("automation.recover_runs").apply_async()

        services.wait_until(
            lambda: AgentRun.objects.filter(pk=lost.pk, status=RunStatus.INTERRUPTED).exists(),
            timeout=30,  # one sweep, on a worker that is free; the busy one would take 120 s
            message="the lost run recovered while the busy worker is saturated",
        )
        assert AgentRun.objects.get(pk=holding.pk).status == RunStatus.RUNNING
        assert set(
            AgentRun.objects.filter(pk__in=[r.pk for r in backlog]).values_list("status", flat=True)
        ) == {RunStatus.PENDING}
    finally:
        for proc in started:
            proc.stop()
