from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q

from automation.states import Cadence, OverlapPolicy


class Schedule(models.Model):
    """Recurring or one-off agent work, fired by ``fire_due_schedules`` (DESIGN §5)."""

    organization = models.ForeignKey("orgs.Organization", on_delete=models.CASCADE, related_name="schedules")
    agent = models.ForeignKey("agents.Agent", on_delete=models.CASCADE, related_name="schedules")
    name = models.CharField(max_length=200)
    cadence = models.CharField(max_length=16, choices=Cadence.choices)
    time_of_day = models.TimeField(null=True, blank=True)
    weekdays = models.JSONField(default=list, blank=True, help_text='For example ["mon", "wed"].')
    interval_minutes = models.PositiveIntegerField(null=True, blank=True)
    run_at = models.DateTimeField(null=True, blank=True)
    cron_expression = models.CharField(max_length=120, blank=True)
    timezone = models.CharField(max_length=64, default="UTC")
    instructions = models.TextField(help_text="The prompt of each attempt.")
    run_as = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="agent_schedules"
    )
    enabled = models.BooleanField(default=True)
    next_run_at = models.DateTimeField(null=True, blank=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    catchup_window = models.DurationField(default=timedelta(hours=1))
    overlap_policy = models.CharField(
        max_length=16, choices=OverlapPolicy.choices, default=OverlapPolicy.SKIP
    )

    missed_count = models.PositiveIntegerField(default=0)
    last_missed_at = models.DateTimeField(null=True, blank=True)
    skipped_count = models.PositiveIntegerField(default=0)
    buffered_slot = models.DateTimeField(
        null=True, blank=True, help_text="A slot kept waiting by the buffer_one overlap policy."
    )
    blocked_reason = models.CharField(
        max_length=300, blank=True, help_text="Why the schedule did not fire at its last due time."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "agent_run_schedules"
        ordering = ["name", "id"]
        indexes = [
            # fire_due_schedules reads only enabled rows by due time: cost follows due rows.
            models.Index(fields=["next_run_at"], condition=Q(enabled=True), name="schedules_due"),
            models.Index(fields=["organization", "agent"], name="schedules_org_agent"),
            models.Index(fields=["organization", "run_as"], name="schedules_org_run_as"),
        ]

    def __str__(self):
        return self.name

    @property
    def context_key(self) -> str:
        return f"schedule:{self.pk}"
