"""Admin of Outlook subscriptions: their health for org owners, the mailbox for operators.

The mailbox is editable by superusers only: the Graph app registration is the platform's, and
it can read any mailbox of the tenant, so which mailbox an organization reads is the operator's
grant, not the organization's choice.
"""

import re

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.utils import timezone

from agentpress.orgs.admin import OrgScopedAdmin, owner_admin_site
from automation import tasks
from automation.models import OutlookSubscription

MAILBOX = re.compile(
    r"^([A-Za-z0-9._%+'-]+@[A-Za-z0-9.-]+|[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12})$"
)
FOLDER = re.compile(r"^[A-Za-z0-9=_-]{1,100}$")
HEALTH_FIELDS = [
    "status", "graph_id", "resource", "change_types", "expires_at", "expires_in", "last_renewed_at",
    "last_notification_at", "last_resync_at", "resync_count", "renewal_failures", "failure_count",
    "next_attempt_at", "last_error",
]  # fmt: skip


def sync_on_commit(action_id) -> None:
    transaction.on_commit(lambda: tasks.outlook_sync_subscription.delay(str(action_id)))


def expires_in(subscription: OutlookSubscription) -> str:
    if subscription.expires_at is None:
        return "—"
    seconds = (subscription.expires_at - timezone.now()).total_seconds()
    if seconds <= 0:
        return "expired"
    hours, minutes = divmod(int(seconds) // 60, 60)
    return f"{hours} h {minutes} min"


def delete_remote_on_commit(queryset) -> None:
    for graph_id in list(queryset.exclude(graph_id="").values_list("graph_id", flat=True)):
        transaction.on_commit(lambda graph_id=graph_id: tasks.outlook_delete_subscription.delay(graph_id))


class OutlookSubscriptionForm(forms.ModelForm):
    class Meta:
        model = OutlookSubscription
        fields = ["mailbox", "folder"]

    def clean_mailbox(self):
        mailbox = self.cleaned_data["mailbox"].strip()
        if mailbox and not MAILBOX.match(mailbox):
            raise forms.ValidationError("A mailbox is an e-mail address or a user id (GUID).")
        return mailbox

    def clean_folder(self):
        folder = self.cleaned_data["folder"].strip()
        if not FOLDER.match(folder):
            raise forms.ValidationError("A well-known folder name (inbox) or a folder id.")
        return folder


@admin.register(OutlookSubscription, site=owner_admin_site)
class OutlookSubscriptionAdmin(OrgScopedAdmin):
    form = OutlookSubscriptionForm
    list_display = [
        "action", "organization", "mailbox", "status", "expires_in", "last_renewed_at",
        "last_notification_at", "resync_count", "renewal_failures", "short_error",
    ]  # fmt: skip
    list_filter = ["status"]
    search_fields = ["mailbox", "graph_id", "action__name"]
    list_select_related = ["action", "organization"]
    actions = ["sync_now"]

    def get_fields(self, request, obj=None):
        return ["action", "mailbox", "folder", *HEALTH_FIELDS]

    def get_readonly_fields(self, request, obj=None):
        fixed = ["action", *HEALTH_FIELDS]
        return fixed if request.user.is_superuser else [*fixed, "mailbox", "folder"]

    @admin.display(description="Expires in")
    def expires_in(self, subscription):
        return expires_in(subscription)

    @admin.display(description="Last error")
    def short_error(self, subscription):
        return (
            (subscription.last_error[:80] + "…")
            if len(subscription.last_error) > 80
            else subscription.last_error
        )

    def has_add_permission(self, request):
        return False  # each Outlook action has its row

    def delete_model(self, request, obj):
        self.delete_queryset(request, OutlookSubscription.objects.filter(pk=obj.pk))

    def delete_queryset(self, request, queryset):
        """Deleting the row (or its action) deletes the Graph subscription too."""
        delete_remote_on_commit(queryset)
        super().delete_queryset(request, queryset)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        sync_on_commit(obj.action_id)

    @admin.action(description="Create, renew or remove now (in line with the action)")
    def sync_now(self, request, queryset):
        for subscription in queryset:
            sync_on_commit(subscription.action_id)
        self.message_user(request, f"{queryset.count()} subscription(s) queued for an update.", messages.INFO)
