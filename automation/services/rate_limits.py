"""The per-action delivery rate limit, counted on the action's row.

A fixed window: the first delivery after the window ended starts a new one. The count
and the window live on ``Action`` so every web process shares them; the update is one
short transaction of its own, so it never holds the row while an event is ingested.
"""

import math
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from automation.models import Action


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    retry_after_seconds: int = 0


def action_rate_check(*, action_id) -> RateDecision:
    """Count one delivery for the action; refuse it when the window's limit is spent."""
    now = timezone.now()
    window = timedelta(seconds=settings.AUTOMATION_WEBHOOK_RATE_WINDOW_SECONDS)
    with transaction.atomic():
        expired = Q(rate_window_started_at__isnull=True) | Q(rate_window_started_at__lte=now - window)
        Action.objects.filter(expired, pk=action_id).update(rate_window_started_at=now, rate_window_count=0)
        Action.objects.filter(pk=action_id).update(rate_window_count=F("rate_window_count") + 1)
        started, count = Action.objects.values_list("rate_window_started_at", "rate_window_count").get(
            pk=action_id
        )
    if count <= settings.AUTOMATION_WEBHOOK_RATE_LIMIT:
        return RateDecision(allowed=True)
    return RateDecision(
        allowed=False, retry_after_seconds=max(1, math.ceil((started + window - now).total_seconds()))
    )
