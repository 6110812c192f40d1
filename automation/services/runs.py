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
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta

from celery import current_app, signature
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from agentpress.agents.models import Agent, Message, MessageRole, Thread
from automation import queries, scope
from automation.models import AgentRun, RunEvent
from automation.services import admission
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


class AgentDisabled(InvalidTransition):
    """The agent is disabled: nothing new runs for it."""

    def __init__(self, agent: Agent):
        self.agent = agent
        super().__init__(f"Agent {agent.name!r} is disabled; enable it to run it.")


class AlreadyRetried(InvalidTransition):
    """The run has its one retry already (``retry`` names it)."""

    def __init__(self, run_id, retry: AgentRun | None):
        self.retry = retry
        super().__init__(
            f"Run {run_id} was already retried as run {retry.pk}."
            if retry
            else f"Run {run_id} was already retried."
        )


@dataclass(frozen=True)
class Lease:
    run: AgentRun
    token: uuid.UUID
    owner: str
    history: list  # the conversation so far (``queries.thread_history``), read with the claim


def lease_ttl() -> timedelta:
    return timedelta(seconds=settings.AUTOMATION_LEASE_TTL_SECONDS)


def thread_title(*, source: str, context_type: str, context_key: str, **links) -> str:
    """What a new conversation is about: its context, else what started it and when (UTC)."""
    if context_key:
        return f"{context_type or 'context'}: {context_key}"[:300]
    schedule = links.get("schedule")
    origin = f"Schedule {schedule.name!r}" if schedule is not None else f"{RunSource(source).label} run"
    return f"{origin}, {timezone.now():%Y-%m-%d %H:%M} UTC"[:300]


def record_event(run_id, kind: str, **detail) -> RunEvent:
    return RunEvent.objects.create(run_id=run_id, kind=kind, detail=detail)


def _transition(run_id, to: RunStatus, *, expect_token=None, **fields) -> bool:
    """The one guarded update every transition goes through; ``expect_token`` fences a worker."""
    guard = Q(pk=run_id, status__in=RUN_TRANSITIONS[to])
    if expect_token is not None:
        guard &= Q(lease_token=expect_token)
    return AgentRun.objects.filter(guard).update(status=to, **fields) == 1


def find_active_run(*, agent_id, run_as_id, context_type: str, context_key: str) -> AgentRun | None:
    """The active run on a context; a context is one run-as user's work (``automation.scope``)."""
    if not context_key:
        return None
    return (
        AgentRun.objects.filter(
            agent_id=agent_id,
            run_as_id=run_as_id,
            context_type=context_type,
            context_key=context_key,
            status__in=RUN_ACTIVE,
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


@dataclass(frozen=True)
class NewRun:
    """The unsaved rows of one run about to be created: the run, its ``created`` event, its
    prompt message and its thread (unsaved when the run starts a new conversation)."""

    run: AgentRun
    event: RunEvent
    prompt: Message
    thread: Thread
    history: tuple[Message, ...] = ()  # written to the thread before the prompt, with the run

    @property
    def due(self) -> bool:
        return self.run.dispatched_at is not None


def run_build(
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
) -> NewRun:
    """The rows ``run_create`` stores, built without touching the database (so that a batch
    of them can be stored together). Arguments as for ``run_create``; raises what it
    refuses (a disabled agent, a system context the source does not own, another user's
    thread) before anything is built. A new thread runs as ``run_as``."""
    if not agent.enabled:
        raise AgentDisabled(agent)
    if refusal := scope.context_refusal(source=source, context_type=context_type):
        raise ValidationError({"context_type": [refusal]})
    if thread is not None:
        scope.check_thread(thread, run_as)
    now = timezone.now()
    due = not_before is None or not_before <= now
    links.setdefault("waiting_reason", admission.reason_for_not_before(not_before, now=now))
    if thread is None:
        thread = Thread(
            organization_id=agent.organization_id,
            agent=agent,
            title=thread_title(source=source, context_type=context_type, context_key=context_key, **links),
            context_type=context_type,
            context_key=context_key,
            run_as_id=getattr(run_as, "pk", run_as),
        )
    run = AgentRun(
        organization_id=agent.organization_id,
        agent=agent,
        run_as=run_as,
        source=source,
        thread=thread,
        context_type=context_type,
        context_key=context_key,
        not_before=not_before,
        # stamped as sent now, so that sending costs no statement; a failed send clears it
        dispatched_at=now if due else None,
        input_snapshot={
            "prompt": prompt,
            "instructions": agent.instructions,
            "runtime": agent.runtime,
            **(input_extra or {}),
        },
        **links,
    )
    event = RunEvent(
        run=run,
        kind="created",
        detail={
            "source": source,
            "by": getattr(actor, "username", None),
            "not_before": not_before.isoformat() if not_before else None,
        },
    )
    message = Message(
        thread=thread,
        run=run,
        role=MessageRole.SYSTEM,
        content=prompt,
        metadata={"kind": "automation_prompt"},
    )
    return NewRun(run=run, event=event, prompt=message, thread=thread)


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
    ``provider``, ``provider_context``, ``metadata``). Nothing is stored when it raises:
    ``AgentDisabled`` for a disabled agent, ``ValidationError`` for a system context type
    the source does not own, ``scope.ThreadOutOfScope`` when ``thread`` is another user's
    conversation (``run_build`` checks these), ``ContextBusy`` when the partial unique index
    finds another active run of the same run-as user on the context. A new thread, the run, its ``created`` event and its prompt message are one statement
    (``queries.insert_run``).
    """
    new = run_build(
        agent=agent,
        run_as=run_as,
        source=source,
        prompt=prompt,
        thread=thread,
        context_type=context_type,
        context_key=context_key,
        not_before=not_before,
        input_extra=input_extra,
        actor=actor,
        **links,
    )
    try:
        # inside a caller's transaction a refused row must not abort it: a savepoint then
        with transaction.atomic() if connection.in_atomic_block else nullcontext():
            queries.insert_run(new)
    except IntegrityError as exc:
        if not is_context_conflict(exc):
            raise
        active = find_active_run(
            agent_id=agent.pk,
            run_as_id=getattr(run_as, "pk", run_as),
            context_type=context_type,
            context_key=context_key,
        )
        raise ContextBusy(active) from exc
    if new.due:
        transaction.on_commit(lambda: dispatch_run(run_id=new.run.pk, stamp=False))
    return new.run


def runs_create(batch: list[NewRun]) -> list[AgentRun]:
    """Store a batch of built runs in a fixed number of statements (``queries.insert_runs``),
    inside the caller's transaction, and send the due ones together on commit. A run the
    database refuses (a taken slot, a busy context) is left out, with its thread, event and
    message; the caller finds it missing from the answer."""
    if not batch:
        return []
    stored = queries.insert_runs(batch)
    created = [new.run for new in batch if new.run.pk in stored]
    due = [run.pk for run in created if run.dispatched_at is not None]
    if due:
        transaction.on_commit(lambda: dispatch_runs(due))
    return created


EXECUTE_RUN_TASK = "automation.execute_run"


def dispatch_run(*, run_id, stamp: bool = True) -> bool:
    """Send ``execute_run`` to the broker. The sender stamped ``dispatched_at`` already; a
    failure clears it and is recorded, so the redispatch sweep sends the run at its next pass.

    ``dispatched_at`` is written before the message goes out: an update after it would hold
    the row while the message may already be at a worker, whose claim must not find the run
    locked by us (issue 14 item 5). The task is named, not imported: tasks sit above the
    services and call them.
    """
    if stamp:  # a new run was stamped in its insert (``run_build``)
        AgentRun.objects.filter(pk=run_id, status=RunStatus.PENDING).update(dispatched_at=timezone.now())
    try:
        signature(EXECUTE_RUN_TASK, args=[str(run_id)]).apply_async(retry=False)
    except Exception as exc:  # broker down: the run is stored; redispatch_pending_runs re-sends it
        logger.warning("Could not send run %s to the broker: %s", run_id, exc)
        with transaction.atomic():
            AgentRun.objects.filter(pk=run_id, status=RunStatus.PENDING).update(dispatched_at=None)
            record_event(run_id, "dispatch_failed", error=f"{type(exc).__name__}: {exc}")
        return False
    return True


def dispatch_runs(run_ids: list) -> int:
    """Send ``execute_run`` for each run through one broker connection, pipelined where the
    transport can (kombu's ``Producer.batch``: one round trip to Redis per thousand messages);
    returns how many went. When the broker fails, every run of the batch is cleared for the
    redispatch sweep: one that did go out is then sent twice, which its claim makes harmless."""
    try:
        with current_app.producer_or_acquire() as producer, producer.batch():
            for run_id in run_ids:
                signature(EXECUTE_RUN_TASK, args=[str(run_id)]).apply_async(producer=producer, retry=False)
        sent = len(run_ids)
    except Exception as exc:  # broker down: the runs are stored; redispatch_pending_runs re-sends them
        sent, unsent = 0, run_ids
        logger.warning("Could not send %s runs to the broker: %s", len(unsent), exc)
        with transaction.atomic():
            AgentRun.objects.filter(pk__in=unsent, status=RunStatus.PENDING).update(dispatched_at=None)
            RunEvent.objects.bulk_create(
                RunEvent(
                    run_id=run_id, kind="dispatch_failed", detail={"error": f"{type(exc).__name__}: {exc}"}
                )
                for run_id in unsent
            )
    return sent


def wake_worker() -> bool:
    """Send a wake-up without a run of its own: the worker claims the next fair run."""
    try:
        signature(EXECUTE_RUN_TASK, args=[None]).apply_async(retry=False)
    except Exception as exc:  # the sweep sends held work once capacity is free
        logger.warning("Could not send a wake-up to the broker: %s", exc)
        return False
    return True


def send_admitted_runs(*, batch: int = 500, organization_id=None) -> int:
    """Send the due pending runs that were never sent or went unclaimed, as far as limits and
    budgets admit them now; refresh the waiting reasons of the rest. The sweep calls it, and
    so does a change of an organization's or agent's limits (work resumes at once)."""
    resend_after = timedelta(seconds=settings.AUTOMATION_REDISPATCH_AFTER_SECONDS)
    sent = 0
    for run_id in admission.review_waiting_runs(
        resend_after=resend_after, batch=batch, organization_id=organization_id
    ):
        if not dispatch_run(run_id=run_id):
            break  # the broker is down: the next sweep tries again
        sent += 1
    return sent


def claim_run(*, run_id=None, worker: str) -> Lease | None:
    """``pending → running`` with a fresh lease for the run this worker should take next, or
    ``None`` when nothing is claimable. Commits before any agent work starts.

    ``run_id`` is the run whose message woke the worker: it is taken when it is due, within
    its organization's and agent's limits and budgets, and as fair as any other; otherwise
    the next run in fair order is (``admission``). Limits hold under any number of racing
    claimers. A run held by a limit or budget is marked with its waiting reason, the
    message's own run too when the claim passed it over for that reason. With
    ``AUTOMATION_ADMISSION_ENABLED`` off, only ``run_id`` is claimed (the broker's order).
    """
    exclude = admission.Exclusions()
    lease = None
    for _ in range(admission.MAX_CANDIDATES):
        now = timezone.now()
        outcome = _claim_next(run_id, worker, exclude, now)
        if not isinstance(outcome, admission.Hold):
            lease = outcome
            break
        admission.mark_held(outcome, now=now)
        exclude.add(outcome)
    if run_id is not None and (lease is None or lease.run.pk != admission.as_run_id(run_id)):
        admission.explain_waiting(run_id)  # the message's run was passed over: say why, if held
    return lease


def _claim_next(run_id, worker: str, exclude, now) -> "Lease | admission.Hold | None":
    token = uuid.uuid4()
    with transaction.atomic():
        candidate = admission.lock_candidate(preferred=run_id, now=now, exclude=exclude)
        if candidate is None:
            return None
        hold = admission.admit(candidate, now=now)
        if hold is not None:
            return hold
        attempt = candidate.attempt + 1
        claimed = queries.start_run(
            run_id=candidate.id,
            allowed=RUN_TRANSITIONS[RunStatus.RUNNING],
            fields={
                "status": RunStatus.RUNNING,
                "started_at": now,
                "heartbeat_at": now,
                "lease_owner": worker,
                "lease_token": token,
                "lease_expires_at": now + lease_ttl(),
                "attempt": attempt,
                "waiting_reason": "",
            },
            event=RunEvent(
                run_id=candidate.id, kind="claimed", detail={"worker": worker, "attempt": attempt}
            ),
        )
        if claimed is None:
            return None
    run, history = claimed
    return Lease(run=run, token=token, owner=worker, history=history)


def mark_completed(
    *, run: AgentRun, lease_token, messages, tool_calls, worker: str, usage=None, ask_claimable: bool = False
) -> AgentRun | None:
    """``running → completed`` and the agent's messages, only while the lease is ours
    (``queries.finish_run``), with ``usage`` (``usage.Usage``: model-call rows not stored
    yet and the run's totals with them). ``run`` is the row the worker claimed; it is
    returned ended, or ``None`` when the result came too late (recorded as such; nothing of
    ``usage`` is written then). With ``ask_claimable`` the same statement reads whether any
    run is claimable (``admission.claimable_work_waits`` answers from it once)."""
    return _finish(
        run,
        lease_token,
        worker,
        {"status": RunStatus.COMPLETED, "completed_at": timezone.now()},
        {"worker": worker, "messages": len(messages), "tool_calls": len(tool_calls)},
        [
            Message(thread_id=run.thread_id, run=run, role=m.role, content=m.content, metadata=m.metadata)
            for m in messages
        ],
        usage,
        ask_claimable=ask_claimable,
    )


def mark_failed(*, run: AgentRun, lease_token, error: str, worker: str, usage=None) -> AgentRun | None:
    """``running → failed`` with ``last_error``, only while the lease is ours, with ``usage``
    as for ``mark_completed``. ``run`` is the row the worker claimed; it is returned ended,
    or ``None`` when the result came too late."""
    return _finish(
        run,
        lease_token,
        worker,
        {"status": RunStatus.FAILED, "completed_at": timezone.now(), "last_error": error},
        {"worker": worker, "error": error.splitlines()[0][:300] if error else ""},
        [],
        usage,
    )


def _finish(
    run: AgentRun, lease_token, worker: str, fields: dict, detail: dict, messages, usage, ask_claimable=False
) -> AgentRun | None:
    event = RunEvent(run=run, kind=fields["status"], detail=detail)
    allowed = RUN_TRANSITIONS[fields["status"]]
    if usage is not None:
        fields = fields | usage.totals
        messages = [*messages, *usage.rows]
    statement = dict(
        run=run, lease_token=lease_token, allowed=allowed, fields=fields, event=event, messages=messages
    )
    if ask_claimable:
        ended, claimable = queries.finish_run_and_ask(**statement, **admission.claimable_question())
        admission.remember_claimable(claimable)
    else:
        ended = queries.finish_run(**statement)
    if not ended:
        _discard_late_result(run.pk, worker, fields["status"])
        return None
    for name, value in fields.items():
        setattr(run, name, value)
    return run


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
            run_id,
            RunStatus.CANCELLED,
            cancelled_at=timezone.now(),
            completed_at=timezone.now(),
            waiting_reason="",
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
            waiting_reason="",
        )
        if not done:
            return None
        record_event(run_id, kind, error=error)
        return AgentRun.objects.get(pk=run_id)


def retry_run(*, run_id, actor=None) -> AgentRun:
    """A new pending run with the same prompt, thread and context, linked by ``retry_of``.

    A run has at most one retry (the unique ``agent_runs_one_retry_per_run`` settles a
    race): a second request raises ``AlreadyRetried`` naming the first. ``InvalidTransition``
    (``AgentDisabled`` among them) when the run is not retryable, its agent is disabled, or
    work may no longer run as its run-as user (``scope.run_as_refusal``).
    """
    original = AgentRun.objects.select_related("agent", "organization", "run_as").get(pk=run_id)
    if original.status not in RUN_RETRYABLE:
        raise InvalidTransition(
            f"Only failed, interrupted or cancelled runs can be retried; this run is {original.status}."
        )
    if existing := original.retries.order_by("created_at").first():
        raise AlreadyRetried(original.pk, existing)
    if not original.agent.enabled:
        raise AgentDisabled(original.agent)
    if refusal := scope.run_as_refusal(organization=original.organization, user=original.run_as):
        raise InvalidTransition(refusal)
    try:
        return _create_retry(original, actor)
    except IntegrityError as exc:
        if "agent_runs_one_retry_per_run" not in str(exc) and "retry_of_id" not in str(exc):
            raise
        raise AlreadyRetried(original.pk, original.retries.order_by("created_at").first()) from exc


def _create_retry(original: AgentRun, actor) -> AgentRun:
    # a thread that is not the run-as user's (made before threads had one) is not continued
    thread = original.thread
    if thread is not None and thread.run_as_id != original.run_as_id:
        thread = None
    with transaction.atomic():
        retry = run_create(
            agent=original.agent,
            run_as=original.run_as,
            source=original.source,
            prompt=original.prompt,
            thread=thread,
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
