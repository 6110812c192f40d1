"""Admin for the audit trail: read-only, scoped to the organizations an owner owns."""

from django.contrib import admin

from agentpress.orgs.admin import OrgScopedAdmin, owner_admin_site
from automation.models import AuditEntry
from automation.services.audit import audit_record


class AuditedAdminMixin:
    """Edits and deletions made in the admin leave the same trail as the console's and the API's."""

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if change and form.changed_data:
            audit_record(
                actor=request.user,
                organization=obj.organization,
                verb="admin_edited",
                target=obj,
                fields=sorted(form.changed_data),
            )

    def delete_model(self, request, obj):
        audit_record(actor=request.user, organization=obj.organization, verb="admin_deleted", target=obj)
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset.select_related("organization"):
            audit_record(actor=request.user, organization=obj.organization, verb="admin_deleted", target=obj)
        super().delete_queryset(request, queryset)


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
