"""Schedules (DESIGN §5): checks, changes, Run now, and the due-schedule dispatcher.

A slot becomes at most one run: the unique (``schedule``, ``scheduled_for``) constraint
refuses a second one, and that refusal is a normal outcome here. Overlap is decided
while the schedule row is locked, and every ending run of a schedule takes the same
lock before it releases a buffered slot, so ``buffer_one`` never loses or doubles a slot.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from agentpress.orgs.models import Membership
from automation import cadence, queries, scope
from automation.models import AgentRun, RunEvent, Schedule
from automation.services import runs
from automation.services.audit import audit_record
from automation.states import RUN_ACTIVE, Cadence, OverlapPolicy, RunSource

logger = logging.getLogger(__name__)

CONTEXT_TYPE = scope.SCHEDULE_CONTEXT_TYPE
MIN_CATCHUP_WINDOW = timedelta(seconds=60)
MAX_CATCHUP_WINDOW = timedelta(days=365)
# What a person configures; everything else on the row is written by the dispatcher.
CONFIG_FIELDS = (
    "name", "cadence", "time_of_day", "weekdays", "interval_minutes", "run_at", "cron_expression",
    "timezone", "instructions", "run_as", "enabled", "catchup_window", "overlap_policy",
)  # fmt: skip
# Fields each cadence reads; the others are cleared so the row says only what applies.
CADENCE_FIELDS = {
    Cadence.DAILY: {"time_of_day"},
    Cadence.WEEKLY: {"time_of_day", "weekdays"},
    Cadence.INTERVAL: {"interval_minutes", "run_at"},
    Cadence.ONCE: {"run_at"},
    Cadence.CRON: {"cron_expression"},
}
CLEARED = {
    "time_of_day": None,
    "weekdays": [],
    "interval_minutes": None,
    "run_at": None,
    "cron_expression": "",
}


@dataclass(frozen=True)
class SlotOutcome:
    """What became of a slot: ``started``, ``buffered``, ``skipped``, ``duplicate`` or ``blocked``."""

    outcome: str
    run: AgentRun | None = None
    active_run: AgentRun | None = None
    reason: str = ""


def check_schedule_fields(schedule: Schedule, *, stored: Schedule | None = None, now: datetime) -> None:
    """Raise ``ValidationError`` with a message per field when the schedule cannot work.

    ``stored`` is the row as saved before this change: a ``once`` moment must be in the
    future only when it is being set or switched on, so old one-off rows stay editable.
    """
    errors: dict[str, list[str]] = {}
    minimum = settings.AUTOMATION_MIN_INTERVAL_MINUTES
    if schedule.cadence not in Cadence.values:
        errors["cadence"] = [f"Choose one of {', '.join(Cadence.values)}."]
    if schedule.timezone not in cadence.known_timezones():
        errors["timezone"] = [
            f"Unknown time zone {schedule.timezone!r}; use an IANA name such as Europe/London."
        ]
    if schedule.cadence in (Cadence.DAILY, Cadence.WEEKLY) and schedule.time_of_day is None:
        errors["time_of_day"] = ["Required for daily and weekly schedules, as HH:MM."]
    if schedule.cadence == Cadence.WEEKLY:
        days = schedule.weekdays if isinstance(schedule.weekdays, list) else None
        if not days:
            errors["weekdays"] = ["Choose at least one weekday."]
        elif unknown := [d for d in days if d not in cadence.WEEKDAYS]:
            errors["weekdays"] = [f"Unknown weekday(s) {unknown}; use {', '.join(cadence.WEEKDAYS)}."]
    if schedule.cadence == Cadence.INTERVAL:
        if (schedule.interval_minutes or 0) < minimum:
            errors["interval_minutes"] = [f"Must be at least {minimum} minutes."]
        elif schedule.interval_minutes > cadence.MAX_INTERVAL_MINUTES:
            errors["interval_minutes"] = [
                f"Must be at most {cadence.MAX_INTERVAL_MINUTES} minutes (366 days); use a cron "
                "schedule for rarer work."
            ]
    if schedule.run_at is not None and (out_of_range := cadence.run_at_out_of_range(schedule.run_at)):
        errors["run_at"] = [out_of_range]
    elif schedule.cadence == Cadence.ONCE:
        if schedule.run_at is None:
            errors["run_at"] = ["Required for a one-off schedule."]
        elif schedule.run_at <= now and _sets_once_moment(schedule, stored):
            errors["run_at"] = ["Must be in the future."]
    if schedule.cadence == Cadence.CRON:
        if not cadence.is_valid_cron(schedule.cron_expression or ""):
            errors["cron_expression"] = [
                "Not a valid cron expression (five fields: minute hour day month weekday)."
            ]
        elif _fires_more_often_than(schedule, timedelta(minutes=minimum), now):
            errors["cron_expression"] = [f"Fires more often than every {minimum} minutes."]
    if schedule.catchup_window is None or schedule.catchup_window < MIN_CATCHUP_WINDOW:
        errors["catchup_window"] = [f"Must be at least {int(MIN_CATCHUP_WINDOW.total_seconds())} seconds."]
    elif schedule.catchup_window > MAX_CATCHUP_WINDOW:
        errors["catchup_window"] = [f"Must be at most {MAX_CATCHUP_WINDOW.days} days."]
    if schedule.overlap_policy not in OverlapPolicy.values:
        errors["overlap_policy"] = [f"Choose one of {', '.join(OverlapPolicy.values)}."]
    if schedule.agent.organization_id != schedule.organization_id:
        errors["agent"] = ["No such agent in this organization."]
    if not Membership.objects.filter(
        organization_id=schedule.organization_id, user_id=schedule.run_as_id
    ).exists():
        errors["run_as"] = ["Not a member of this organization."]
    if errors:
        raise ValidationError(errors)


def check_may_schedule_as(*, access, run_as_id: int) -> None:
    """Members schedule only as themselves (``PermissionDenied``); owners and admins as any
    member of the org (``ValidationError`` on ``run_as`` otherwise)."""
    if run_as_id != access.user.pk and not access.org_wide:
        raise PermissionDenied("Members may only create schedules that run as themselves.")
    if not Membership.objects.filter(organization=access.organization, user_id=run_as_id).exists():
        raise ValidationError({"run_as": ["Not a member of this organization."]})


def _sets_once_moment(schedule: Schedule, stored: Schedule | None) -> bool:
    if stored is None:
        return True
    return (
        stored.cadence != Cadence.ONCE
        or stored.run_at != schedule.run_at
        or (schedule.enabled and not stored.enabled)
    )


def _fires_more_often_than(schedule: Schedule, gap: timedelta, now: datetime) -> bool:
    """A sample of the coming fire times; every gap of a cron shows up within its first hours."""
    probe = Schedule(cadence=Cadence.CRON, cron_expression=schedule.cron_expression, timezone="UTC")
    times = cadence.next_fire_times(probe, now, 60)
    return any(b - a < gap for a, b in zip(times, times[1:], strict=False))


def schedule_create(*, organization, agent, run_as, actor=None, **fields) -> Schedule:
    """A checked, stored schedule whose ``next_run_at`` is its first slot after now
    (none while disabled). ``fields`` are the other ``CONFIG_FIELDS``."""
    _only_settings(fields)
    schedule = Schedule(organization=organization, agent=agent, run_as=run_as, created_by=actor, **fields)
    return schedule_save(schedule=schedule, actor=actor)


def schedule_update(*, schedule: Schedule, actor=None, **changes) -> Schedule:
    """Apply settings, check them, and recompute ``next_run_at`` from now."""
    return _update(schedule, changes, actor=actor, verb="updated")


def _update(schedule: Schedule, changes: dict, *, actor, verb: str) -> Schedule:
    _only_settings(changes)
    with transaction.atomic():
        current = Schedule.objects.select_for_update(no_key=True).get(pk=schedule.pk)
        for name, value in changes.items():
            setattr(current, name, value)
        return schedule_save(schedule=current, actor=actor, verb=verb)


def _only_settings(fields: dict) -> None:
    if unknown := set(fields) - set(CONFIG_FIELDS):
        raise TypeError(f"Not schedule settings: {sorted(unknown)}")


def schedule_set_enabled(*, schedule: Schedule, enabled: bool, actor=None) -> Schedule:
    """Disabling keeps the row and its runs but clears the next run and any waiting slot;
    enabling computes the next run from now, so nothing stale fires."""
    return _update(schedule, {"enabled": enabled}, actor=actor, verb="enabled" if enabled else "disabled")


def schedule_save(*, schedule: Schedule, actor=None, verb: str = "") -> Schedule:
    """Check and store a schedule's settings (new or changed; the admin form uses this too)
    with ``next_run_at`` recomputed from now. Counters the dispatcher keeps are not touched.
    An audit entry records ``actor`` and ``verb`` (default ``created``/``updated``) with the
    settings that changed, in the same transaction."""
    now = timezone.now()
    with transaction.atomic():
        stored = None
        if schedule.pk:
            stored = Schedule.objects.select_for_update(no_key=True).get(pk=schedule.pk)
        for name, empty in CLEARED.items():
            if name not in CADENCE_FIELDS.get(schedule.cadence, CLEARED):
                setattr(schedule, name, empty)
        if schedule.cadence == Cadence.INTERVAL and schedule.run_at is None:
            # Intervals count from a fixed anchor so that they never drift.
            schedule.run_at = now.replace(second=0, microsecond=0)
        check_schedule_fields(schedule, stored=stored, now=now)
        schedule.next_run_at = cadence.next_fire_time(schedule, now) if schedule.enabled else None
        schedule.blocked_reason = ""
        if not schedule.enabled:
            schedule.buffered_slot = None
        if stored is None:
            schedule.save()
            audit_record(
                actor=actor, organization=schedule.organization, verb=verb or "created", target=schedule
            )
        else:
            schedule.save(
                update_fields=[*CONFIG_FIELDS, "next_run_at", "blocked_reason", "buffered_slot", "updated_at"]
            )
            audit_record(
                actor=actor,
                organization=schedule.organization,
                verb=verb or "updated",
                target=schedule,
                changed=_changed_settings(stored, schedule),
            )
    return schedule


def _changed_settings(stored: Schedule, schedule: Schedule) -> list[str]:
    attnames = [Schedule._meta.get_field(name).attname for name in CONFIG_FIELDS]
    return [
        name
        for name, attname in zip(CONFIG_FIELDS, attnames, strict=True)
        if getattr(stored, attname) != getattr(schedule, attname)
    ]


def schedule_run_now(*, schedule: Schedule, actor=None) -> SlotOutcome:
    """Start a run outside the cadence, under the schedule's overlap policy; nothing starts
    while the schedule is disabled or gated off (the outcome says why). Every call is
    audited with its outcome, refused ones too."""
    now = timezone.now()
    with transaction.atomic():
        current = _lock(schedule.pk)
        reason = gate_reason(current) or ("" if current.enabled else "The schedule is disabled.")
        if reason:
            outcome = SlotOutcome("blocked", reason=reason)
        else:
            outcome, fields = _start_or_hold(
                current,
                slot=now,
                now=now,
                label="Run now",
                trigger="run_now",
                by=getattr(actor, "username", None),
            )
            _record(current, **fields)
        audit_record(
            actor=actor,
            organization=current.organization,
            verb="ran_now",
            target=current,
            outcome=outcome.outcome,
            run_id=str(outcome.run.pk) if outcome.run else None,
        )
    return outcome


def gate_reason(schedule: Schedule, *, refusals: dict | None = None) -> str:
    """Why nothing of this schedule may fire now, or an empty string. ``refusals`` are
    ``scope.run_as_refusals`` computed for a batch or a page of schedules at once."""
    if not schedule.organization.automations_enabled:
        return "Automations are turned off for this organization."
    if not schedule.agent.enabled:
        return "The agent is disabled."
    if not schedule.agent.scheduled_runs_enabled:
        return "The agent's Scheduled runs capability is off."
    if refusals is not None:
        refusal = refusals[(schedule.organization_id, schedule.run_as_id)]
    else:
        refusal = scope.run_as_refusal(organization=schedule.organization, user=schedule.run_as)
    if refusal:
        return f"Not fired: {refusal}"
    return ""


# What the dispatcher writes on a schedule; a batch writes all of them, as held in each row.
DISPATCHER_FIELDS = [
    "next_run_at", "missed_count", "last_missed_at", "blocked_reason", "last_run_at", "buffered_slot",
    "skipped_count",
]  # fmt: skip


@dataclass
class _DueSlot:
    """The slot one due schedule of a batch fires, while the batch is being decided."""

    schedule: Schedule
    slot: datetime
    missed: int
    before: dict  # the dispatcher's fields as locked, restored if the slot turns out broken
    new: runs.NewRun | None = None

    @property
    def label(self) -> str:
        return f"{_label(self.slot)} slot"


def fire_due_schedules() -> int:
    """Turn every due slot into at most one run and move each schedule to its next slot.

    Batches are claimed with ``SKIP LOCKED`` through the partial index on ``next_run_at``
    of enabled rows, so concurrent dispatchers split the work and the cost follows the
    number of due schedules. Each batch is decided in Python and written in a fixed number
    of statements (``_fire_batch``); its runs are sent when it commits. Returns how many
    runs started.
    """
    started = 0
    batch_size = settings.AUTOMATION_SCHEDULE_BATCH_SIZE
    while True:
        now = timezone.now()
        with transaction.atomic():
            due = list(
                Schedule.objects.select_for_update(skip_locked=True, no_key=True, of=("self",))
                .select_related("organization", "agent", "run_as")
                .filter(enabled=True, next_run_at__lte=now)
                .order_by("next_run_at", "id")[:batch_size]
            )
            if due:
                started += _fire_batch(due, now=now)
        if len(due) < batch_size:
            return started


def _fire_batch(due: list[Schedule], *, now: datetime) -> int:
    """Fire a locked batch of due schedules: whatever its size, one query for the active runs
    of the schedules that may overlap, two statements for the new runs (with their threads,
    events and prompts), one for the events of slots held back, one for every schedule's new
    state. A schedule whose slot cannot be computed or built is recorded as broken and the
    others still fire; a run the database refuses goes through the one-slot path."""
    firing: list[_DueSlot] = []
    refusals = scope.run_as_refusals(due)
    for schedule in due:
        before = {name: getattr(schedule, name) for name in DISPATCHER_FIELDS}
        try:
            if (slot := _decide_slot(schedule, now=now, before=before, refusals=refusals)) is not None:
                firing.append(slot)
        except Exception as exc:  # one broken schedule must not hold up the others
            _broken(schedule, before, exc, now=now)
    active = _active_runs([f.schedule for f in firing if f.schedule.overlap_policy != OverlapPolicy.ALLOW])
    held_events, batch = [], []
    for f in firing:
        if (active_id := active.get(f.schedule.pk)) is not None:
            _, fields, event = _hold(f.schedule, slot=f.slot, label=f.label, active_id=active_id)
            _apply(f.schedule, fields)
            held_events.append(event)
            continue
        try:
            f.new = runs.run_build(**_run_fields(f.schedule, slot=f.slot, trigger="cadence", missed=f.missed))
        except Exception as exc:
            _broken(f.schedule, f.before, exc, now=now)
            continue
        batch.append(f)
    created = {run.pk for run in runs.runs_create([f.new for f in batch])}
    started = 0
    for f in batch:
        if f.new.run.pk in created:
            _apply(f.schedule, _started_fields(f.schedule, slot=f.slot, now=now))
            started += 1
            continue
        # refused (the slot has a run already, or the context became busy): decide it alone
        try:
            with transaction.atomic():
                outcome, fields = _start_or_hold(
                    f.schedule, slot=f.slot, now=now, label=f.label, trigger="cadence", missed=f.missed
                )
        except Exception as exc:
            _broken(f.schedule, f.before, exc, now=now)
            continue
        _apply(f.schedule, fields)
        started += int(outcome.outcome == "started")
    RunEvent.objects.bulk_create(event for event in held_events if event is not None)
    queries.update_rows(due, DISPATCHER_FIELDS)
    return started


def _decide_slot(schedule: Schedule, *, now: datetime, before: dict, refusals: dict) -> _DueSlot | None:
    """Apply to the (locked) row what the clock says: a gated or missed slot moves it on and
    fires nothing; otherwise the slot to fire, with the missed ones counted."""
    reason = gate_reason(schedule, refusals=refusals)
    if reason:
        # Moving on from now (not from the stale slot) is what keeps re-enabling from
        # bursting: by the time the gate opens, next_run_at is already a future slot.
        _apply(schedule, {"next_run_at": cadence.next_fire_time(schedule, now), "blocked_reason": reason})
        return None
    slots = cadence.due_slots(schedule, schedule.next_run_at, now)
    fields: dict = {"next_run_at": cadence.next_fire_time(schedule, slots.latest)}
    missed, last_missed = slots.earlier, slots.previous
    in_window = now - slots.latest <= schedule.catchup_window
    if not in_window:
        missed, last_missed = missed + 1, slots.latest
    if missed:
        fields.update(missed_count=schedule.missed_count + missed, last_missed_at=last_missed)
    if not in_window:
        fields["blocked_reason"] = (
            f"Missed the {_label(slots.latest)} slot: the dispatcher reached it after the catch-up window."
        )
        _apply(schedule, fields)
        return None
    _apply(schedule, fields)
    return _DueSlot(schedule=schedule, slot=slots.latest, missed=missed, before=before)


def _broken(schedule: Schedule, before: dict, exc: Exception, *, now: datetime) -> None:
    """Record why the schedule could not fire and move it on; what the failed attempt had
    decided for the row is undone (``before``)."""
    logger.error("Schedule %s could not fire", schedule.pk, exc_info=exc)
    _apply(schedule, before)
    try:
        following = cadence.next_fire_time(schedule, now)
    except Exception:  # settings no longer computable: park the row until someone fixes it
        following = None
    _apply(
        schedule,
        {"next_run_at": following, "blocked_reason": f"Could not fire: {type(exc).__name__}: {exc}"[:300]},
    )


def _active_runs(schedules: list[Schedule]) -> dict:
    """The oldest active run of each schedule that has one, by schedule id (one query)."""
    if not schedules:
        return {}
    active = {}
    rows = (
        AgentRun.objects.filter(schedule_id__in=[s.pk for s in schedules], status__in=RUN_ACTIVE)
        .order_by("schedule_id", "created_at")
        .values_list("schedule_id", "pk")
    )
    for schedule_id, run_id in rows:
        active.setdefault(schedule_id, run_id)
    return active


def _apply(schedule: Schedule, fields: dict) -> None:
    for name, value in fields.items():
        setattr(schedule, name, value)


def release_buffered_slot(*, run: AgentRun) -> None:
    """Inside the ending run's transaction: start the slot ``buffer_one`` kept waiting.

    The schedule lock orders this after any dispatcher that is buffering a slot right
    now, so a slot buffered while this run ended is still released. A failure is recorded
    on the schedule and never undoes the run's own ending.
    """
    if run.schedule_id is None:
        return
    now = timezone.now()
    current = _lock(run.schedule_id)
    if current is None or current.buffered_slot is None:
        return
    slot = current.buffered_slot
    reason = gate_reason(current) or ("" if current.enabled else "The schedule is disabled.")
    if reason:
        _record(
            current, buffered_slot=None, blocked_reason=f"Dropped the waiting {_label(slot)} slot: {reason}"
        )
        return
    try:
        with transaction.atomic():
            outcome, fields = _start_or_hold(
                current, slot=slot, now=now, label=f"waiting {_label(slot)} slot", trigger="buffered"
            )
            _record(current, **(fields if outcome.outcome != "duplicate" else {"buffered_slot": None}))
    except Exception as exc:
        logger.exception("Schedule %s could not release its waiting slot", current.pk)
        _record(current, buffered_slot=None, blocked_reason=f"Could not start the waiting slot: {exc}"[:300])


def _lock(schedule_id) -> Schedule | None:
    return (
        Schedule.objects.select_for_update(no_key=True, of=("self",))
        .select_related("organization", "agent", "run_as")
        .filter(pk=schedule_id)
        .first()
    )


def _start_or_hold(schedule: Schedule, *, slot: datetime, now: datetime, label: str, trigger: str, **extra):
    """Start a run for ``slot`` unless the overlap policy holds it back; returns the outcome
    and the schedule fields to record. The caller holds the schedule's row lock."""
    active_id = None
    if schedule.overlap_policy != OverlapPolicy.ALLOW:
        active_id = _active_runs([schedule]).get(schedule.pk)
    if active_id is None:
        try:
            run = runs.run_create(**_run_fields(schedule, slot=slot, trigger=trigger, **extra))
            return SlotOutcome("started", run=run), _started_fields(schedule, slot=slot, now=now)
        except runs.ContextBusy as busy:  # a run of this context started since the check
            active_id = busy.active_run.pk if busy.active_run else None
        except IntegrityError as exc:
            if "agent_runs_one_per_schedule_slot" not in str(exc) and "scheduled_for" not in str(exc):
                raise
            return SlotOutcome("duplicate"), {}
    outcome, fields, event = _hold(schedule, slot=slot, label=label, active_id=active_id)
    if event is not None:
        event.save()
    return outcome, fields


def _started_fields(schedule: Schedule, *, slot: datetime, now: datetime) -> dict:
    fields = {"last_run_at": now, "blocked_reason": "", "buffered_slot": None}
    if schedule.buffered_slot not in (None, slot):  # a waiting slot this run supersedes
        fields["skipped_count"] = schedule.skipped_count + 1
    return fields


def _hold(
    schedule: Schedule, *, slot: datetime, label: str, active_id
) -> tuple[SlotOutcome, dict, RunEvent | None]:
    """The slot waits (``buffer_one``) or is skipped behind the active run: the outcome, the
    schedule fields, and the (unsaved) event that tells the active run's timeline."""
    active = AgentRun(pk=active_id) if active_id else None
    active_name = f"run {active_id}" if active_id else "another run"
    if schedule.overlap_policy == OverlapPolicy.BUFFER_ONE:
        fields = {"buffered_slot": slot, "blocked_reason": f"{label} waits for {active_name} to end."}
        if schedule.buffered_slot not in (None, slot):  # only one waits: the older one gives way
            fields["skipped_count"] = schedule.skipped_count + 1
        event = _slot_event(active_id, "schedule_slot_buffered", schedule, slot)
        return SlotOutcome("buffered", active_run=active), fields, event
    fields = {
        "skipped_count": schedule.skipped_count + 1,
        "blocked_reason": f"{label} skipped: {active_name} was still active.",
        "buffered_slot": None,
    }
    event = _slot_event(active_id, "schedule_slot_skipped", schedule, slot)
    return SlotOutcome("skipped", active_run=active, reason=fields["blocked_reason"]), fields, event


def _slot_event(active_id, kind: str, schedule: Schedule, slot: datetime) -> RunEvent | None:
    if not active_id:
        return None
    return RunEvent(
        run_id=active_id, kind=kind, detail={"schedule_id": schedule.pk, "slot": slot.isoformat()}
    )


def _run_fields(schedule: Schedule, *, slot: datetime, trigger: str, **extra) -> dict:
    """What ``runs.run_create`` / ``runs.run_build`` take for a run of ``slot``."""
    # skip and buffer_one share one context per schedule, so the one-active-run-per-context
    # index backs the overlap check. allow must run side by side, so each of its slots gets
    # its own context (the slot constraint already keeps a slot from running twice).
    key = schedule.context_key
    if schedule.overlap_policy == OverlapPolicy.ALLOW:
        key = f"{key}@{slot.isoformat()}"
    return dict(
        agent=schedule.agent,
        run_as=schedule.run_as,
        source=RunSource.SCHEDULE,
        prompt=schedule.instructions,
        context_type=CONTEXT_TYPE,
        context_key=key,
        input_extra={"schedule": {"id": schedule.pk, "name": schedule.name, "slot": slot.isoformat()}},
        schedule=schedule,
        scheduled_for=slot,
        metadata={"trigger": trigger, **{k: v for k, v in extra.items() if v}},
    )


def _record(schedule: Schedule, **fields) -> None:
    """Write what the dispatcher learned; the caller holds the row lock."""
    Schedule.objects.filter(pk=schedule.pk).update(**fields)


def _label(slot: datetime) -> str:
    return f"{slot:%Y-%m-%d %H:%M} UTC"
