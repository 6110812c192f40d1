"""One search box for the console: a run id (full or short), a thread id, a context key, an event id."""

from urllib.parse import urlencode

from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse

from agentpress.orgs.permissions import Access
from automation import lookups
from monitor.access import console_view


def _only_target(access: Access, found: lookups.SearchResult) -> str | None:
    """Where a search that found exactly one thing goes straight away."""
    if found.total != 1:
        return None
    slug = access.organization.slug
    if found.runs:
        return reverse("monitor:run-detail", kwargs={"org_slug": slug, "run_id": found.runs[0].pk})
    if found.threads:
        return reverse("monitor:thread", kwargs={"org_slug": slug, "thread_id": found.threads[0].pk})
    if found.context_runs:
        run = found.context_runs[0]
        return reverse("monitor:run-detail", kwargs={"org_slug": slug, "run_id": run.pk})
    events_url = reverse("monitor:provider-events", kwargs={"org_slug": slug})
    return f"{events_url}?{urlencode({'event_id': found.events[0].event_id})}"


@console_view()
def search_page(request, access: Access):
    found = lookups.search(access, request.GET.get("q", ""))
    target = _only_target(access, found)
    if target:
        return redirect(target)
    return render(
        request,
        "monitor/search.html",
        {"access": access, "organization": access.organization, "tab": "search", "found": found},
    )


@console_view()
def run_by_short_id(request, access: Access, run_ref: str):
    """``…/automation-runs/3f2a9c1d/``: the run whose id starts so; several → the search page."""
    try:
        run = lookups.run_by_ref(access, run_ref)
    except lookups.AmbiguousRef:
        search_url = reverse("monitor:search", kwargs={"org_slug": access.organization.slug})
        return redirect(f"{search_url}?{urlencode({'q': run_ref})}")
    if run is None:
        raise Http404("No such run.")
    target = reverse("monitor:run-detail", kwargs={"org_slug": access.organization.slug, "run_id": run.pk})
    query = request.GET.urlencode()
    return redirect(f"{target}?{query}" if query else target)
