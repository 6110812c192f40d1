"""Console pages, mounted at ``orgs/<slug:org_slug>/`` by ``agentpress.urls``."""

from django.urls import path, register_converter

from monitor.views import (
    actions,
    agents,
    audit,
    bulk,
    follow_ups,
    provider_events,
    runs,
    search,
    threads,
    trends,
)


class ShortIdConverter:
    """The start of a run id as the console shows it (hex digits, 6 or more)."""

    regex = "[0-9a-fA-F]{6,31}"

    def to_python(self, value):
        return value

    def to_url(self, value):
        return value


register_converter(ShortIdConverter, "shortid")

app_name = "monitor"

runs_root = "agents/monitor/automation-runs/"

urlpatterns = [
    path(runs_root, runs.runs_page, name="runs"),
    path(f"{runs_root}bulk/", bulk.runs_bulk, name="runs-bulk"),
    path(f"{runs_root}follow-ups/", follow_ups.follow_ups_page, name="follow-ups"),
    path(
        f"{runs_root}follow-ups/<int:follow_up_id>/cancel/",
        follow_ups.follow_up_cancel,
        name="follow-up-cancel",
    ),
    path(f"{runs_root}schedules/", agents.schedules_page, name="schedules"),
    path(f"{runs_root}search/", search.search_page, name="search"),
    path(f"{runs_root}audit/", audit.audit_page, name="audit"),
    path(f"{runs_root}trends/", trends.trends_page, name="trends"),
    path(f"{runs_root}workers/", trends.workers_page, name="workers"),
    path(f"{runs_root}provider-events/", provider_events.provider_events_page, name="provider-events"),
    path(f"{runs_root}<uuid:run_id>/", runs.runs_page, name="run-detail"),
    path(f"{runs_root}<shortid:run_ref>/", search.run_by_short_id, name="run-short"),
    path(f"{runs_root}<uuid:run_id>/cancel/", runs.run_cancel, name="run-cancel"),
    path(f"{runs_root}<uuid:run_id>/retry/", runs.run_retry, name="run-retry"),
    path("threads/<int:thread_id>/", threads.thread_page, name="thread"),
    path("agents/", agents.agents_page, name="agents"),
    path("agents/actions/", actions.actions_page, name="actions"),
    path("agents/actions/<uuid:action_id>/", actions.action_page, name="action"),
    path("agents/<int:agent_id>/capabilities/", agents.capabilities_page, name="capabilities"),
    path("agents/<int:agent_id>/schedules/new/", agents.schedule_new, name="schedule-new"),
    path("agents/<int:agent_id>/schedules/preview/", agents.schedule_preview, name="schedule-preview"),
    path(
        "agents/<int:agent_id>/schedules/<int:schedule_id>/edit/", agents.schedule_edit, name="schedule-edit"
    ),
    path(
        "agents/<int:agent_id>/schedules/<int:schedule_id>/<str:verb>/",
        agents.schedule_command,
        name="schedule-command",
    ),
]
