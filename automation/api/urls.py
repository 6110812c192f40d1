from django.urls import path

from automation.api import capacity, follow_up_refusals, follow_ups, provider_events, runs, schedules, usage

org = "orgs/<slug:org_slug>/"

urlpatterns = [
    path(f"{org}agent-runs", runs.AgentRunListView.as_view(), name="api-runs"),
    path(f"{org}agent-runs/<str:run_id>", runs.AgentRunDetailView.as_view(), name="api-run-detail"),
    path(f"{org}agent-runs/<str:run_id>/cancel", runs.AgentRunCancelView.as_view(), name="api-run-cancel"),
    path(f"{org}agent-runs/<str:run_id>/retry", runs.AgentRunRetryView.as_view(), name="api-run-retry"),
    *schedules.urlpatterns,
    *follow_ups.urlpatterns,
    *follow_up_refusals.urlpatterns,
    *provider_events.urlpatterns,
    *capacity.urlpatterns,
    *usage.urlpatterns,
]
