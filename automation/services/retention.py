"""Retention: keep the automation tables small over months.

Per organization (``Organization.retention_days``, default 90): terminal runs that
finished before the cutoff are deleted with their timeline events, ended follow-ups and
settled provider events too. Provider event payloads (the inbound content, often the
largest column) are emptied earlier, after ``AUTOMATION_PROVIDER_PAYLOAD_RETENTION_DAYS``.

Every delete or prune takes a batch of at most ``AUTOMATION_RETENTION_BATCH_SIZE``
primary keys, then works on exactly those rows in its own short transaction, so no
statement holds locks on more than one batch and concurrent work is never blocked for long.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from agentpress.ops import metrics
from agentpress.orgs.models import Organization
from automation.models import AgentRun, FollowUp, ProviderEvent, RunEvent
from automation.states import FOLLOW_UP_ACTIVE, RUN_TERMINAL, ProviderEventStatus

logger = logging.getLogger(__name__)


def _batches(queryset):
    """Successive lists of primary keys, smallest first, until none match."""
    size = settings.AUTOMATION_RETENTION_BATCH_SIZE
    while True:
        ids = list(queryset.order_by("pk").values_list("pk", flat=True)[:size])
        if not ids:
            return
        yield ids


def _count(totals: dict, kind: str, n: int) -> None:
    totals[kind] = totals.get(kind, 0) + n
    metrics.RETENTION_DELETED.labels(kind=kind).inc(n)


def delete_expired_runs(*, organization_id: int, cutoff, totals: dict) -> None:
    """Terminal runs finished before ``cutoff``, their events first (no cascade scan)."""
    # completed_at >= created_at, so the created_at bound only helps the index.
    expired = AgentRun.objects.filter(
        organization_id=organization_id,
        status__in=RUN_TERMINAL,
        created_at__lt=cutoff,
        completed_at__lt=cutoff,
    )
    for ids in _batches(expired):
        with transaction.atomic():
            events, _ = RunEvent.objects.filter(run_id__in=ids).delete()
            # Conversations outlive runs: messages, follow-ups and events only lose the link.
            _, deleted = AgentRun.objects.filter(pk__in=ids).delete()
        _count(totals, "run_events", events)
        _count(totals, "runs", deleted.get(AgentRun._meta.label, 0))


def delete_expired_follow_ups(*, organization_id: int, cutoff, totals: dict) -> None:
    """Follow-ups that ended (completed, failed, cancelled) before ``cutoff``."""
    expired = (
        FollowUp.objects.filter(organization_id=organization_id, created_at__lt=cutoff)
        .exclude(status__in=FOLLOW_UP_ACTIVE)
        .exclude(Q(completed_at__gte=cutoff) | Q(cancelled_at__gte=cutoff))
    )
    for ids in _batches(expired):
        _, deleted = FollowUp.objects.filter(pk__in=ids).delete()
        _count(totals, "follow_ups", deleted.get(FollowUp._meta.label, 0))


def delete_expired_provider_events(*, organization_id: int, cutoff, totals: dict) -> None:
    """Settled provider events received before ``cutoff`` (a deferred one still waits for its run)."""
    expired = ProviderEvent.objects.filter(organization_id=organization_id, received_at__lt=cutoff).exclude(
        status=ProviderEventStatus.DEFERRED
    )
    for ids in _batches(expired):
        deleted, _ = ProviderEvent.objects.filter(pk__in=ids).delete()
        _count(totals, "provider_events", deleted)


def prune_provider_payloads(*, cutoff, totals: dict) -> None:
    """Empty the payload of settled provider events received before ``cutoff``; the row stays."""
    stale = (
        ProviderEvent.objects.filter(received_at__lt=cutoff)
        .exclude(status=ProviderEventStatus.DEFERRED)
        .exclude(payload={})
    )
    for ids in _batches(stale):
        pruned = ProviderEvent.objects.filter(pk__in=ids).update(payload={})
        _count(totals, "provider_event_payloads", pruned)


def apply_org_retention(*, organization_id: int, days: int, now, totals: dict) -> None:
    """One organization's expired runs, follow-ups and provider events."""
    cutoff = now - timedelta(days=days)
    delete_expired_runs(organization_id=organization_id, cutoff=cutoff, totals=totals)
    delete_expired_follow_ups(organization_id=organization_id, cutoff=cutoff, totals=totals)
    delete_expired_provider_events(organization_id=organization_id, cutoff=cutoff, totals=totals)


def apply_retention(*, now=None) -> dict:
    """One pass over every organization; returns the number of rows deleted or pruned per kind,
    and ``failed_organizations`` when some could not be processed (each is logged and counted
    in ``automation_retention_failures_total``; the organizations after it still run)."""
    now = now or timezone.now()
    totals: dict[str, int] = {}
    prune_provider_payloads(
        cutoff=now - timedelta(days=settings.AUTOMATION_PROVIDER_PAYLOAD_RETENTION_DAYS), totals=totals
    )
    for org_id, slug, days in Organization.objects.order_by("pk").values_list("pk", "slug", "retention_days"):
        try:
            apply_org_retention(organization_id=org_id, days=days, now=now, totals=totals)
        except Exception:  # one organization's failure must not stop the others' retention
            logger.exception("Retention failed for organization %s (retention_days=%s)", slug, days)
            metrics.RETENTION_FAILURES.inc()
            totals["failed_organizations"] = totals.get("failed_organizations", 0) + 1
    if totals:
        logger.info("Retention deleted %s", ", ".join(f"{n} {kind}" for kind, n in sorted(totals.items())))
    return totals
