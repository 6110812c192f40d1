"""Thin Celery tasks: look the row up, call one service, return.

Periodic tasks are registered in django-celery-beat by ``setup_periodic_tasks``.
"""

import logging

from celery import shared_task

from automation.services import (
    execution,
    follow_ups,
    recovery,
    refused_deliveries,
    retention,
    schedules,
    wakeups,
)
from automation.worker.signals import worker_name

logger = logging.getLogger(__name__)


@shared_task(bind=True, name="automation.execute_run")
def execute_run(self, run_id: str | None = None) -> str:
    """A wake-up: claim ``run_id`` if it is the fair choice, else the next fair run."""
    return execution.execute_run(run_id=run_id, worker=worker_name(self.request.hostname))


def send_wakeups(task, times) -> None:
    """Run ``task`` again at each instant; a wake-up that cannot be sent waits for the next tick."""
    for at in times:
        try:
            task.apply_async(kwargs={"wakeup": True}, eta=at, retry=False)
        except Exception as exc:
            logger.warning("Could not send a wake-up of %s: %s", task.name, exc)
            return


@shared_task(name="automation.fire_due_schedules")
def fire_due_schedules(wakeup: bool = False) -> int:
    started = schedules.fire_due_schedules()
    if not wakeup:  # only the periodic tick looks ahead, so wake-ups never multiply
        send_wakeups(fire_due_schedules, wakeups.schedule_wakeups())
    return started


@shared_task(name="automation.fire_due_follow_ups")
def fire_due_follow_ups(wakeup: bool = False) -> int:
    started = follow_ups.fire_due_follow_ups()
    if not wakeup:
        send_wakeups(fire_due_follow_ups, wakeups.follow_up_wakeups())
    return started


@shared_task(name="automation.dispatch_pending_runs")
def dispatch_pending_runs() -> int:
    return recovery.redispatch_pending_runs()


@shared_task(name="automation.recover_runs")
def recover_runs() -> dict:
    return recovery.sweep()


@shared_task(name="automation.apply_retention")
def apply_retention() -> dict:
    totals = retention.apply_retention()
    totals["refused_deliveries"] = refused_deliveries.prune_refused_deliveries()
    return totals
