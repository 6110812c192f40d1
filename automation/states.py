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


class InvalidTransition(Exception):
    """A guarded update matched no row: the row is not in a state that allows the change."""
