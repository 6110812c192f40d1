import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from automation.states import RUN_ACTIVE, RunSource, RunStatus


class AgentRun(models.Model):
    """One automation attempt (DESIGN §4)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No single-column indexes on these two: the composite indexes below start with them.
    organization = models.ForeignKey(
        "orgs.Organization", on_delete=models.CASCADE, related_name="runs", db_index=False
    )
    agent = models.ForeignKey("agents.Agent", on_delete=models.CASCADE, related_name="runs", db_index=False)
    run_as = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="agent_runs")
    source = models.CharField(max_length=16, choices=RunSource.choices)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.PENDING)

    thread = models.ForeignKey(
        "agents.Thread", null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    schedule = models.ForeignKey(
        "automation.Schedule", null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    action = models.ForeignKey(
        "automation.Action", null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    follow_up = models.OneToOneField(
        "automation.FollowUp", null=True, blank=True, on_delete=models.SET_NULL, related_name="fulfilling_run"
    )
    previous_run = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="next_runs"
    )
    # At most one retry per run: the unique constraint below is its index.
    retry_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries", db_index=False
    )

    context_type = models.CharField(max_length=64, blank=True)
    context_key = models.CharField(max_length=255, blank=True)
    provider = models.CharField(max_length=32, blank=True)
    provider_context = models.JSONField(default=dict, blank=True)
    input_snapshot = models.JSONField(default=dict, blank=True)
    metadata = models.JSONField(default=dict, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    not_before = models.DateTimeField(null=True, blank=True)
    scheduled_for = models.DateTimeField(null=True, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    # How many times the sweep re-sent the run's message (a lost message, DESIGN §4.5).
    redispatch_count = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    # Why a pending run has not started yet (DESIGN §7a); set and cleared by the engine.
    waiting_reason = models.CharField(max_length=300, blank=True)
    # Usage totals: the sum of the run's model calls, written with its completion.
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=6, default=0)

    lease_owner = models.CharField(max_length=255, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    lease_token = models.UUIDField(null=True, blank=True)
    attempt = models.PositiveIntegerField(default=0)

    last_error = models.TextField(blank=True)

    class Meta:
        db_table = "agent_runs"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["schedule", "scheduled_for"], name="agent_runs_one_per_schedule_slot"
            ),
            # A context is one user's work: two run-as users on the same key never meet
            # (automation/scope.py, docs/security.md "Tenancy").
            models.UniqueConstraint(
                fields=["organization", "agent", "run_as", "context_type", "context_key"],
                condition=Q(status__in=RUN_ACTIVE) & ~Q(context_key=""),
                name="agent_runs_one_active_per_context",
            ),
            models.UniqueConstraint(fields=["retry_of"], name="agent_runs_one_retry_per_run"),
        ]
        indexes = [
            # Lists are ordered by (-created_at, -id): the id in the index spares a sort of the org.
            # Across orgs (the admin changelist of a superuser) by this one.
            models.Index(fields=["-created_at", "-id"], name="agent_runs_created"),
            models.Index(fields=["organization", "-created_at", "-id"], name="agent_runs_org_created"),
            models.Index(
                fields=["organization", "status", "-created_at", "-id"], name="agent_runs_org_status"
            ),
            models.Index(
                fields=["organization", "run_as", "-created_at", "-id"], name="agent_runs_org_run_as"
            ),
            # Small (deduplicated) indexes that make the summary counts index-only scans.
            models.Index(fields=["organization", "status"], name="agent_runs_org_status_count"),
            models.Index(fields=["organization", "run_as", "status"], name="agent_runs_member_status_count"),
            models.Index(fields=["agent", "-created_at", "-id"], name="agent_runs_agent"),
            models.Index(
                fields=["lease_expires_at"],
                condition=Q(status=RunStatus.RUNNING),
                name="agent_runs_running_lease",
            ),
            models.Index(
                fields=["not_before", "dispatched_at"],
                condition=Q(status=RunStatus.PENDING),
                name="agent_runs_pending_due",
            ),
            # the claim's fair order reads each agent's oldest pending runs (admission.NEXT_FAIR_RUN_PG)
            models.Index(
                fields=["agent", "created_at", "id"],
                condition=Q(status=RunStatus.PENDING),
                name="agent_runs_pending_per_agent",
            ),
            # the claim counts an agent's runs in flight when a count decides (admission.NEXT_FAIR_RUN_PG)
            models.Index(
                fields=["agent"], condition=Q(status=RunStatus.RUNNING), name="agent_runs_running_per_agent"
            ),
            models.Index(
                fields=["organization", "agent", "context_type", "context_key", "-created_at"],
                name="agent_runs_context",
            ),
        ]

    def __str__(self):
        return f"{self.get_source_display()} run {self.pk} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in RUN_ACTIVE

    @property
    def prompt(self) -> str:
        return self.input_snapshot.get("prompt", "")


class RunEvent(models.Model):
    """One entry of a run's timeline."""

    run = models.ForeignKey(AgentRun, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(auto_now_add=True)
    kind = models.CharField(max_length=48)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        db_table = "agent_run_events"
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["run", "at"])]

    def __str__(self):
        return f"{self.kind} at {self.at:%Y-%m-%d %H:%M:%S}"


class ModelCall(models.Model):
    """One call to a model endpoint made by a run (table ``agent_run_model_calls``)."""

    class Outcome(models.TextChoices):
        OK = "ok", "OK"
        RETRIED = "retried", "Retried"
        ERROR = "error", "Error"

    run = models.ForeignKey(AgentRun, on_delete=models.CASCADE, related_name="model_calls")
    organization = models.ForeignKey("orgs.Organization", on_delete=models.CASCADE, related_name="+")
    agent = models.ForeignKey("agents.Agent", on_delete=models.CASCADE, related_name="+")
    endpoint = models.CharField(max_length=100, blank=True)
    model = models.CharField(max_length=200, blank=True)
    attempt = models.PositiveIntegerField(default=1)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cached_tokens = models.PositiveBigIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.OK)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    cost = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "agent_run_model_calls"
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["run", "created_at"], name="model_calls_run"),
            models.Index(fields=["organization", "created_at"], name="model_calls_org_created"),
        ]

    def __str__(self):
        return f"{self.endpoint}/{self.model} attempt {self.attempt} ({self.outcome})"


class ToolCall(models.Model):
    """A side-effecting tool call, stored under its idempotency key with its result.

    A retried or replayed run that makes the same call gets the stored result back
    instead of acting again (DESIGN §7a).
    """

    class Outcome(models.TextChoices):
        DONE = "done", "Done"
        SUPPRESSED = "suppressed", "Suppressed by a stop condition"
        REFUSED = "refused", "Refused"
        FAILED = "failed", "Failed"

    run = models.ForeignKey(AgentRun, on_delete=models.CASCADE, related_name="tool_call_records")
    organization = models.ForeignKey("orgs.Organization", on_delete=models.CASCADE, related_name="+")
    tool = models.CharField(max_length=64)
    idempotency_key = models.CharField(max_length=200, unique=True)
    arguments = models.JSONField(default=dict, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    result = models.JSONField(default=dict, blank=True)
    evidence = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "agent_run_tool_calls"
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["run", "created_at"], name="tool_calls_run")]

    def __str__(self):
        return f"{self.tool} ({self.outcome})"


class Worker(models.Model):
    """A worker process as seen by its own batched heartbeat (the console's Workers view)."""

    name = models.CharField(max_length=255, unique=True)  # the lease_owner it writes on runs
    hostname = models.CharField(max_length=255, blank=True)
    pid = models.PositiveIntegerField(null=True, blank=True)
    concurrency = models.PositiveIntegerField(default=0)
    in_flight = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(auto_now_add=True)
    last_beat_at = models.DateTimeField(null=True, blank=True)
    # When a run's message last reached the process, claimed or not: a live worker with free
    # slots that consumes nothing while runs wait is "connected but not consuming".
    last_consumed_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "agent_run_workers"
        ordering = ["-last_beat_at", "name"]

    def __str__(self):
        return self.name
