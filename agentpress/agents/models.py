from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from agentpress.agents.runtime import endpoints


class Agent(models.Model):
    organization = models.ForeignKey("orgs.Organization", on_delete=models.CASCADE, related_name="agents")
    name = models.CharField(max_length=200)
    instructions = models.TextField(blank=True)
    runtime = models.CharField(
        max_length=32, default="scripted", choices=[("scripted", "Scripted"), ("openai", "OpenAI-compatible")]
    )
    runtime_config = models.JSONField(default=dict, blank=True)
    scheduled_runs_enabled = models.BooleanField("Scheduled runs", default=False)
    self_reschedule_enabled = models.BooleanField("Self-reschedule", default=False)
    enabled = models.BooleanField(default=True)
    # Tools the agent may call (names from the tool registry); empty list: the defaults.
    tools = models.JSONField(default=list, blank=True)
    # Admission (DESIGN §7a): empty means the AUTOMATION_MAX_CONCURRENT_RUNS_PER_AGENT default.
    max_concurrent_runs = models.PositiveIntegerField(null=True, blank=True)
    daily_run_limit = models.PositiveIntegerField(null=True, blank=True)
    daily_token_limit = models.PositiveBigIntegerField(null=True, blank=True)
    daily_cost_limit = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    max_tokens_per_run = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def clean(self):
        problem = endpoints.config_problem(self.runtime, self.runtime_config)
        if problem:
            raise ValidationError({"runtime_config": problem})


class Thread(models.Model):
    """A conversation."""

    organization = models.ForeignKey("orgs.Organization", on_delete=models.CASCADE, related_name="threads")
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="threads")
    title = models.CharField(max_length=300, blank=True)
    context_type = models.CharField(max_length=64, blank=True)
    context_key = models.CharField(max_length=255, blank=True)
    # Whose work this conversation is: every run, follow-up and inbound event on it runs as
    # this user, and a member reads only their own threads (automation/scope.py). Empty for
    # a thread made outside automation work: only owners and admins read it, nothing joins it.
    run_as = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["organization", "agent", "context_type", "context_key", "-created_at"])
        ]

    def __str__(self):
        return self.title or f"Thread {self.pk}"


class MessageRole(models.TextChoices):
    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"
    TOOL = "tool"
    EVENT = "event"


INBOUND_ROLES = (MessageRole.USER, MessageRole.EVENT)


class Message(models.Model):
    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="messages")
    run = models.ForeignKey(
        "automation.AgentRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="messages"
    )
    role = models.CharField(max_length=16, choices=MessageRole.choices)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    content = models.TextField(blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["thread", "role", "created_at"])]

    def __str__(self):
        return f"{self.role}: {self.content[:40]}"
