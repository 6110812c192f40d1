"""Admin for inbound actions and the deliveries they received (owners see their orgs')."""

from django import forms
from django.contrib import admin, messages
from django.urls import reverse

from agentpress.orgs.admin import OrgScopedAdmin, owner_admin_site
from agentpress.orgs.models import Membership
from automation.admin.outlook import delete_remote_on_commit, expires_in, sync_on_commit
from automation.models import Action, OutlookSubscription, ProviderEvent
from automation.models.provider_events import new_signing_secret
from automation.services.outlook import subscription_for


class ActionForm(forms.ModelForm):
    class Meta:
        model = Action
        # no signing_secret: it is generated on creation and shown once, never edited by hand
        fields = [
            "organization", "agent", "name", "provider", "enabled", "run_as", "instructions",
            "context_type", "context_key_pointer", "debounce_seconds",
        ]  # fmt: skip

    def clean(self):
        data = super().clean()
        org, agent, run_as = data.get("organization"), data.get("agent"), data.get("run_as")
        if org and agent and agent.organization_id != org.pk:
            self.add_error("agent", "This agent belongs to another organization.")
        if org and run_as and not Membership.objects.filter(organization=org, user=run_as).exists():
            self.add_error("run_as", "Not a member of this organization.")
        return data


@admin.register(Action, site=owner_admin_site)
class ActionAdmin(OrgScopedAdmin):
    form = ActionForm
    list_display = [
        "name",
        "organization",
        "agent",
        "provider",
        "enabled",
        "run_as",
        "debounce_seconds",
        "hook_path",
    ]
    list_filter = ["provider", "enabled"]
    search_fields = ["name", "id"]
    list_select_related = ["organization", "agent", "run_as"]
    readonly_fields = ["id", "hook_path", "secrets_held", "outlook_health", "created_at"]
    actions = ["rotate_secret"]

    @admin.display(description="Hook URL path")
    def hook_path(self, action):
        return reverse("action-hook", args=[action.pk]) if action.pk else "—"

    @admin.display(description="Signing secrets")
    def secrets_held(self, action):
        count = len(action.signing_secret.split())
        return f"{count} secret(s) configured; a secret is only shown when it is created."

    @admin.display(description="Outlook subscription")
    def outlook_health(self, action):
        subscription = OutlookSubscription.objects.filter(action_id=action.pk).first()
        if subscription is None:
            return "—"
        return (
            f"{subscription.get_status_display()}, expires in {expires_in(subscription)}, "
            f"{subscription.resync_count} resync(s){'; ' + subscription.last_error if subscription.last_error else ''}"
        )

    def save_model(self, request, obj, form, change):
        if obj.provider == Action.Provider.OUTLOOK:
            obj.context_type, obj.context_key_pointer = "email_thread", ""
        super().save_model(request, obj, form, change)
        if obj.provider == Action.Provider.OUTLOOK:
            subscription_for(obj)
            sync_on_commit(obj.pk)  # enabling creates the Graph subscription, disabling removes it
        if not change:
            self._show_secret(request, obj, obj.signing_secret)

    def delete_model(self, request, obj):
        self.delete_queryset(request, Action.objects.filter(pk=obj.pk))

    def delete_queryset(self, request, queryset):
        delete_remote_on_commit(OutlookSubscription.objects.filter(action__in=queryset))
        super().delete_queryset(request, queryset)

    @admin.action(description="Rotate the signing secret (the previous one keeps working)")
    def rotate_secret(self, request, queryset):
        for action in queryset:
            secret = new_signing_secret()
            # keep the newest previous secret so senders can switch over without failed deliveries
            action.signing_secret = " ".join([secret, *action.signing_secret.split()[:1]])
            action.save(update_fields=["signing_secret"])
            if action.provider == Action.Provider.OUTLOOK:
                sync_on_commit(action.pk)  # Graph keeps a clientState per subscription: recreate it
            self._show_secret(request, action, secret)

    def _show_secret(self, request, action, secret):
        self.message_user(
            request,
            f"Signing secret of “{action.name}” (shown once, copy it now): {secret} — "
            f"hook URL: {request.build_absolute_uri(reverse('action-hook', args=[action.pk]))}",
            messages.WARNING,
        )


@admin.register(ProviderEvent, site=owner_admin_site)
class ProviderEventAdmin(OrgScopedAdmin):
    list_display = [
        "event_id",
        "action",
        "agent",
        "status",
        "context_key",
        "delivery_count",
        "run",
        "received_at",
    ]
    list_filter = ["status", "action__provider"]
    search_fields = ["event_id", "context_key", "reason"]
    list_select_related = ["action", "agent", "run"]
    date_hierarchy = "received_at"
    show_full_result_count = False
    readonly_fields = [f.name for f in ProviderEvent._meta.fields]

    def has_add_permission(self, request):
        return False  # deliveries arrive through the hook endpoint only

    def has_change_permission(self, request, obj=None):
        return False
