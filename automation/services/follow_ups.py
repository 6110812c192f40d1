"""Self-scheduled follow-ups (DESIGN §6): the agent's tool, firing, settling and repair.

Every status change is a guarded ``UPDATE … WHERE status IN (…)`` from
``states.FOLLOW_UP_TRANSITIONS``. What happens to a follow-up is recorded on the
timeline of the run that scheduled it (``previous_run``) and, once it fires, of its run.
"""

import json
import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from agentpress.agents.models import Message, MessageRole
from automation import follow_up_requests, scope, stop_conditions, strict_json
from automation.follow_up_requests import Refused
from automation.models import AgentRun, FollowUp, FollowUpRefusal
from automation.services.audit import audit_record
from automation.services.runs import ContextBusy, format_error, record_event, run_create
from automation.states import (
    FOLLOW_UP_OUTCOME,
    FOLLOW_UP_TRANSITIONS,
    RUN_ACTIVE,
    RUN_TERMINAL,
    FollowUpStatus,
    InvalidTransition,
    RunSource,
    RunStatus,
)

logger = logging.getLogger(__name__)

BATCH = 1000


def _record_on_previous(follow_up: FollowUp, kind: str, **detail) -> None:
    if follow_up.previous_run_id:
        record_event(follow_up.previous_run_id, kind, follow_up_id=follow_up.pk, **detail)


# --- the agent's tool ------------------------------------------------------------------------


def schedule_follow_up(*, run_id, lease_token, arguments) -> dict:
    """Store a pending follow-up of a running run, or refuse with a reason and store nothing.

    Only while the run still holds the lease ``lease_token`` (a worker that lost its run
    cannot queue work for it). The follow-up inherits the run's thread, context and
    run-as user. The answer is the tool result the agent sees.
    """
    try:
        with transaction.atomic():
            # the run's row lock serializes this run's calls for the per-context count
            run = (
                AgentRun.objects.select_for_update(no_key=True, of=("self",))
                .select_related("organization", "agent")
                .filter(pk=run_id, status=RunStatus.RUNNING, lease_token=lease_token)
                .first()
            )
            if run is None:
                raise _refused(
                    "lease_lost",
                    "This run no longer holds its lease (cancelled or recovered); nothing was scheduled.",
                )
            refusal = follow_up_requests.capability_refusal(run.organization, run.agent)
            if refusal:
                raise _refused("capability_off", refusal)
            runaway = _runaway(run)
            if runaway:
                raise _refused("runaway_guard", runaway)
            follow_up = _create(run, arguments)
            scheduled_for = follow_up.scheduled_for.isoformat()
            record_event(
                run.pk, "follow_up_scheduled", follow_up_id=follow_up.pk, scheduled_for=scheduled_for
            )
    except Refused as exc:
        follow_up_refusal_record(
            run_id=run_id, code=getattr(exc, "code", "invalid_request"), reason=str(exc), arguments=arguments
        )
        return {"ok": False, "error": str(exc)}
    return {"ok": True, "follow_up_id": follow_up.pk, "scheduled_for": scheduled_for}


def _runaway(run: AgentRun) -> str:
    """Why this run may not schedule more: its follow-up chain or its own count is at the limit."""
    per_run = settings.AUTOMATION_MAX_FOLLOW_UPS_PER_RUN
    scheduled = FollowUp.objects.filter(previous_run=run).count()
    if scheduled >= per_run:
        return (
            f"This run already scheduled {scheduled} follow-ups (AUTOMATION_MAX_FOLLOW_UPS_PER_RUN is {per_run}); "
            "finish the work in fewer steps."
        )
    limit = settings.AUTOMATION_MAX_FOLLOW_UP_CHAIN
    depth = follow_up_chain_length(run, stop_after=limit)
    if depth >= limit:
        return (
            f"This run is follow-up {depth} of a chain of follow-ups (AUTOMATION_MAX_FOLLOW_UP_CHAIN is {limit}); "
            "a new follow-up would make the chain too long. Finish the task or hand it to a person."
        )
    return ""


def follow_up_chain_length(run: AgentRun, *, stop_after: int) -> int:
    """How many follow-ups led to ``run`` (0 when a person, schedule or event started it)."""
    depth, current = 0, run
    while current.follow_up_id and depth < stop_after:
        depth += 1
        previous_id = FollowUp.objects.filter(pk=current.follow_up_id).values_list(
            "previous_run_id", flat=True
        )
        current = AgentRun.objects.filter(pk__in=previous_id).only("pk", "follow_up_id").first()
        if current is None:
            break
    return depth


def _refused(code: str, reason: str) -> Refused:
    refused = Refused(reason)
    refused.code = code
    return refused


# A refused request is kept for reading, not replaying: a huge one is kept as its start.
MAX_REFUSED_ARGUMENTS_CHARS = 10_000


def _bounded(arguments) -> dict:
    """``arguments`` as JSON the database accepts: numbers JSON cannot hold (NaN, ±Infinity,
    which a model's arguments may parse to) are kept as their names."""
    text = json.dumps(arguments, default=str)
    if len(text) > MAX_REFUSED_ARGUMENTS_CHARS:
        return {"truncated": text[:MAX_REFUSED_ARGUMENTS_CHARS]}
    try:
        strict_json.loads(text)
    except ValueError:  # NaN, 1e999, a NUL or a lone surrogate: jsonb refuses them, their text it keeps
        return {"unstorable": text}
    return arguments if isinstance(arguments, dict) else {"arguments": arguments}


def follow_up_refusal_record(*, run_id, code: str, reason: str, arguments) -> FollowUpRefusal | None:
    """Keep a refused request: a ``FollowUpRefusal`` (the Follow-ups tab's "Refused", the API)
    and the same ``follow_up_refused`` entry on the run's timeline, whatever the reason."""
    run = AgentRun.objects.filter(pk=run_id).first()
    if run is None:
        return None
    refusal = FollowUpRefusal.objects.create(
        organization_id=run.organization_id,
        agent_id=run.agent_id,
        run=run,
        run_as_id=run.run_as_id,
        thread_id=run.thread_id,
        context_type=run.context_type,
        context_key=run.context_key,
        code=code,
        reason=reason,
        arguments=_bounded(arguments),
    )
    record_event(run.pk, "follow_up_refused", refusal_id=refusal.pk, code=code, reason=reason)
    return refusal


def _create(run: AgentRun, arguments) -> FollowUp:
    request = follow_up_requests.parse_request(arguments, now=timezone.now())
    follow_up = FollowUp(
        organization_id=run.organization_id,
        agent_id=run.agent_id,
        run_as_id=run.run_as_id,
        previous_run=run,
        thread_id=run.thread_id,
        context_type=run.context_type,
        context_key=run.context_key,
        continuation_prompt=request.continuation_prompt,
        stop_conditions=request.stop_conditions,
        scheduled_for=request.scheduled_for,
    )
    limit = settings.AUTOMATION_FOLLOW_UP_MAX_PENDING_PER_CONTEXT
    pending = _context_follow_ups(follow_up).filter(status=FollowUpStatus.PENDING).count()
    if pending >= limit:
        raise _refused(
            "context_limit",
            f"This context already has {pending} pending follow-ups (the limit is {limit}); "
            "cancel one or wait until one has run.",
        )
    follow_up.save()
    return follow_up


def _context_follow_ups(follow_up: FollowUp):
    if follow_up.context_key:
        return FollowUp.objects.filter(
            organization_id=follow_up.organization_id,
            agent_id=follow_up.agent_id,
            run_as_id=follow_up.run_as_id,
            context_type=follow_up.context_type,
            context_key=follow_up.context_key,
        )
    return FollowUp.objects.filter(thread_id=follow_up.thread_id)


# --- cancelling --------------------------------------------------------------------------------


def _cancel(follow_up: FollowUp, *, reason: str, by=None) -> bool:
    now = timezone.now()
    done = (
        FollowUp.objects.filter(pk=follow_up.pk, status=FollowUpStatus.PENDING).update(
            status=FollowUpStatus.CANCELLED, cancelled_at=now, completed_at=now, cancel_reason=reason
        )
        == 1
    )
    if done:
        _record_on_previous(follow_up, "follow_up_cancelled", by=by, reason=reason)
    return done


def cancel_follow_up(*, follow_up_id, actor=None, reason: str = "") -> FollowUp:
    """``pending → cancelled`` with ``reason`` as its ``cancel_reason`` (default: who did it).
    A follow-up that already became a run is not cancelled here (cancel its run instead):
    ``InvalidTransition`` then."""
    with transaction.atomic():
        follow_up = FollowUp.objects.get(pk=follow_up_id)
        by = getattr(actor, "username", None)
        if not _cancel(follow_up, reason=reason or f"Cancelled by {by or 'an operator'}.", by=by):
            status = FollowUp.objects.values_list("status", flat=True).get(pk=follow_up_id)
            raise InvalidTransition(
                f"Only pending follow-ups can be cancelled; this follow-up is {status}"
                + (" (cancel its run instead)." if status == FollowUpStatus.RUNNING else ".")
            )
        audit_record(
            actor=actor,
            organization=follow_up.organization,
            verb="cancelled",
            target=follow_up,
            reason=reason or None,
        )
    follow_up.refresh_from_db()
    return follow_up


# --- firing ------------------------------------------------------------------------------------


def fire_due_follow_ups(*, limit: int = BATCH) -> int:
    """Start a run for each due pending follow-up; returns how many runs were started.

    One follow-up per short transaction, claimed with ``SKIP LOCKED`` so that concurrent
    callers share the work and each follow-up becomes at most one run (also guaranteed by
    the unique ``AgentRun.follow_up``). Gating and stop conditions are checked under the
    lock; a follow-up whose context is busy waits and is retried shortly.
    """
    started = 0
    for _ in range(limit):
        outcome = _fire_next(now=timezone.now())
        if outcome is None:
            break
        started += outcome == "started"
    return started


def _fire_next(*, now: datetime) -> str | None:
    with transaction.atomic():
        follow_up = (
            FollowUp.objects.select_for_update(skip_locked=True, no_key=True, of=("self",))
            .select_related("organization", "agent", "run_as", "thread", "previous_run")
            .filter(status=FollowUpStatus.PENDING, scheduled_for__lte=now)
            .order_by("scheduled_for", "id")
            .first()
        )
        if follow_up is None:
            return None
        try:
            with transaction.atomic():
                return _fire(follow_up, now=now)
        except Exception as exc:
            # a poison row must not block the queue: keep it pending, visible and retried later
            logger.exception("Could not fire follow-up %s", follow_up.pk)
            FollowUp.objects.filter(pk=follow_up.pk, status=FollowUpStatus.PENDING).update(
                last_error=format_error(exc), scheduled_for=now + _wait_retry()
            )
            return "error"


def _wait_retry() -> timedelta:
    return timedelta(seconds=settings.AUTOMATION_FOLLOW_UP_WAIT_RETRY_SECONDS)


def _fire(follow_up: FollowUp, *, now: datetime) -> str:
    refusal = follow_up_requests.capability_refusal(
        follow_up.organization, follow_up.agent
    ) or scope.run_as_refusal(organization=follow_up.organization, user=follow_up.run_as)
    if refusal:
        _cancel(follow_up, reason=f"Not run: {refusal}")
        return "cancelled"
    met = stop_conditions.first_met(follow_up, now=now)
    if met is not None:
        _cancel(follow_up, reason=met.reason)
        return "cancelled"
    active = (
        stop_conditions.context_runs(follow_up).filter(status__in=RUN_ACTIVE).order_by("created_at").first()
    )
    if active is not None:
        _wait(follow_up, active, now=now)
        return "waiting"
    try:
        with transaction.atomic():
            run = run_create(
                agent=follow_up.agent,
                run_as=follow_up.run_as,
                source=RunSource.FOLLOW_UP,
                prompt=continuation_prompt(follow_up),
                thread=follow_up.thread,
                context_type=follow_up.context_type,
                context_key=follow_up.context_key,
                input_extra={
                    "follow_up_id": follow_up.pk,
                    "continuation_prompt": follow_up.continuation_prompt,
                    "stop_conditions": follow_up.stop_conditions,
                },
                follow_up=follow_up,
                previous_run=follow_up.previous_run,
            )
            claimed = FollowUp.objects.filter(
                pk=follow_up.pk, status__in=FOLLOW_UP_TRANSITIONS[FollowUpStatus.RUNNING]
            ).update(status=FollowUpStatus.RUNNING, claimed_at=now, run=run, last_error="")
            if not claimed:
                raise InvalidTransition(f"Follow-up {follow_up.pk} stopped being pending while locked.")
    except ContextBusy as busy:  # a run on the context appeared after the check above
        _wait(follow_up, busy.active_run, now=now)
        return "waiting"
    record_event(run.pk, "follow_up_fired", follow_up_id=follow_up.pk)
    _record_on_previous(follow_up, "follow_up_fired", fired_run_id=str(run.pk))
    return "started"


def _wait(follow_up: FollowUp, active: AgentRun | None, *, now: datetime) -> None:
    """Stay pending and try again shortly; the wait is recorded once per blocking run."""
    FollowUp.objects.filter(pk=follow_up.pk, status=FollowUpStatus.PENDING).update(
        scheduled_for=now + _wait_retry()
    )
    active_id = str(active.pk) if active else None
    if (
        follow_up.previous_run_id
        and not follow_up.previous_run.events.filter(
            kind="follow_up_waiting", detail__follow_up_id=follow_up.pk, detail__active_run_id=active_id
        ).exists()
    ):
        _record_on_previous(follow_up, "follow_up_waiting", active_run_id=active_id, due_at=now.isoformat())
    logger.info("Follow-up %s waits for run %s on its context", follow_up.pk, active_id)


def continuation_prompt(follow_up: FollowUp) -> str:
    """The prompt of the follow-up's run: the agent's own continuation prompt, then what it
    needs to pick the conversation up (the previous run's outcome, the stop conditions)."""
    lines = [follow_up.continuation_prompt, "", f"(This is follow-up {follow_up.pk} that you scheduled.)"]
    previous = follow_up.previous_run
    if previous is not None:
        lines.append(f"Previous run {previous.pk} ended {previous.status}.")
        reply = (
            Message.objects.filter(run=previous, role=MessageRole.ASSISTANT)
            .order_by("-created_at", "-id")
            .first()
        )
        if reply is not None:
            lines.append(f"Its last reply: {_one_line(reply.content)}")
        if previous.last_error:
            lines.append(f"Its error: {_one_line(previous.last_error.splitlines()[0])}")
    if follow_up.stop_conditions:
        lines.append("Stop conditions you set (checked just now, none was met):")
        lines += stop_conditions.describe(follow_up.stop_conditions)
    return "\n".join(lines)


def _one_line(text: str, limit: int = 500) -> str:
    """Quoted text on one line, so it can never read as a runtime directive."""
    flat = " ".join(text.split())
    return f'"{flat[:limit]}{"…" if len(flat) > limit else ""}"'


# --- bookkeeping -------------------------------------------------------------------------------


def settle_follow_up(*, run) -> bool:
    """End the follow-up ``run`` fulfils as the run ended (``FOLLOW_UP_OUTCOME``), in the
    caller's transaction. ``False`` when there is none or it is no longer running."""
    if not run.follow_up_id:
        return False
    return _settle(run.follow_up_id, run)


def _settle(follow_up_id, run: AgentRun) -> bool:
    outcome = FOLLOW_UP_OUTCOME[run.status]
    now = timezone.now()
    fields = {"status": outcome, "completed_at": now}
    if outcome == FollowUpStatus.FAILED:
        fields["last_error"] = run.last_error or f"Its run {run.pk} ended {run.status}."
    if outcome == FollowUpStatus.CANCELLED:
        fields.update(cancelled_at=now, cancel_reason=f"Its run {run.pk} was cancelled.")
    # of the table's from-states only ``running`` applies: a pending follow-up never became a run
    allowed = [s for s in FOLLOW_UP_TRANSITIONS[outcome] if s != FollowUpStatus.PENDING]
    settled = FollowUp.objects.filter(pk=follow_up_id, status__in=allowed).update(**fields)
    if settled:
        record_event(run.pk, "follow_up_settled", follow_up_id=follow_up_id, status=outcome)
    return settled == 1


def repair_bookkeeping() -> int:
    """Repair the follow-ups a crash between a run's end and its follow-up's settling left behind.

    A follow-up ``running`` whose run ended is settled as the run ended (or failed if its
    run is gone). Each repair is recorded. The other half, a run whose follow-up is not
    ``running``, is ended by the recovery sweep (ending a run settles more than follow-ups).
    """
    repaired = 0
    ended = FollowUp.objects.filter(
        status=FollowUpStatus.RUNNING, fulfilling_run__status__in=RUN_TERMINAL
    ).values_list("pk", "fulfilling_run")[:BATCH]
    for follow_up_id, run_id in ended:
        with transaction.atomic():
            run = AgentRun.objects.get(pk=run_id)
            if _settle(follow_up_id, run):
                record_event(run.pk, "follow_up_repaired", follow_up_id=follow_up_id, status=run.status)
                logger.warning("Settled follow-up %s left running after run %s ended", follow_up_id, run_id)
                repaired += 1
    now = timezone.now()
    orphaned = FollowUp.objects.filter(status=FollowUpStatus.RUNNING, fulfilling_run__isnull=True)
    for follow_up in orphaned[:BATCH]:
        error = "Its run no longer exists; the follow-up cannot finish."
        if FollowUp.objects.filter(
            pk=follow_up.pk, status=FollowUpStatus.RUNNING, fulfilling_run__isnull=True
        ).update(status=FollowUpStatus.FAILED, completed_at=now, last_error=error):
            _record_on_previous(follow_up, "follow_up_repaired", status=FollowUpStatus.FAILED, error=error)
            repaired += 1
    return repaired


def runs_with_broken_bookkeeping() -> list[tuple[object, str]]:
    """Active runs whose follow-up is not ``running`` (so their outcome could not be
    recorded), each with the error to interrupt it with."""
    broken = (
        AgentRun.objects.filter(status__in=RUN_ACTIVE, follow_up__isnull=False)
        .exclude(follow_up__status=FollowUpStatus.RUNNING)
        .values_list("pk", "follow_up_id", "follow_up__status")[:BATCH]
    )
    return [
        (
            run_id,
            f"Follow-up bookkeeping broken: this run fulfils follow-up {follow_up_id}, which is {status} "
            "instead of running, so its outcome could not be recorded. Interrupted by the recovery sweep.",
        )
        for run_id, follow_up_id, status in broken
    ]
