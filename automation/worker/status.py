"""How the workers look from their ``Worker`` rows: live, and consuming or not.

A worker can stay connected to the broker and heartbeat while its consumer no longer takes
messages (a known class of Celery / kombu reconnect bugs). From the database that looks
like: its heartbeat is recent, it has free slots, it has not received a run's message for
longer than a lost message takes to be re-sent (``AUTOMATION_REDISPATCH_AFTER_SECONDS``
plus two sweeps and a heartbeat), and runs have been waiting that long for a worker.
"""

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from automation.models import AgentRun, Worker
from automation.states import RunStatus


@dataclass(frozen=True)
class WorkerState:
    name: str
    in_flight: int
    concurrency: int
    seconds_since_consumed: float | None
    consuming: bool


def consume_deadline() -> timedelta:
    """How long a live worker with free slots may go without a message while runs wait."""
    return timedelta(
        seconds=settings.AUTOMATION_REDISPATCH_AFTER_SECONDS
        + 2 * settings.AUTOMATION_SWEEP_INTERVAL_SECONDS
        + settings.AUTOMATION_LEASE_TTL_SECONDS / 4
    )


def live_workers() -> list[WorkerState]:
    """Workers that beat within the lease TTL and did not stop, each with its consuming state."""
    now = timezone.now()
    ttl = timedelta(seconds=settings.AUTOMATION_LEASE_TTL_SECONDS)
    stale_before = now - consume_deadline()
    work_waits = (
        AgentRun.objects.filter(status=RunStatus.PENDING, dispatched_at__lt=stale_before)
        .filter(Q(not_before__isnull=True) | Q(not_before__lte=now))
        .exists()
    )
    states = []
    for row in Worker.objects.filter(stopped_at__isnull=True, last_beat_at__gte=now - ttl).order_by("name"):
        consumed = row.last_consumed_at
        idle = consumed is None or consumed < stale_before
        states.append(
            WorkerState(
                name=row.name,
                in_flight=row.in_flight,
                concurrency=row.concurrency,
                seconds_since_consumed=(now - consumed).total_seconds() if consumed else None,
                consuming=not (work_waits and idle and row.in_flight < row.concurrency),
            )
        )
    return states
