from functools import cached_property

from django.contrib import admin
from django.core.paginator import Paginator

from agentpress.orgs.admin import OrgScopedAdmin, owner_admin_site
from automation import lookups
from automation.admin.audit import AuditedAdminMixin
from automation.models import AgentRun, RunEvent
from automation.services import runs as run_services
from automation.services.settlement import cancel_run
from automation.states import RUN_TERMINAL, InvalidTransition

RUN_TIMING_FIELDS = [
    "created_at", "not_before", "scheduled_for", "dispatched_at", "started_at", "heartbeat_at",
    "completed_at", "cancelled_at", "lease_owner", "lease_expires_at", "lease_token", "attempt",
]  # fmt: skip


class CappedCountPaginator(Paginator):
    """Counts at most ``CAP`` rows: the changelist of a million runs never counts them all
    (it then reports ``CAP`` runs and that many pages; filters narrow it down). The count is
    unordered: any ``CAP`` rows count the same, and an owner's scope (``organization IN …``)
    would otherwise sort every run of their orgs to count the first ``CAP``."""

    CAP = 10_000

    @cached_property
    def count(self) -> int:
        return self.object_list.order_by()[: self.CAP].count()


class RunEventInline(admin.TabularInline):
    model = RunEvent
    extra = 0
    can_delete = False
    fields = ["at", "kind", "detail"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(AgentRun, site=owner_admin_site)
class AgentRunAdmin(AuditedAdminMixin, OrgScopedAdmin):
    list_display = ["id", "organization", "agent", "run_as", "source", "status", "created_at", "started_at"]
    # Nothing here counts or scans the table: choice filters and the date filter list fixed
    # choices, the paginator caps its count, and the ordering (-created_at, -id) is an index.
    list_filter = ["status", "source", "created_at"]
    show_facets = admin.ShowFacets.NEVER
    paginator = CappedCountPaginator
    list_per_page = 50  # rendering the rows is most of the page's time
    search_fields = ["context_key", "last_error"]  # and a run id or its start: get_search_results
    list_select_related = ["organization", "agent", "run_as"]
    readonly_fields = ["status", *RUN_TIMING_FIELDS, "last_error"]
    raw_id_fields = ["thread", "schedule", "action", "follow_up", "previous_run", "retry_of", "run_as"]
    inlines = [RunEventInline]
    actions = ["cancel_runs", "retry_runs"]
    show_full_result_count = False

    def get_search_results(self, request, queryset, search_term):
        """A run id, or its start as the console shows it (6 or more hex digits), is a range of
        the primary key's index; other terms search the context key and the last error."""
        bounds = lookups.run_id_range(search_term)
        if bounds is not None:
            return queryset.filter(pk__range=bounds), False
        return super().get_search_results(request, queryset, search_term)

    def has_add_permission(self, request):
        return False  # runs start through services (API, schedules, events), never a bare form

    # A finished run is history: it may be read (and retried), not rewritten or removed.
    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and not (obj and obj.status in RUN_TERMINAL)

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and not (obj and obj.status in RUN_TERMINAL)

    def delete_queryset(self, request, queryset):
        super().delete_queryset(request, queryset.exclude(status__in=RUN_TERMINAL))

    @admin.action(description="Cancel selected runs (pending or running)")
    def cancel_runs(self, request, queryset):
        self._apply(
            request,
            queryset,
            lambda run: cancel_run(run_id=run.pk, actor=request.user, reason="admin action"),
            "cancelled",
        )

    @admin.action(description="Retry selected runs (failed, interrupted or cancelled)")
    def retry_runs(self, request, queryset):
        self._apply(
            request,
            queryset,
            lambda run: run_services.retry_run(run_id=run.pk, actor=request.user),
            "retried",
        )

    def _apply(self, request, queryset, change, verb):
        refusals = (InvalidTransition, run_services.ContextBusy)
        self.apply_each(request, queryset, change, noun="run", verb=verb, refusals=refusals)
