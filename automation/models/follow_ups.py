from django.conf import settings
from django.db import models
from django.db.models import Q

from automation.states import FollowUpStatus


class FollowUp(models.Model):
    """Work an agent queued for itself; becomes a run when due (DESIGN §6)."""

    organization = models.ForeignKey("orgs.Organization", on_delete=models.CASCADE, related_name="follow_ups")
    agent = models.ForeignKey("agents.Agent", on_delete=models.CASCADE, related_name="follow_ups")
    run_as = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="agent_follow_ups"
    )
    previous_run = models.ForeignKey(
        "automation.AgentRun",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="scheduled_follow_ups",
    )
    thread = models.ForeignKey(
        "agents.Thread", null=True, blank=True, on_delete=models.SET_NULL, related_name="follow_ups"
    )
    context_type = models.CharField(max_length=64, blank=True)
    context_key = models.CharField(max_length=255, blank=True)
    continuation_prompt = models.TextField()
    stop_conditions = models.JSONField(default=list, blank=True)
    scheduled_for = models.DateTimeField()
    status = models.CharField(max_length=16, choices=FollowUpStatus.choices, default=FollowUpStatus.PENDING)
    claimed_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    cancel_reason = models.TextField(blank=True)
    run = models.ForeignKey(
        "automation.AgentRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "agent_run_follow_ups"
        ordering = ["scheduled_for", "id"]
        indexes = [
            models.Index(
                fields=["scheduled_for"], condition=Q(status=FollowUpStatus.PENDING), name="follow_ups_due"
            ),
            models.Index(fields=["organization", "status", "scheduled_for"], name="follow_ups_org_status"),
            # The API lists by (-scheduled_for, -id): these serve it without a sort.
            models.Index(fields=["organization", "-scheduled_for", "-id"], name="follow_ups_org_scheduled"),
            models.Index(
                fields=["organization", "run_as", "-scheduled_for", "-id"], name="follow_ups_org_run_as"
            ),
            models.Index(fields=["organization", "context_type", "context_key"], name="follow_ups_context"),
            models.Index(fields=["thread"], name="follow_ups_thread"),
        ]

    def __str__(self):
        return f"Follow-up {self.pk} ({self.status})"


class FollowUpRefusal(models.Model):
    """A ``schedule_follow_up`` request refused back to the agent, kept as a record."""

    organization = models.ForeignKey("orgs.Organization", on_delete=models.CASCADE, related_name="+")
    agent = models.ForeignKey("agents.Agent", on_delete=models.CASCADE, related_name="+")
    run = models.ForeignKey(
        "automation.AgentRun",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="follow_up_refusals",
    )
    run_as = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    thread = models.ForeignKey(
        "agents.Thread", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    context_type = models.CharField(max_length=64, blank=True)
    context_key = models.CharField(max_length=255, blank=True)
    code = models.CharField(max_length=64)  # delay_out_of_bounds, capability_off, chain_too_long, …
    reason = models.TextField()
    arguments = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "agent_run_follow_up_refusals"
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["organization", "-created_at"], name="fu_refusals_org_created"),
            models.Index(fields=["organization", "run_as", "-created_at"], name="fu_refusals_org_run_as"),
        ]

    def __str__(self):
        return f"refused ({self.code})"
