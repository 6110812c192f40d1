"""Admin for follow-ups: browse them and cancel the pending ones (through the service)."""

from django.contrib import admin

from agentpress.orgs.admin import OrgScopedAdmin, owner_admin_site
from automation.admin.audit import AuditedAdminMixin
from automation.models import FollowUp
from automation.services import follow_ups as follow_up_services
from automation.states import InvalidTransition


@admin.register(FollowUp, site=owner_admin_site)
class FollowUpAdmin(AuditedAdminMixin, OrgScopedAdmin):
    list_display = ["id", "organization", "agent", "run_as", "status", "scheduled_for", "context_key", "run"]
    list_filter = ["status"]
    search_fields = ["id", "context_key", "continuation_prompt", "cancel_reason"]
    list_select_related = ["organization", "agent", "run_as", "run"]
    date_hierarchy = "scheduled_for"
    # an operator may move a queued follow-up or reword it; the rest is the agent's request and history
    fields = [
        "organization", "agent", "run_as", "status", "scheduled_for", "continuation_prompt", "stop_conditions",
        "thread", "context_type", "context_key", "previous_run", "run", "claimed_at", "completed_at",
        "cancelled_at", "cancel_reason", "last_error", "created_at",
    ]  # fmt: skip
    readonly_fields = [f for f in fields if f not in ("scheduled_for", "continuation_prompt")]
    actions = ["cancel_follow_ups"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False  # follow-ups are scheduled by an agent during a run, never by a bare form

    @admin.action(description="Cancel selected follow-ups (pending only)")
    def cancel_follow_ups(self, request, queryset):
        def cancel(follow_up):
            follow_up_services.cancel_follow_up(
                follow_up_id=follow_up.pk,
                actor=request.user,
                reason=f"Cancelled in the admin by {request.user}.",
            )

        self.apply_each(
            request, queryset, cancel, noun="follow-up", verb="cancelled", refusals=(InvalidTransition,)
        )
