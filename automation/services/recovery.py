"""Sweeps that repair what a crash, a lost message or a dead worker left behind.

Each repair is a guarded transition through ``runs`` and is recorded on the run.
"""

import logging

from django.utils import timezone
from structlog.contextvars import bound_contextvars

from agentpress.ops import logs, metrics
from automation.models import AgentRun
from automation.services import follow_ups, provider_events
from automation.services.runs import send_admitted_runs
from automation.services.settlement import fail_runs_over_token_ceiling, interrupt_run
from automation.states import RunStatus

logger = logging.getLogger(__name__)

BATCH = 500


def recover_stale_leases() -> int:
    """Every running run whose lease expired becomes ``interrupted``, naming the worker."""
    now = timezone.now()
    stale = AgentRun.objects.filter(status=RunStatus.RUNNING, lease_expires_at__lt=now).values(
        "pk",
        "lease_token",
        "lease_owner",
        "heartbeat_at",
        "lease_expires_at",
        "organization__slug",
        "agent_id",
        "source",
    )[:BATCH]
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
    return recovered


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
    """Send due pending runs that were never sent, or whose message seems lost, as far as
    their organization's and agent's limits and budgets admit them (``admission``)."""
    return send_admitted_runs(batch=BATCH)


def sweep() -> dict:
    """One pass of every repair; each part is independent of the others."""
    return {
        "interrupted": recover_stale_leases(),
        "follow_ups_repaired": follow_ups.repair_bookkeeping() + interrupt_runs_with_broken_follow_ups(),
        "contexts_drained": provider_events.drain_missed_contexts(),
        "redispatched": redispatch_pending_runs(),
        "over_token_ceiling": fail_runs_over_token_ceiling(),
    }
