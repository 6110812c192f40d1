"""Wake-ups between ticks, so due work starts on time instead of up to one tick late.

Each periodic tick also looks one tick ahead and asks the broker to run the dispatcher
again at the instants where schedules or follow-ups fall due. The periodic tick stays
the safety net: a lost or early wake-up only means the work starts at the next tick, and
a repeated one finds nothing (claims are ``SKIP LOCKED``, slots and follow-ups unique).
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from automation.models import FollowUp, Schedule
from automation.states import FollowUpStatus

RESOLUTION = timedelta(milliseconds=250)  # due times closer than this share one wake-up
MAX_WAKEUPS = 20  # per tick; anything beyond waits for the next tick


def _due_within_next_tick(queryset: QuerySet, field: str) -> list[datetime]:
    now = timezone.now()
    horizon = now + timedelta(seconds=settings.AUTOMATION_TICK_SECONDS)
    times = (
        queryset.filter(**{f"{field}__gt": now, f"{field}__lte": horizon})
        .order_by(field)
        .values_list(field, flat=True)[: MAX_WAKEUPS * 10]
    )
    wakeups: list[datetime] = []
    for due in times:
        if not wakeups or due - wakeups[-1] >= RESOLUTION:
            wakeups.append(due)
            if len(wakeups) == MAX_WAKEUPS:
                break
    return wakeups


def schedule_wakeups() -> list[datetime]:
    """When ``fire_due_schedules`` should run again before the next tick."""
    return _due_within_next_tick(Schedule.objects.filter(enabled=True), "next_run_at")


def follow_up_wakeups() -> list[datetime]:
    """When ``fire_due_follow_ups`` should run again before the next tick."""
    return _due_within_next_tick(FollowUp.objects.filter(status=FollowUpStatus.PENDING), "scheduled_for")
