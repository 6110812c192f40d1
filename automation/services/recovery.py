"""Sweeps that repair what a crash, a lost message or a dead worker left behind.

Each repair is a guarded transition through ``runs`` and is recorded on the run.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from structlog.contextvars import bound_contextvars

from agentpress.ops import logs, metrics
from automation import broker
from automation.models import AgentRun, RunEvent
from automation.services import admission, follow_ups, provider_events
from automation.services.runs import dispatch_run
from automation.services.settlement import fail_runs_over_token_ceiling, interrupt_run
from automation.states import RunStatus

logger = logging.getLogger(__name__)

BATCH = 500
CHUNK = 20  # runs recovered, or taken for sending, per transaction
# A run re-sent n times waits REDISPATCH_AFTER × 2**n before the next copy (n capped here).
MAX_BACKOFF_STEPS = 5


def recover_stale_leases() -> int:
    """Every running run whose lease expired becomes ``interrupted``, naming the worker.

    In short transactions of ``CHUNK`` runs locked ``SKIP LOCKED``: sweeps running at once (a
    worker runs many tasks in parallel) share the expired runs instead of queueing on the
    same rows, and each chunk's runs show as interrupted as soon as it commits.
    """
    recovered = 0
    for _ in range(BATCH // CHUNK):
        with transaction.atomic():
            done, found = _recover_chunk(timezone.now())
        recovered += done
        if found < CHUNK:
            break
    return recovered


def _recover_chunk(now) -> tuple[int, int]:
    stale = list(
        AgentRun.objects.select_for_update(skip_locked=True, no_key=True, of=("self",))
        .filter(status=RunStatus.RUNNING, lease_expires_at__lt=now)
        .order_by("lease_expires_at")
        .values(
            "pk",
            "lease_token",
            "lease_owner",
            "heartbeat_at",
            "lease_expires_at",
            "organization__slug",
            "agent_id",
            "source",
        )[:CHUNK]
    )
    recovered = 0
    for row in stale:
        beat = row["heartbeat_at"]
        error = (
            f"Lease expired at {row['lease_expires_at']:%Y-%m-%d %H:%M:%S} UTC: worker {row['lease_owner']} "
            f"stopped heartbeating (last heartbeat {beat:%Y-%m-%d %H:%M:%S} UTC, "
            f"{(now - beat).total_seconds():.0f}s before recovery). The worker crashed, was killed "
            "or lost its database connection; the run did not finish."
        )
        fields = logs.run_fields(
            run_id=row["pk"],
            org=row["organization__slug"],
            agent=row["agent_id"],
            source=row["source"],
            worker=row["lease_owner"],
        )
        with bound_contextvars(**fields):
            if interrupt_run(
                run_id=row["pk"], error=error, lease_token=row["lease_token"], kind="lease_expired"
            ):
                recovered += 1
                metrics.LEASE_RECOVERIES.inc()
                logger.warning("Recovered run %s from %s", row["pk"], row["lease_owner"])
    return recovered, len(stale)


def interrupt_runs_with_broken_follow_ups() -> int:
    """Interrupt each active run whose follow-up bookkeeping broke (the follow-up is no
    longer ``running``), so that it ends visibly instead of finishing unrecorded."""
    interrupted = 0
    for run_id, error in follow_ups.runs_with_broken_bookkeeping():
        if interrupt_run(run_id=run_id, error=error, kind="follow_up_bookkeeping_broken"):
            logger.warning("Interrupted run %s: %s", run_id, error)
            interrupted += 1
    return interrupted


def redispatch_pending_runs() -> int:
    """Send the due pending runs whose message was never sent or is really lost, as far as
    their organization's and agent's limits and budgets admit them (``admission``, which
    also refreshes why each held run waits).

    A run never sent (the broker was down) is sent now. A run sent but not claimed after
    ``AUTOMATION_REDISPATCH_AFTER_SECONDS`` is re-sent only when the broker's queue holds
    no waiting message: while it does, the run's message is still waiting too (or went to
    a worker that found the run unclaimable), and a copy would join the back of the same
    queue, starting nothing sooner. Each re-send of a run doubles the wait before the next
    one (up to ``2**MAX_BACKOFF_STEPS`` times), so a run that stays unclaimable does not
    fill the queue with copies; every re-send is on the run's timeline with its count.

    Sweeps running at once (a worker runs many tasks in parallel) never send the same run
    twice: each takes its runs in short ``SKIP LOCKED`` transactions that mark them sent,
    and publishes after the commit (a failed publish marks its runs unsent again).
    """
    admitted = admission.review_waiting_runs(
        resend_after=timedelta(seconds=settings.AUTOMATION_REDISPATCH_AFTER_SECONDS), batch=BATCH
    )
    if not admitted:
        return 0
    backlog = broker.waiting_messages()
    sent = 0
    for _ in range(BATCH // CHUNK):
        taken, found = _take_for_sending(timezone.now(), backlog=bool(backlog), admitted=admitted)
        for index, run_id in enumerate(taken):
            if not dispatch_run(run_id=run_id):  # the broker is down: the next sweep tries again
                AgentRun.objects.filter(pk__in=taken[index:], status=RunStatus.PENDING).update(
                    dispatched_at=None
                )
                return sent
            sent += 1
        if found < CHUNK:
            break
    return sent


def _take_for_sending(now, *, backlog: bool, admitted: list) -> tuple[list, int]:
    """Lock up to ``CHUNK`` candidates, mark those due as sent (a re-send counted), commit."""
    after = timedelta(seconds=settings.AUTOMATION_REDISPATCH_AFTER_SECONDS)
    never_sent = Q(dispatched_at__isnull=True)
    lost = never_sent if backlog else never_sent | Q(dispatched_at__lt=now - after)
    with transaction.atomic():
        candidates = list(
            AgentRun.objects.select_for_update(skip_locked=True, no_key=True, of=("self",))
            .filter(pk__in=admitted, status=RunStatus.PENDING)
            .filter(Q(not_before__isnull=True) | Q(not_before__lte=now))
            .filter(lost)
            .order_by(F("dispatched_at").asc(nulls_first=True), "created_at")
            .values_list("pk", "dispatched_at", "redispatch_count")[:CHUNK]
        )
        first, again = [], []
        for run_id, dispatched_at, resends in candidates:
            if dispatched_at is None:
                first.append(run_id)
            elif dispatched_at < now - after * 2 ** min(resends, MAX_BACKOFF_STEPS):
                again.append((run_id, dispatched_at, resends))
        AgentRun.objects.filter(pk__in=first).update(dispatched_at=now)
        if again:
            AgentRun.objects.filter(pk__in=[r[0] for r in again]).update(
                dispatched_at=now, redispatch_count=F("redispatch_count") + 1
            )
            RunEvent.objects.bulk_create(
                RunEvent(
                    run_id=run_id,
                    kind="redispatched",
                    detail={"resend": resends + 1, "last_sent": dispatched_at.isoformat()},
                )
                for run_id, dispatched_at, resends in again
            )
    return first + [r[0] for r in again], len(candidates)


def sweep() -> dict:
    """One pass of every repair; each part is independent of the others."""
    return {
        "interrupted": recover_stale_leases(),
        "follow_ups_repaired": follow_ups.repair_bookkeeping() + interrupt_runs_with_broken_follow_ups(),
        "contexts_drained": provider_events.drain_missed_contexts(),
        "redispatched": redispatch_pending_runs(),
        "over_token_ceiling": fail_runs_over_token_ceiling(),
    }
