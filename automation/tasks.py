"""Thin Celery tasks: look the row up, call one service, return.

Periodic tasks are registered in django-celery-beat by ``setup_periodic_tasks``.
"""

import logging

from celery import shared_task

from automation.providers.graph import GraphError, GraphThrottled
from automation.services import (
    execution,
    follow_ups,
    outlook,
    outlook_mail,
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
    """A wake-up: claim ``run_id`` if it is the fair choice, else the next fair run; then the
    next fair runs in the slot each one frees, while eligible work and no message waits."""
    return execution.execute_runs(run_id=run_id, worker=worker_name(self.request.hostname))


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


def graph_retry(task, exc: GraphError):
    """Retry a Graph call later: after ``Retry-After`` when throttled, else with backoff."""
    countdown = exc.retry_after if isinstance(exc, GraphThrottled) else 30 * 2**task.request.retries
    return task.retry(exc=exc, countdown=countdown)


@shared_task(bind=True, name="automation.outlook_ingest_message", max_retries=5)
def outlook_ingest_message(self, action_id: str, message_id: str) -> str:
    try:
        return outlook_mail.message_notified(action_id=action_id, message_id=message_id)
    except GraphError as exc:
        raise graph_retry(self, exc) from exc


@shared_task(bind=True, name="automation.outlook_lifecycle", max_retries=5)
def outlook_lifecycle(self, action_id: str, kind: str, subscription_id: str) -> str:
    try:
        return outlook.lifecycle_handle(action_id=action_id, kind=kind, subscription_id=subscription_id)
    except outlook.SubscriptionBusy as exc:
        raise self.retry(exc=exc, countdown=outlook.CLAIM_SECONDS) from exc


@shared_task(name="automation.outlook_sync_subscription")
def outlook_sync_subscription(action_id: str) -> str:
    return outlook.subscription_sync(action_id=action_id)


@shared_task(bind=True, name="automation.outlook_delete_subscription", max_retries=5)
def outlook_delete_subscription(self, graph_id: str) -> None:
    try:
        outlook.subscription_delete_remote(graph_id=graph_id)
    except GraphError as exc:
        raise graph_retry(self, exc) from exc


@shared_task(name="automation.maintain_outlook_subscriptions")
def maintain_outlook_subscriptions() -> dict:
    return outlook.maintain_subscriptions()
