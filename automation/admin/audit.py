"""Admin for the audit trail: read-only, scoped to the organizations an owner owns."""

from django.contrib import admin

from agentpress.orgs.admin import OrgScopedAdmin, owner_admin_site
from automation.models import AuditEntry


@admin.register(AuditEntry, site=owner_admin_site)
class AuditEntryAdmin(OrgScopedAdmin):
    list_display = ["at", "organization", "actor", "verb", "target_type", "target_id"]
    list_filter = ["verb", "target_type"]
    search_fields = ["target_id", "actor__username"]
    list_select_related = ["organization", "actor"]
    date_hierarchy = "at"
    fields = ["at", "organization", "actor", "verb", "target_type", "target_id", "detail"]
    readonly_fields = fields
    show_full_result_count = False

    # The trail is written by the services only; nobody edits or removes history here.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
