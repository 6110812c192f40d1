from django.contrib import admin

from agentpress.orgs.admin import OrgScopedAdmin, owner_admin_site

from .models import Agent, Message, Thread


@admin.register(Agent, site=owner_admin_site)
class AgentAdmin(OrgScopedAdmin):
    list_display = [
        "name", "organization", "runtime", "scheduled_runs_enabled", "self_reschedule_enabled",
        "max_concurrent_runs",
    ]  # fmt: skip
    list_filter = ["runtime", "scheduled_runs_enabled", "self_reschedule_enabled"]
    search_fields = ["name"]


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    fields = ["created_at", "role", "author", "run", "content"]
    readonly_fields = ["created_at", "run"]
    raw_id_fields = ["author"]


@admin.register(Thread, site=owner_admin_site)
class ThreadAdmin(OrgScopedAdmin):
    list_display = ["__str__", "organization", "agent", "context_type", "context_key", "created_at"]
    search_fields = ["title", "context_key"]
    inlines = [MessageInline]


@admin.register(Message, site=owner_admin_site)
class MessageAdmin(OrgScopedAdmin):
    org_field = "thread__organization"
    list_display = ["thread", "role", "created_at"]
    raw_id_fields = ["thread", "run", "author"]

    def org_id_of(self, obj):
        return obj.thread.organization_id
