"""Every status of the domain and the transitions allowed between them, in one place.

Services change a status only through a guarded update whose ``WHERE status IN (...)``
comes from these tables; nothing else assigns ``.status``.
"""

from django.db import models


class RunStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    INTERRUPTED = "interrupted", "Interrupted"


RUN_ACTIVE = (RunStatus.PENDING, RunStatus.RUNNING)
RUN_TERMINAL = (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.INTERRUPTED)
RUN_RETRYABLE = (RunStatus.FAILED, RunStatus.INTERRUPTED, RunStatus.CANCELLED)

# target status -> statuses it may be entered from
RUN_TRANSITIONS = {
    RunStatus.RUNNING: (RunStatus.PENDING,),
    RunStatus.COMPLETED: (RunStatus.RUNNING,),
    RunStatus.FAILED: (RunStatus.RUNNING,),
    RunStatus.CANCELLED: (RunStatus.PENDING, RunStatus.RUNNING),
    RunStatus.INTERRUPTED: (RunStatus.RUNNING, RunStatus.PENDING),
}


class RunSource(models.TextChoices):
    SCHEDULE = "schedule", "Schedule"
    PROVIDER_EVENT = "provider_event", "Provider event"
    FOLLOW_UP = "follow_up", "Follow-up"
    MANUAL = "manual", "Manual"


class FollowUpStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"
    FAILED = "failed", "Failed"


FOLLOW_UP_ACTIVE = (FollowUpStatus.PENDING, FollowUpStatus.RUNNING)

FOLLOW_UP_TRANSITIONS = {
    FollowUpStatus.RUNNING: (FollowUpStatus.PENDING,),
    FollowUpStatus.COMPLETED: (FollowUpStatus.RUNNING,),
    FollowUpStatus.FAILED: (FollowUpStatus.RUNNING,),
    FollowUpStatus.CANCELLED: (FollowUpStatus.PENDING, FollowUpStatus.RUNNING),
}

# how a follow-up ends when the run it became ends
FOLLOW_UP_OUTCOME = {
    RunStatus.COMPLETED: FollowUpStatus.COMPLETED,
    RunStatus.FAILED: FollowUpStatus.FAILED,
    RunStatus.INTERRUPTED: FollowUpStatus.FAILED,
    RunStatus.CANCELLED: FollowUpStatus.CANCELLED,
}


class ProviderEventStatus(models.TextChoices):
    STARTED = "started", "Started a run"
    DEFERRED = "deferred", "Deferred behind active work"
    COALESCED = "coalesced", "Coalesced into a run"
    DUPLICATE = "duplicate", "Duplicate delivery"
    IGNORED = "ignored", "Ignored"


class Cadence(models.TextChoices):
    DAILY = "daily", "Daily"
    WEEKLY = "weekly", "Weekly"
    INTERVAL = "interval", "Interval"
    ONCE = "once", "Once"
    CRON = "cron", "Cron"


class OverlapPolicy(models.TextChoices):
    SKIP = "skip", "Skip while the previous run is active"
    BUFFER_ONE = "buffer_one", "Keep one waiting"
    ALLOW = "allow", "Start anyway"


class WaitingKind:
    """The fixed phrase each waiting reason starts with, by a short stable name."""

    NOT_DUE = "not_due"
    DEBOUNCED = "debounced"
    ORG_LIMIT = "org_limit"
    AGENT_LIMIT = "agent_limit"
    BUDGET = "budget"
    WORKER = "worker"

    PHRASES = {
        NOT_DUE: "not yet due",
        DEBOUNCED: "debounced until",
        ORG_LIMIT: "organization at its limit",
        AGENT_LIMIT: "agent at its limit",
        BUDGET: "daily budget reached",
        WORKER: "waiting for a worker",
    }
    CHOICES = [
        (NOT_DUE, "Not yet due"),
        (DEBOUNCED, "Debounced"),
        (ORG_LIMIT, "Organization at its limit"),
        (AGENT_LIMIT, "Agent at its limit"),
        (BUDGET, "Daily budget reached"),
        (WORKER, "Waiting for a worker"),
    ]
    HELD = (ORG_LIMIT, AGENT_LIMIT, BUDGET)  # held by admission, not by time


def waiting_kind(reason: str) -> str | None:
    """The ``WaitingKind`` of a stored ``waiting_reason`` (``None`` for none)."""
    for kind, phrase in WaitingKind.PHRASES.items():
        if reason.startswith(phrase):
            return kind
    return None


def effective_limit(value: int | None, default: int) -> int | None:
    """A stored concurrency limit, or the deployment's default when empty; 0 means none."""
    limit = default if value is None else value
    return limit or None


class InvalidTransition(Exception):
    """A guarded update matched no row: the row is not in a state that allows the change."""
