from django.db import models


class OutlookSubscription(models.Model):
    """The Microsoft Graph subscription that an Outlook action keeps alive (DESIGN §7a).

    One row per Outlook action. The mailbox is set by a platform operator: the Graph app
    registration is the platform's, so which mailbox an organization may read is theirs to grant.
    """

    class Status(models.TextChoices):
        UNCONFIGURED = "unconfigured", "Not configured"
        PENDING = "pending", "Being created"
        ACTIVE = "active", "Active"
        FAILING = "failing", "Failing (retrying)"
        REMOVED = "removed", "Removed"

    action = models.OneToOneField(
        "automation.Action", on_delete=models.CASCADE, related_name="outlook_subscription"
    )
    organization = models.ForeignKey("orgs.Organization", on_delete=models.CASCADE, related_name="+")
    mailbox = models.CharField(
        max_length=254, blank=True, help_text="User id or address of the mailbox, e.g. support@contoso.com."
    )
    folder = models.CharField(max_length=100, default="inbox", help_text="Well-known name or folder id.")
    graph_id = models.CharField(max_length=100, blank=True, help_text="The Graph subscription id.")
    resource = models.CharField(max_length=400, blank=True)
    change_types = models.CharField(max_length=64, default="created")
    client_state_digest = models.CharField(
        max_length=64,
        blank=True,
        help_text="SHA-256 of the clientState it was made with; a new secret recreates it.",
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.UNCONFIGURED)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_renewed_at = models.DateTimeField(null=True, blank=True)
    last_notification_at = models.DateTimeField(null=True, blank=True)
    last_resync_at = models.DateTimeField(null=True, blank=True)
    resync_count = models.PositiveIntegerField(default=0)
    delta_link = models.TextField(blank=True)
    baseline_at = models.DateTimeField(
        null=True, blank=True, help_text="Mail received before the first subscription is never taken for new."
    )
    last_error = models.TextField(blank=True)
    failure_count = models.PositiveIntegerField(default=0, help_text="Consecutive failed Graph calls.")
    renewal_failures = models.PositiveIntegerField(default=0, help_text="Failed renewals, all time.")
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="Backoff: not retried before.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "outlook_subscriptions"
        ordering = ["expires_at", "id"]
        indexes = [models.Index(fields=["status", "expires_at"], name="outlook_subscriptions_due")]

    def __str__(self):
        return f"{self.mailbox or 'unconfigured'} ({self.get_status_display()})"
