"""Periodic ticks are quiet at INFO when they did nothing and write one line when they did work,
in a real worker as well as through the loggers Celery writes with."""

import logging
import re
from datetime import timedelta

import pytest
from celery.app.trace import LOG_RECEIVED, LOG_SUCCESS
from django.conf import settings
from django.utils import timezone

from automation import tasks
from automation.management.commands.setup_periodic_tasks import periodic_tasks
from automation.models import AgentRun, Schedule
from automation.services import schedules
from automation.states import RunStatus
from tests.support.services import wait_until

TICK = "automation.fire_due_schedules"


def celery_line(logger_name: str, msg: str, args, level=logging.INFO) -> None:
    """Log as Celery does: one mapping of fields (celery.app.trace.info) or beat's tuple."""
    logger = logging.getLogger(logger_name)
    logger.log(level, msg, *args) if isinstance(args, tuple) else logger.log(level, msg, args)


def task_fields(name: str, return_value: str | None = None) -> dict:
    fields = {"id": "5f1c", "name": name, "args": "()", "kwargs": "{}", "eta": None}
    if return_value is not None:
        fields.update(return_value=return_value, runtime=0.01)
    return fields


def test_every_periodic_task_is_quiet_when_idle():
    assert {task for task, _ in periodic_tasks().values()} <= set(settings.AUTOMATION_QUIET_TASKS)


@pytest.mark.parametrize("idle", ["0", "None", "{}", "{'interrupted': 0, 'redispatched': 0}", "[]"])
def test_an_idle_tick_writes_nothing_at_info(caplog, idle):
    caplog.set_level(logging.INFO)
    celery_line(
        "celery.beat", "Scheduler: Sending due task %s (%s)", ("automation: fire due schedules", TICK)
    )
    celery_line("celery.worker.strategy", LOG_RECEIVED, task_fields(TICK))
    celery_line("celery.app.trace", LOG_SUCCESS, task_fields(TICK, idle))
    assert caplog.records == []


def test_a_tick_that_did_something_writes_one_line(caplog):
    caplog.set_level(logging.INFO)
    celery_line(
        "celery.beat",
        "Scheduler: Sending due task %s (%s)",
        ("automation: recover runs", "automation.recover_runs"),
    )
    celery_line("celery.worker.strategy", LOG_RECEIVED, task_fields("automation.recover_runs"))
    celery_line(
        "celery.app.trace",
        LOG_SUCCESS,
        task_fields("automation.recover_runs", "{'interrupted': 2, 'redispatched': 0}"),
    )
    assert [r.getMessage() for r in caplog.records] == [
        "Task automation.recover_runs[5f1c] succeeded in 0.01s: {'interrupted': 2, 'redispatched': 0}"
    ]


def test_other_tasks_and_warnings_are_untouched(caplog):
    caplog.set_level(logging.INFO)
    celery_line("celery.worker.strategy", LOG_RECEIVED, task_fields("automation.execute_run"))
    celery_line("celery.app.trace", LOG_SUCCESS, task_fields("automation.execute_run", "'completed'"))
    celery_line("celery.beat", "Scheduler: Sending due task %s (%s)", ("nightly", "other.task"))
    celery_line(
        "celery.app.trace",
        "Task %(name)s[%(id)s] retry: %(exc)s",
        task_fields(TICK) | {"exc": "x"},
        logging.WARNING,
    )
    assert len(caplog.records) == 4


@pytest.mark.django_db(transaction=True)
@pytest.mark.celery_worker
def test_a_worker_logs_idle_ticks_not_at_all_and_a_busy_tick_once(roster, worker_pool):
    worker = worker_pool("ticks", concurrency=1)
    for _ in range(5):
        tasks.fire_due_follow_ups.delay(wakeup=True)
        tasks.dispatch_pending_runs.delay()
        tasks.recover_runs.delay()
    # queued after the idle ticks on a one-thread worker, so it runs after them
    schedule = schedules.schedule_create(
        organization=roster.org, agent=roster.agent, run_as=roster.owner, name="Hourly digest",
        cadence="interval", interval_minutes=60, timezone="UTC", instructions="!reply digest",
    )  # fmt: skip
    Schedule.objects.filter(pk=schedule.pk).update(next_run_at=timezone.now() - timedelta(seconds=1))
    tasks.fire_due_schedules.delay(wakeup=True)
    run = wait_until(
        lambda: AgentRun.objects.filter(schedule=schedule, status=RunStatus.COMPLETED).first(),
        timeout=60,
        message=f"the scheduled run completed:\n{worker.output()[-4000:]}",
    )
    wait_until(
        lambda: str(run.pk) in worker.output() and f"{TICK}[" in worker.output(), message="the worker's lines"
    )
    lines = worker.output().split(" ready.", 1)[1].splitlines()  # the log after the start-up banner
    for idle in (
        "automation.fire_due_follow_ups",
        "automation.dispatch_pending_runs",
        "automation.recover_runs",
    ):
        assert [line for line in lines if idle in line] == [], idle
    busy = [line for line in lines if TICK in line]
    assert len(busy) == 1 and re.search(r"succeeded in [\d.]+s: 1 ", busy[0]), busy


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_beat_sends_ticks_without_a_line_for_each(settings, tmp_path):
    import redis
    from django.core.management import call_command

    from tests.support import services

    services.require_postgres()
    services.require_redis()
    services.flush_test_broker()
    settings.AUTOMATION_TICK_SECONDS = 1
    settings.AUTOMATION_SWEEP_INTERVAL_SECONDS = 1
    call_command("setup_periodic_tasks", stdout=open("/dev/null", "w"))  # noqa: SIM115
    beat = services.Process("beat", services.celery_beat_argv("quiet-beat"), services.child_env(), tmp_path)
    try:
        beat.wait_for("beat: Starting", timeout=60)
        queue = redis.Redis.from_url(services.TEST_BROKER_URL)
        # no worker consumes: the maintenance queue holds what beat sent
        ticks = settings.AUTOMATION_MAINTENANCE_QUEUE
        wait_until(lambda: queue.llen(ticks) >= 8, timeout=60, message="beat sent its ticks")
    finally:
        beat.terminate(timeout=10)
    log = beat.output().split("beat: Starting", 1)[1]
    beat.stop()
    assert "Sending due task" not in log, log[-2000:]
