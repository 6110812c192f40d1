"""Provider events (DESIGN §7): store each delivery once, start at most one run per context,
defer what arrives while the context is busy, and start the deferred events together later.

Invariants and what guards them:
- one row per (action, event id): the unique constraint ``provider_events_unique_delivery``;
  a repeat only counts the delivery.
- a context is one run-as user's work (``automation.scope``): the active-run lookup, the
  deferral, the drain, the context lock and thread reuse all key on (agent, the action's
  run-as user, context type, context key), so one user's events never wait behind, join or
  land in another user's run or thread.
- one active run per context: the partial unique index ``agent_runs_one_active_per_context``;
  ``runs.run_create`` raises ``ContextBusy`` when it refuses the row, and the event is then
  deferred behind the winner.
- events coalesce only with events of the same action (same run-as user and instructions);
  the drain starts the first action's events and queues each other action's behind it.
- nothing deferred is stranded: deferring behind a run and draining that run take the same
  transaction-scoped lock on the context, so an event is either seen by the drain of the run
  it waits for or finds that run already ended and goes round again. The recovery sweep
  (``drain_missed_contexts``) repairs whatever a crash left in between.
"""

import dataclasses
import hashlib
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from agentpress.agents.models import Message, MessageRole, Thread
from automation import queries, scope
from automation.models import Action, AgentRun, ProviderEvent
from automation.services import admission, runs
from automation.states import RUN_ACTIVE, RUN_TERMINAL, ProviderEventStatus, RunSource, RunStatus

DUPLICATE = ProviderEventStatus.DUPLICATE
ROUTE_ATTEMPTS = 3
SWEEP_BATCH = 200


@dataclass(frozen=True)
class InboundEvent:
    """A provider delivery after its adapter verified and normalized it."""

    event_id: str
    context_type: str
    context_key: str
    payload: Any
    content: str
    provider_context: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Ingested:
    """What happened to a delivery: ``outcome`` is the event's status, or ``duplicate``
    for a repeated delivery of an event already stored (whose row is ``event``)."""

    event: ProviderEvent
    outcome: str

    @property
    def run_id(self):
        return self.event.run_id or self.event.deferred_behind_id


def ingest_event(*, action: Action, event: InboundEvent, ignore_reason: str = "") -> Ingested:
    """Store one delivery and act on it, in one transaction.

    A repeated ``event_id`` only increments ``delivery_count``, in one statement. A gated
    delivery (org automations off, action or agent disabled, or ``ignore_reason`` given by
    the adapter) is stored ``ignored`` with its reason. Otherwise the event starts a run on
    its context, joins a debounced run that is not yet due (``coalesced``), or waits behind
    the active run (``deferred``). The inbound content is written to the thread as an
    ``event`` message; the run is sent to a worker when the transaction commits. ``action``
    should come with its organization, agent and run-as user (``select_related``) and, on
    the hot path, the run-as membership (``scope.with_run_as_membership``).
    """
    event_id = event.event_id[:255]
    if repeat := queries.count_repeated_delivery(action_id=action.pk, event_id=event_id):
        return Ingested(repeat, DUPLICATE)
    try:
        with transaction.atomic():
            # The insert is the dedup; its placeholder status is settled below, in this transaction.
            row = ProviderEvent.objects.create(
                organization_id=action.organization_id,
                action=action,
                agent_id=action.agent_id,
                event_id=event_id,
                context_type=event.context_type,
                context_key=event.context_key,
                payload=event.payload,
                status=ProviderEventStatus.IGNORED,
            )
            reason = ignore_reason or _gate(action)
            if reason:
                _settle(row, ProviderEventStatus.IGNORED, reason=reason)
            else:
                _route(row, action, event)
    except IntegrityError as exc:
        if not _is_repeat(exc):
            raise
        # a concurrent delivery of the same event stored it first: this one is the repeat
        return Ingested(queries.count_repeated_delivery(action_id=action.pk, event_id=event_id), DUPLICATE)
    return Ingested(row, row.status)


def _is_repeat(exc: IntegrityError) -> bool:
    """The unique (action, event id) constraint refused the row: this event is stored already."""
    text = str(exc)
    return "provider_events_unique_delivery" in text or (
        "UNIQUE constraint failed" in text and "provider_events.event_id" in text
    )


def _gate(action: Action) -> str:
    """Why a delivery to ``action`` starts nothing now, or an empty string."""
    if not action.organization.automations_enabled:
        return "The organization's automations are turned off."
    if not action.enabled:
        return "The action is disabled."
    if not action.agent.enabled:
        return "The agent is disabled."
    if refusal := scope.context_refusal(source=RunSource.PROVIDER_EVENT, context_type=action.context_type):
        return refusal
    if refusal := scope.work_refusal(action):
        return f"The action runs as a user who may not run work: {refusal}"
    return ""


def _route(row: ProviderEvent, action: Action, event: InboundEvent) -> None:
    """Start, join or defer. Each pass re-reads the context, so a run that ends between the
    look and the deferral sends the event round again instead of leaving it behind."""
    for _ in range(ROUTE_ATTEMPTS):
        active_id, thread_id = queries.context_state(
            agent_id=action.agent_id,
            run_as_id=action.run_as_id,
            context_type=row.context_type,
            context_key=row.context_key,
        )
        if active_id is None:
            run = _start_single(row, action, event, thread_id=thread_id)
            if run is not None:
                _settle(row, ProviderEventStatus.STARTED, run=run)
                return
            # another delivery won the partial unique index
            active = runs.find_active_run(
                agent_id=action.agent_id,
                run_as_id=action.run_as_id,
                context_type=row.context_type,
                context_key=row.context_key,
            )
            if active is None:
                continue
        else:
            active = AgentRun.objects.filter(pk=active_id).first()
            if active is None:
                continue
        if _join_debounced(row, action, event, active) or _defer_behind(row, action, event, active):
            return
    # The context kept changing under us: park the event; the sweep starts it.
    _write_message(row, event, _thread_for(action, row.context_type, row.context_key))
    _settle(row, ProviderEventStatus.DEFERRED, reason="The context was busy; queued for the recovery sweep.")


def _start_single(row: ProviderEvent, action: Action, event: InboundEvent, *, thread_id) -> AgentRun | None:
    """A run for one event with the event's message on its thread (the context's latest, or a
    new one), all written together by ``runs.runs_create``; ``None`` (nothing written) when
    the partial unique index refused the run because another run holds the context."""
    now = timezone.now()
    debounce = action.debounce_seconds or 0
    not_before = now + timedelta(seconds=debounce) if debounce else None
    thread = (
        Thread(pk=thread_id, run_as_id=action.run_as_id)  # context_state looked up this user's thread
        if thread_id
        else _new_thread(action, row.context_type, row.context_key)
    )
    if thread_id:
        thread._state.adding = False
    new = runs.run_build(
        agent=action.agent,
        run_as=action.run_as,
        source=RunSource.PROVIDER_EVENT,
        prompt=_prompt(action, 1),
        thread=thread,
        context_type=row.context_type,
        context_key=row.context_key,
        not_before=not_before,
        input_extra={"event": row.payload, "events": [row.payload], "event_ids": [row.event_id]},
        waiting_reason=admission.debounced_reason(not_before) if not_before else "",
        action=action,
        provider=action.provider,
        provider_context=event.provider_context,
    )
    new = dataclasses.replace(new, history=(_event_message(row, event, thread),))
    created = runs.runs_create([new])
    return created[0] if created else None


def _join_debounced(row: ProviderEvent, action: Action, event: InboundEvent, active: AgentRun) -> bool:
    """Fold the event into this action's debounced run while it is not yet due, pushing its
    start back by the debounce, but never past ``AUTOMATION_DEBOUNCE_MAX_DELAY_SECONDS``
    after it was created, so a steady stream cannot postpone it forever."""
    if not action.debounce_seconds or active.action_id != action.pk:
        return False
    now = timezone.now()
    run = (
        AgentRun.objects.select_for_update(no_key=True, of=("self",))
        .filter(pk=active.pk, status=RunStatus.PENDING, not_before__gt=now)
        .first()
    )
    if run is None:
        return False
    deadline = run.created_at + timedelta(seconds=settings.AUTOMATION_DEBOUNCE_MAX_DELAY_SECONDS)
    not_before = max(run.not_before, min(now + timedelta(seconds=action.debounce_seconds), deadline))
    snapshot = dict(run.input_snapshot)
    snapshot["events"] = [*snapshot.get("events", []), row.payload]
    snapshot["event_ids"] = [*snapshot.get("event_ids", []), row.event_id]
    snapshot["prompt"] = _prompt(action, len(snapshot["event_ids"]))
    AgentRun.objects.filter(pk=run.pk, status=RunStatus.PENDING).update(
        input_snapshot=snapshot, not_before=not_before, waiting_reason=admission.debounced_reason(not_before)
    )
    _write_message(row, event, _thread_of(run, action))
    _settle(row, ProviderEventStatus.COALESCED, run=run)
    runs.record_event(run.pk, "event_coalesced", event_id=row.event_id, not_before=not_before.isoformat())
    return True


def _defer_behind(row: ProviderEvent, action: Action, event: InboundEvent, active: AgentRun) -> bool:
    """Wait behind ``active`` if it is still active once the context lock is held."""
    _lock_context(active.agent_id, active.run_as_id, active.context_type, active.context_key)
    if not AgentRun.objects.filter(pk=active.pk, status__in=RUN_ACTIVE).exists():
        return False
    _write_message(row, event, _thread_of(active, action))
    _settle(
        row, ProviderEventStatus.DEFERRED, deferred_behind=active, reason=admission.deferred_reason(active.pk)
    )
    runs.record_event(active.pk, "event_deferred", event_id=row.event_id, provider_event_id=row.pk)
    return True


def drain_deferred_events(*, run: AgentRun) -> AgentRun | None:
    """Start the events deferred behind ``run``, which just reached a terminal status (called
    inside that transaction). The first action's events become ``coalesced`` into ONE new run,
    which continues the same thread and is sent to a worker on commit; the events of any
    other action wait behind that run and start when it ends (``_start_together``)."""
    if not run.context_key:
        return None
    _lock_context(run.agent_id, run.run_as_id, run.context_type, run.context_key)
    events = list(
        ProviderEvent.objects.filter(deferred_behind=run, status=ProviderEventStatus.DEFERRED)
        .select_related("action__organization", "action__agent", "action__run_as")
        .order_by("received_at", "id")
    )
    if not events:
        return None
    return _start_together(events, thread=run.thread, previous_run=run)


def _start_together(
    events: list[ProviderEvent], *, thread: Thread | None, previous_run: AgentRun | None
) -> AgentRun | None:
    """One run for the events (in arrival order) of the first one's action, under that
    action's run-as user and instructions. Each other action's events wait behind the new
    run, so they start in turn under their own action; nothing is dropped."""
    action = events[0].action
    batch = [row for row in events if row.action_id == action.pk]
    rest = [row for row in events if row.action_id != action.pk]
    context_type, context_key = events[0].context_type, events[0].context_key
    reason = _gate(action)
    if reason:
        for row in batch:
            _settle(row, ProviderEventStatus.IGNORED, reason=f"Was deferred; not started: {reason}")
        return _start_together(rest, thread=thread, previous_run=previous_run) if rest else None
    if thread is not None and thread.run_as_id != action.run_as_id:
        thread = None  # the action now runs as someone else: their own conversation
    event_ids = [row.event_id for row in batch]
    try:
        with transaction.atomic():
            run = runs.run_create(
                agent=action.agent,
                run_as=action.run_as,
                source=RunSource.PROVIDER_EVENT,
                prompt=_prompt(action, len(batch)),
                thread=thread or _thread_for(action, context_type, context_key),
                context_type=context_type,
                context_key=context_key,
                input_extra={"events": [row.payload for row in batch], "event_ids": event_ids},
                action=action,
                provider=action.provider,
                provider_context={"eventIds": event_ids},
                previous_run=previous_run,
            )
    except runs.ContextBusy as busy:
        # Only the sweep gets here (a run ending holds the context): wait behind the new owner.
        for row in events:
            _settle(
                row,
                ProviderEventStatus.DEFERRED,
                deferred_behind=busy.active_run,
                reason=admission.deferred_reason(busy.active_run.pk) if busy.active_run else "",
            )
        return None
    for row in batch:
        _settle(row, ProviderEventStatus.COALESCED, run=run, deferred_behind=row.deferred_behind)
    runs.record_event(run.pk, "events_coalesced", event_ids=event_ids)
    for row in rest:
        _settle(
            row, ProviderEventStatus.DEFERRED, deferred_behind=run, reason=admission.deferred_reason(run.pk)
        )
        runs.record_event(run.pk, "event_deferred", event_id=row.event_id, provider_event_id=row.pk)
    if previous_run is not None:
        runs.record_event(
            previous_run.pk, "deferred_events_drained", new_run_id=str(run.pk), events=len(batch)
        )
    return run


def drain_missed_contexts() -> int:
    """Repair: deferred events whose run ended without draining them (or whose run is gone,
    or that were parked by a busy context) start together now. Returns the runs started."""
    stranded = (
        ProviderEvent.objects.filter(status=ProviderEventStatus.DEFERRED)
        .filter(Q(deferred_behind__isnull=True) | Q(deferred_behind__status__in=RUN_TERMINAL))
        .order_by()
        .values_list("deferred_behind_id", "agent_id", "action__run_as_id", "context_type", "context_key")
        .distinct()[:SWEEP_BATCH]
    )
    started = 0
    for behind_id, agent_id, run_as_id, context_type, context_key in list(stranded):
        with transaction.atomic():
            _lock_context(agent_id, run_as_id, context_type, context_key)
            previous = AgentRun.objects.filter(pk=behind_id, status__in=RUN_TERMINAL).first()
            if behind_id is not None and previous is None:
                continue  # it was drained (or restarted) since we looked
            events = list(
                ProviderEvent.objects.filter(
                    status=ProviderEventStatus.DEFERRED,
                    deferred_behind_id=behind_id,
                    agent_id=agent_id,
                    action__run_as_id=run_as_id,
                    context_type=context_type,
                    context_key=context_key,
                )
                .select_related("action__organization", "action__agent", "action__run_as")
                .order_by("received_at", "id")
            )
            if events and _start_together(
                events, thread=previous.thread if previous else None, previous_run=previous
            ):
                started += 1
    return started


def _settle(row: ProviderEvent, status: str, *, run=None, deferred_behind=None, reason: str = "") -> None:
    """The event's outcome; only events not yet finally placed (ignored on insert, deferred) move.
    ``row`` is updated to match, so that nobody reads it back."""
    fields = dict(
        status=status, run=run, deferred_behind=deferred_behind, reason=reason, processed_at=timezone.now()
    )
    if ProviderEvent.objects.filter(
        pk=row.pk, status__in=(ProviderEventStatus.IGNORED, ProviderEventStatus.DEFERRED)
    ).update(**fields):
        for name, value in fields.items():
            setattr(row, name, value)


def _thread_of(run: AgentRun, action: Action) -> Thread:
    """The run's thread when it is the action's run-as user's, else theirs for the context."""
    if run.thread_id is not None and run.thread.run_as_id == action.run_as_id:
        return run.thread
    return _thread_for(action, run.context_type, run.context_key)


def _thread_for(action: Action, context_type: str, context_key: str) -> Thread:
    """The latest thread of the agent on this context that is the action's run-as user's,
    or a new one of theirs for a new context."""
    if context_key:
        latest = (
            Thread.objects.filter(
                agent_id=action.agent_id,
                run_as_id=action.run_as_id,
                context_type=context_type,
                context_key=context_key,
            )
            .order_by("-created_at", "-id")
            .first()
        )
        if latest is not None:
            return latest
    thread = _new_thread(action, context_type, context_key)
    thread.save()
    return thread


def _new_thread(action: Action, context_type: str, context_key: str) -> Thread:
    """An unsaved thread for a new context."""
    title = f"{action.name}: {context_key}" if context_key else action.name
    return Thread(
        organization_id=action.organization_id,
        agent_id=action.agent_id,
        title=title[:300],
        context_type=context_type,
        context_key=context_key,
        run_as_id=action.run_as_id,
    )


def _event_message(row: ProviderEvent, event: InboundEvent, thread: Thread) -> Message:
    # Not linked to a run: the worker gives the agent the thread's history without the run's
    # own messages, and the event is history the agent must see.
    return Message(
        thread=thread,
        role=MessageRole.EVENT,
        content=event.content,
        metadata={"kind": "provider_event", "provider_event_id": row.pk, "event_id": row.event_id},
    )


def _write_message(row: ProviderEvent, event: InboundEvent, thread: Thread) -> None:
    _event_message(row, event, thread).save()


def _prompt(action: Action, count: int) -> str:
    base = action.instructions.strip() or f"New {action.get_provider_display()} activity: respond to it."
    if count == 1:
        return base
    return f"{base}\n\n{count} events arrived together; each is in the conversation above."


def _lock_context(agent_id, run_as_id, context_type: str, context_key: str) -> None:
    """A transaction-scoped lock on one context (of one run-as user), taken by deferral and
    by the drain only; creating runs is left to the partial unique index. SQLite serializes
    writers anyway."""
    if connection.vendor != "postgresql":
        return
    digest = hashlib.blake2b(
        f"{agent_id}\x1f{run_as_id}\x1f{context_type}\x1f{context_key}".encode(), digest_size=8
    ).digest()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [int.from_bytes(digest, "big", signed=True)])


def action_create(*, agent, run_as, name: str, provider: str, **fields) -> Action:
    """A new inbound trigger with a fresh ``whsec_…`` secret. An Outlook action's context is
    always the e-mail conversation."""
    if provider == Action.Provider.OUTLOOK:
        fields.update(context_type="email_thread", context_key_pointer="")
    return Action.objects.create(
        organization_id=agent.organization_id,
        agent=agent,
        run_as=run_as,
        name=name,
        provider=provider,
        **fields,
    )
