from django.conf import settings
from django.db import models


class AuditEntry(models.Model):
    """Who did what to which automation row, and when: one line per person-initiated change.

    Written by the services (never by views), so the API, the console and the admin all
    leave the same trail. The target is named by type and id rather than a foreign key so
    an entry outlives the row it describes.
    """

    organization = models.ForeignKey(
        "orgs.Organization", on_delete=models.CASCADE, related_name="audit_entries"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="automation_audit_entries",
    )
    verb = models.CharField(max_length=32)
    target_type = models.CharField(max_length=32)
    target_id = models.CharField(max_length=64)
    detail = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(db_index=True)

    class Meta:
        db_table = "automation_audit"
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["organization", "-at"], name="audit_org_at"),
            models.Index(fields=["target_type", "target_id"], name="audit_target"),
        ]

    def __str__(self):
        return f"{self.actor or 'system'} {self.verb} {self.target_type} {self.target_id}"
