"""Thin Celery tasks: look the row up, call one service, return.

Periodic tasks are registered in django-celery-beat by ``setup_periodic_tasks``.
"""

import os

from celery import shared_task

from automation.services import execution, follow_ups, recovery, retention, schedules


def worker_id(task) -> str:
    return f"{task.request.hostname or 'worker'}/pid:{os.getpid()}"


@shared_task(bind=True, name="automation.execute_run")
def execute_run(self, run_id: str) -> str:
    return execution.execute_run(run_id=run_id, worker=worker_id(self))


@shared_task(name="automation.fire_due_schedules")
def fire_due_schedules() -> int:
    return schedules.fire_due_schedules()


@shared_task(name="automation.fire_due_follow_ups")
def fire_due_follow_ups() -> int:
    return follow_ups.fire_due_follow_ups()


@shared_task(name="automation.dispatch_pending_runs")
def dispatch_pending_runs() -> int:
    return recovery.redispatch_pending_runs()


@shared_task(name="automation.recover_runs")
def recover_runs() -> dict:
    return recovery.sweep()


@shared_task(name="automation.apply_retention")
def apply_retention() -> dict:
    return retention.apply_retention()
