import base64
import secrets
import uuid

from django.conf import settings
from django.db import models

from automation.states import ProviderEventStatus


def new_signing_secret() -> str:
    # Standard Webhooks secrets are standard base64 (other implementations decode them so)
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


class Action(models.Model):
    """A configured inbound trigger for an agent (DESIGN §7)."""

    class Provider(models.TextChoices):
        WEBHOOK = "webhook", "Signed webhook"
        OUTLOOK = "outlook", "Outlook (Microsoft Graph)"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey("orgs.Organization", on_delete=models.CASCADE, related_name="actions")
    agent = models.ForeignKey("agents.Agent", on_delete=models.CASCADE, related_name="actions")
    name = models.CharField(max_length=200)
    provider = models.CharField(max_length=16, choices=Provider.choices, default=Provider.WEBHOOK)
    enabled = models.BooleanField(default=True)
    signing_secret = models.TextField(
        default=new_signing_secret,
        help_text="whsec_… secret; several secrets separated by spaces are accepted during rotation.",
    )
    run_as = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="agent_actions"
    )
    instructions = models.TextField(blank=True)
    context_type = models.CharField(max_length=64, default="webhook")
    context_key_pointer = models.CharField(
        max_length=200, blank=True, help_text="JSON pointer, e.g. /ticket/id"
    )
    debounce_seconds = models.PositiveIntegerField(null=True, blank=True)
    reply_url = models.URLField(
        max_length=500, blank=True, help_text="Where the send_reply tool POSTs replies (signed)."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "agent_actions"
        ordering = ["name"]

    def __str__(self):
        return self.name


class ProviderEvent(models.Model):
    """One accepted delivery from a provider."""

    organization = models.ForeignKey(
        "orgs.Organization", on_delete=models.CASCADE, related_name="provider_events"
    )
    action = models.ForeignKey(Action, on_delete=models.CASCADE, related_name="events")
    agent = models.ForeignKey("agents.Agent", on_delete=models.CASCADE, related_name="provider_events")
    event_id = models.CharField(max_length=255)
    context_type = models.CharField(max_length=64, blank=True)
    context_key = models.CharField(max_length=255, blank=True)
    payload = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=ProviderEventStatus.choices)
    reason = models.CharField(max_length=300, blank=True)
    run = models.ForeignKey(
        "automation.AgentRun",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="provider_events",
    )
    deferred_behind = models.ForeignKey(
        "automation.AgentRun",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="deferred_events",
    )
    delivery_count = models.PositiveIntegerField(
        default=1, help_text="Repeated deliveries answer 2xx and start nothing."
    )
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "provider_events"
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["action", "event_id"], name="provider_events_unique_delivery")
        ]
        indexes = [
            models.Index(fields=["organization", "-received_at"], name="provider_events_org"),
            models.Index(fields=["organization", "status"], name="provider_events_org_status"),
            models.Index(
                fields=["organization", "agent", "context_type", "context_key"],
                name="provider_events_context",
            ),
            models.Index(fields=["deferred_behind"], name="provider_events_deferred"),
        ]

    def __str__(self):
        return f"{self.action} event {self.event_id} ({self.status})"


class RefusedDelivery(models.Model):
    """A delivery refused before it was stored as an event (bounded log; never the body)."""

    organization = models.ForeignKey(
        "orgs.Organization", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    action = models.ForeignKey(
        Action, null=True, blank=True, on_delete=models.CASCADE, related_name="refusals"
    )
    action_ref = models.CharField(max_length=100, blank=True)  # the id in the URL, known or not
    reason = models.CharField(max_length=64)  # signature, timestamp, size, unknown_action, malformed, …
    detail = models.CharField(max_length=300, blank=True)
    source_address = models.GenericIPAddressField(null=True, blank=True)
    body_size = models.PositiveIntegerField(default=0)
    status_code = models.PositiveIntegerField(default=400)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "provider_refused_deliveries"
        ordering = ["-received_at", "-id"]
        indexes = [
            models.Index(fields=["organization", "-received_at"], name="refused_org_received"),
            models.Index(fields=["received_at"], name="refused_received"),
        ]

    def __str__(self):
        return f"refused ({self.reason}) at {self.received_at:%Y-%m-%d %H:%M:%S}"
