"""The bounded log of refused deliveries: why, when, from where and how big — never the body.

A refusal is written by the provider endpoint after it has answered the sender's 4xx;
``prune_refused_deliveries`` keeps the log to an age and a per-organization count, so a
sender hammering an action with bad signatures cannot grow it without bound.
"""

import re
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from automation.models import Action, RefusedDelivery

# The endpoint's short metric reasons → the reasons an operator reads in the log.
REASONS = {
    "bad_signature": "signature",
    "too_large": "size",
    "unknown_action": "unknown_action",
    "malformed": "malformed",
}

# "webhook-timestamp is too old", "… is too far in the future", "Message timestamp too new", …
STALE_TIMESTAMP = re.compile(r"timestamp (is )?(too|not)", re.IGNORECASE)


def refused_delivery_record(
    *, action_ref: str, reason: str, detail: str, source_address: str | None, body_size: int, status_code: int
) -> RefusedDelivery | None:
    """Store one refusal. A rate-limited delivery is not stored (a flood is what the limit is
    for; the metric counts it); a stale or future timestamp is told apart from a bad signature."""
    kind = REASONS.get(reason)
    if kind is None:
        return None
    if kind == "signature" and STALE_TIMESTAMP.search(detail):
        kind = "timestamp"
    action = (
        Action.objects.filter(pk=action_ref).only("pk", "organization_id").first() if action_ref else None
    )
    return RefusedDelivery.objects.create(
        organization_id=action.organization_id if action else None,
        action=action,
        action_ref=action_ref[:100],
        reason=kind,
        detail=detail[:300],
        source_address=source_address or None,
        body_size=max(body_size, 0),
        status_code=status_code,
    )


def prune_refused_deliveries() -> int:
    """Delete refusals older than ``AUTOMATION_REFUSED_DELIVERY_RETENTION_DAYS`` and all but the
    newest ``AUTOMATION_REFUSED_DELIVERY_MAX_PER_ORG`` of each organization, in short batches."""
    size = settings.AUTOMATION_RETENTION_BATCH_SIZE
    cutoff = timezone.now() - timedelta(days=settings.AUTOMATION_REFUSED_DELIVERY_RETENTION_DAYS)
    deleted = 0
    while ids := list(
        RefusedDelivery.objects.filter(received_at__lt=cutoff).values_list("pk", flat=True)[:size]
    ):
        with transaction.atomic():
            deleted += RefusedDelivery.objects.filter(pk__in=ids).delete()[0]
    keep = settings.AUTOMATION_REFUSED_DELIVERY_MAX_PER_ORG
    crowded = (
        RefusedDelivery.objects.values("organization_id").annotate(n=Count("*")).filter(n__gt=keep).order_by()
    )
    for row in crowded:
        rows = RefusedDelivery.objects.filter(organization_id=row["organization_id"]).order_by(
            "-received_at", "-id"
        )
        edge = rows.values_list("received_at", "id")[keep - 1]
        older = rows.filter(received_at__lte=edge[0]).exclude(received_at=edge[0], id__gte=edge[1])
        while ids := list(older.values_list("pk", flat=True)[:size]):
            with transaction.atomic():
                deleted += RefusedDelivery.objects.filter(pk__in=ids).delete()[0]
    return deleted
