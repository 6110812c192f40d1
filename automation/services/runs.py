"""Every status change of an ``AgentRun`` (DESIGN §4): the bottom of the services.

Each transition is one guarded ``UPDATE … WHERE status IN (…)`` (plus the lease token
where a worker acts), followed by a ``RunEvent`` in the same transaction. Zero rows
updated means another actor won; the caller gets ``None``/``False`` or
``InvalidTransition``, never an overwrite.

This module knows nothing of what hangs on a run (follow-ups, provider events, schedule
slots): the ``mark_*`` transitions that end a run return the ended row, and
``automation.services.settlement`` settles the rest in the same transaction. Callers end
runs through that module.
"""

import logging
import traceback
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from celery import signature
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from agentpress.agents.models import Agent, Message, MessageRole, Thread
from automation.models import AgentRun, RunEvent
from automation.services.audit import audit_record
from automation.states import (
    RUN_ACTIVE,
    RUN_RETRYABLE,
    RUN_TRANSITIONS,
    InvalidTransition,
    RunSource,
    RunStatus,
)

logger = logging.getLogger(__name__)


class ContextBusy(Exception):
    """Another run is already pending or running on the same (agent, context)."""

    def __init__(self, active_run: AgentRun | None):
        self.active_run = active_run
        super().__init__(
            f"Run {active_run.pk} is already active on this context."
            if active_run
            else "The context is busy."
        )


@dataclass(frozen=True)
class Lease:
    run: AgentRun
    token: uuid.UUID
    owner: str


def lease_ttl() -> timedelta:
    return timedelta(seconds=settings.AUTOMATION_LEASE_TTL_SECONDS)


def record_event(run_id, kind: str, **detail) -> RunEvent:
    return RunEvent.objects.create(run_id=run_id, kind=kind, detail=detail)


def _transition(run_id, to: RunStatus, *, expect_token=None, **fields) -> bool:
    """The one guarded update every transition goes through; ``expect_token`` fences a worker."""
    guard = Q(pk=run_id, status__in=RUN_TRANSITIONS[to])
    if expect_token is not None:
        guard &= Q(lease_token=expect_token)
    return AgentRun.objects.filter(guard).update(status=to, **fields) == 1


def find_active_run(*, agent_id, context_type: str, context_key: str) -> AgentRun | None:
    if not context_key:
        return None
    return (
        AgentRun.objects.filter(
            agent_id=agent_id, context_type=context_type, context_key=context_key, status__in=RUN_ACTIVE
        )
        .order_by("created_at")
        .first()
    )


def is_context_conflict(exc: IntegrityError) -> bool:
    """The partial unique index on active runs per context refused the row."""
    text = str(exc)
    return "agent_runs_one_active_per_context" in text or (
        "UNIQUE constraint failed" in text and "agent_runs.context_key" in text
    )


def run_create(
    *,
    agent: Agent,
    run_as,
    source: RunSource,
    prompt: str,
    thread: Thread | None = None,
    context_type: str = "",
    context_key: str = "",
    not_before: datetime | None = None,
    input_extra: dict | None = None,
    actor=None,
    **links,
) -> AgentRun:
    """Store a pending run and send it to a worker once the transaction commits.

    ``links`` are the optional linkage and provider fields of ``AgentRun`` (``schedule``,
    ``scheduled_for``, ``action``, ``follow_up``, ``previous_run``, ``retry_of``,
    ``provider``, ``provider_context``, ``metadata``). Raises ``ContextBusy`` when the
    partial unique index finds another active run on the context; nothing is stored then.
    """
    snapshot = {
        "prompt": prompt,
        "instructions": agent.instructions,
        "runtime": agent.runtime,
        **(input_extra or {}),
    }
    with transaction.atomic():
        if thread is None:
            thread = Thread.objects.create(
                organization_id=agent.organization_id,
                agent=agent,
                title=f"{RunSource(source).label} run",
                context_type=context_type,
                context_key=context_key,
            )
        try:
            with transaction.atomic():
                run = AgentRun.objects.create(
                    organization_id=agent.organization_id,
                    agent=agent,
                    run_as=run_as,
                    source=source,
                    thread=thread,
                    context_type=context_type,
                    context_key=context_key,
                    not_before=not_before,
                    input_snapshot=snapshot,
                    **links,
                )
        except IntegrityError as exc:
            if not is_context_conflict(exc):
                raise
            active = find_active_run(agent_id=agent.pk, context_type=context_type, context_key=context_key)
            raise ContextBusy(active) from exc
        record_event(
            run.pk,
            "created",
            source=source,
            by=getattr(actor, "username", None),
            not_before=not_before.isoformat() if not_before else None,
        )
        Message.objects.create(
            thread=thread,
            run=run,
            role=MessageRole.SYSTEM,
            content=prompt,
            metadata={"kind": "automation_prompt"},
        )
        if not_before is None or not_before <= timezone.now():
            transaction.on_commit(lambda: dispatch_run(run_id=run.pk))
    return run


EXECUTE_RUN_TASK = "automation.execute_run"


def dispatch_run(*, run_id) -> bool:
    """Send ``execute_run`` to the broker. A failure leaves the run pending for the sweep.

    The task is named, not imported: tasks sit above the services and call them."""
    try:
        signature(EXECUTE_RUN_TASK, args=[str(run_id)]).apply_async(retry=False)
    except Exception as exc:  # broker down: the run is stored; redispatch_pending_runs re-sends it
        logger.warning("Could not send run %s to the broker: %s", run_id, exc)
        record_event(run_id, "dispatch_failed", error=f"{type(exc).__name__}: {exc}")
        return False
    AgentRun.objects.filter(pk=run_id, status=RunStatus.PENDING).update(dispatched_at=timezone.now())
    return True


def claim_run(*, run_id, worker: str) -> Lease | None:
    """``pending → running`` with a fresh lease, or ``None`` when the run is not claimable
    (already claimed, cancelled, not yet due). Commits before any agent work starts."""
    now = timezone.now()
    token = uuid.uuid4()
    with transaction.atomic():
        due = Q(not_before__isnull=True) | Q(not_before__lte=now)
        locked = (
            AgentRun.objects.select_for_update(skip_locked=True, no_key=True, of=("self",))
            .filter(due, pk=run_id, status=RunStatus.PENDING)
            .values_list("attempt", flat=True)
            .first()
        )
        if locked is None:
            return None
        claimed = _transition(
            run_id,
            RunStatus.RUNNING,
            started_at=now,
            heartbeat_at=now,
            lease_owner=worker,
            lease_token=token,
            lease_expires_at=now + lease_ttl(),
            attempt=locked + 1,
        )
        if not claimed:
            return None
        record_event(run_id, "claimed", worker=worker, attempt=locked + 1)
    return Lease(
        run=AgentRun.objects.select_related("agent", "thread", "organization").get(pk=run_id),
        token=token,
        owner=worker,
    )


def mark_completed(*, run_id, lease_token, messages, tool_calls, worker: str) -> AgentRun | None:
    """``running → completed`` and the agent's messages, only while the lease is ours.
    Returns the ended run, or ``None`` when the result came too late (recorded as such)."""
    with transaction.atomic():
        done = _transition(run_id, RunStatus.COMPLETED, expect_token=lease_token, completed_at=timezone.now())
        if not done:
            _discard_late_result(run_id, worker, "completed")
            return None
        run = AgentRun.objects.get(pk=run_id)
        Message.objects.bulk_create(
            Message(thread_id=run.thread_id, run=run, role=m.role, content=m.content, metadata=m.metadata)
            for m in messages
        )
        record_event(run_id, "completed", worker=worker, messages=len(messages), tool_calls=len(tool_calls))
    return run


def mark_failed(*, run_id, lease_token, error: str, worker: str) -> AgentRun | None:
    """``running → failed`` with ``last_error``, only while the lease is ours.
    Returns the ended run, or ``None`` when the result came too late (recorded as such)."""
    with transaction.atomic():
        done = _transition(
            run_id, RunStatus.FAILED, expect_token=lease_token, completed_at=timezone.now(), last_error=error
        )
        if not done:
            _discard_late_result(run_id, worker, "failed")
            return None
        record_event(run_id, "failed", worker=worker, error=error.splitlines()[0][:300] if error else "")
        return AgentRun.objects.get(pk=run_id)


def _discard_late_result(run_id, worker: str, outcome: str) -> None:
    current = AgentRun.objects.filter(pk=run_id).values_list("status", flat=True).first()
    record_event(run_id, "late_result_discarded", worker=worker, outcome=outcome, status_now=current)
    logger.warning(
        "Discarded a late %s result of run %s from %s (run is %s)", outcome, run_id, worker, current
    )


def mark_cancelled(*, run_id, actor=None, reason: str = "") -> AgentRun:
    """``pending|running → cancelled``, or ``InvalidTransition``. A running agent notices at
    its next heartbeat and stops."""
    with transaction.atomic():
        done = _transition(
            run_id, RunStatus.CANCELLED, cancelled_at=timezone.now(), completed_at=timezone.now()
        )
        if not done:
            status = AgentRun.objects.filter(pk=run_id).values_list("status", flat=True).first()
            raise InvalidTransition(f"Only pending or running runs can be cancelled; this run is {status}.")
        record_event(run_id, "cancelled", by=getattr(actor, "username", None), reason=reason)
        run = AgentRun.objects.select_related("organization").get(pk=run_id)
        audit_record(actor=actor, organization=run.organization, verb="cancelled", target=run, reason=reason)
    return run


def mark_interrupted(*, run_id, error: str, lease_token=None, kind: str = "interrupted") -> AgentRun | None:
    """``running|pending → interrupted`` with ``last_error``; ``None`` when the run already
    ended or (with ``lease_token``) changed hands."""
    with transaction.atomic():
        done = _transition(
            run_id,
            RunStatus.INTERRUPTED,
            expect_token=lease_token,
            completed_at=timezone.now(),
            last_error=error,
        )
        if not done:
            return None
        record_event(run_id, kind, error=error)
        return AgentRun.objects.get(pk=run_id)


def retry_run(*, run_id, actor=None) -> AgentRun:
    """A new pending run with the same prompt, thread and context, linked by ``retry_of``."""
    original = AgentRun.objects.select_related("agent").get(pk=run_id)
    if original.status not in RUN_RETRYABLE:
        raise InvalidTransition(
            f"Only failed, interrupted or cancelled runs can be retried; this run is {original.status}."
        )
    with transaction.atomic():
        retry = run_create(
            agent=original.agent,
            run_as=original.run_as,
            source=original.source,
            prompt=original.prompt,
            thread=original.thread,
            context_type=original.context_type,
            context_key=original.context_key,
            input_extra={k: v for k, v in original.input_snapshot.items() if k != "prompt"},
            actor=actor,
            retry_of=original,
            schedule=original.schedule,
            action=original.action,
            provider=original.provider,
            provider_context=original.provider_context,
        )
        record_event(original.pk, "retried", by=getattr(actor, "username", None), retry_run_id=str(retry.pk))
        audit_record(
            actor=actor,
            organization=original.organization,
            verb="retried",
            target=original,
            retry_run_id=str(retry.pk),
        )
    return retry


def format_error(exc: BaseException) -> str:
    """The message first, then the tail of the traceback."""
    tail = "".join(traceback.format_exception(exc)[-6:])
    return f"{type(exc).__name__}: {exc}\n\n{tail}"[:8000]
