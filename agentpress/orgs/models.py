from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

MANAGE_ACTIONS = "actions:manage"
# A century: a cutoff that far back is still a date, and nobody needs finished runs longer.
MAX_RETENTION_DAYS = 36_500


class Organization(models.Model):
    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)
    automations_enabled = models.BooleanField(
        "Agent Run Automations",
        default=False,
        help_text="Controls the monitor page, scheduled runs and self-scheduled follow-ups.",
    )
    retention_days = models.PositiveIntegerField(
        default=90,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_RETENTION_DAYS)],
        help_text=f"Finished runs, their timelines and ended follow-ups older than this are deleted "
        f"(1 to {MAX_RETENTION_DAYS} days).",
    )
    timezone = models.CharField(
        max_length=64,
        default="UTC",
        help_text="IANA time zone in which daily budgets and reports are counted.",
    )
    # Admission (DESIGN §7a): empty means the AUTOMATION_MAX_CONCURRENT_RUNS_PER_ORG default.
    max_concurrent_runs = models.PositiveIntegerField(null=True, blank=True)
    # Daily budgets counted in ``timezone``; empty means no limit.
    daily_run_limit = models.PositiveIntegerField(null=True, blank=True)
    daily_token_limit = models.PositiveBigIntegerField(null=True, blank=True)
    daily_cost_limit = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"


class Membership(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    permissions = models.JSONField(default=list, blank=True, help_text='For example ["actions:manage"].')
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "user"], name="membership_unique_user")
        ]

    def __str__(self):
        return f"{self.user} in {self.organization} ({self.role})"
