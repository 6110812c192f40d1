"""Agents → Monitor → Automation Runs: summary cards, the filtered runs table and the detail panel."""

import uuid
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseStopPolling

from agentpress.orgs.permissions import Access
from automation import selectors
from automation.instants import in_utc
from automation.services import capacity as capacity_services
from automation.services.runs import ContextBusy, retry_run
from automation.services.settlement import cancel_run
from automation.states import RUN_ACTIVE, InvalidTransition, RunStatus
from monitor.access import console_view
from monitor.filters import RunFilterForm
from monitor.pagination import paginate

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
POLL_SECONDS = 3
CONTEXT_RUNS = 10  # "other runs on this context" in the panel, newest first
# With nothing pending or running the fast poll stops; this slow check only asks whether
# a run arrived since the page was drawn, and answers 204 (nothing to swap) when none did.
IDLE_POLL_SECONDS = 30


def runs_url(access: Access, run_id=None) -> str:
    kwargs = {"org_slug": access.organization.slug}
    if run_id is None:
        return reverse("monitor:runs", kwargs=kwargs)
    return reverse("monitor:run-detail", kwargs={**kwargs, "run_id": run_id})


def summary_cards(access: Access, summary: dict, params: list, active_status: str) -> list[dict]:
    """The eight cards; each is a link that applies its filter (keeping the others)."""
    base = [(k, v) for k, v in params if k not in ("status", "cursor")]
    slug = access.organization.slug
    cards = [
        {
            "key": status.value,
            "label": status.label,
            "count": summary[status.value],
            "href": f"{runs_url(access)}?{urlencode([*base, ('status', status.value)])}",
            "active": active_status == status.value,
            "in_place": True,
        }
        for status in RunStatus
    ]
    cards.append(
        {
            "key": "scheduled",
            "label": "Scheduled",
            "count": summary["scheduled"],
            "href": reverse("monitor:schedules", kwargs={"org_slug": slug}),
            "active": False,
        }
    )
    cards.append(
        {
            "key": "follow-ups",
            "label": "Active follow-ups",
            "count": summary["active_follow_ups"],
            "href": reverse("monitor:follow-ups", kwargs={"org_slug": slug}),
            "active": False,
        }
    )
    return cards


def _page_size(request) -> int:
    try:
        return min(max(int(request.GET.get("limit", PAGE_SIZE)), 1), MAX_PAGE_SIZE)
    except ValueError:
        return PAGE_SIZE


def parse_uuids(values) -> list[uuid.UUID]:
    out = []
    for value in values:
        try:
            out.append(uuid.UUID(value))
        except ValueError:
            continue
    return out


def run_detail(access: Access, run_id):
    """The run with everything its panel shows, in a fixed number of queries; 404 outside scope."""
    run = (
        selectors.runs_list(access)
        .select_related("previous_run", "retry_of", "follow_up")
        .filter(pk=run_id)
        .first()
    )
    if run is None:
        raise Http404("No such run.")
    context_runs = []
    if run.context_key:
        context_runs = list(
            selectors.runs_for(access)
            .filter(agent_id=run.agent_id, context_type=run.context_type, context_key=run.context_key)
            .exclude(pk=run.pk)
            .order_by("-created_at", "-id")[:CONTEXT_RUNS]
        )
    return {
        "detail": run,
        "context_runs": context_runs,
        "events": list(run.events.all()),
        "retries": list(run.retries.order_by("created_at")),
        "next_runs": list(run.next_runs.order_by("created_at")),
        "scheduled_follow_ups": list(run.scheduled_follow_ups.order_by("scheduled_for")),
        "started_by_events": list(run.provider_events.select_related("action")),
        "deferred_events": list(run.deferred_events.select_related("action")),
    }


def _since(request):
    try:
        value = parse_datetime(request.GET.get("since", ""))
        return in_utc(value) if value is not None and value.tzinfo is not None else None
    except (ValueError, ValidationError):  # not a date, or one UTC cannot hold: look from now
        return None


def _live_update(request, access: Access, form, summary):
    """The polled cards plus the rows that were active when the page last looked.

    Runs that arrived since the page was drawn refresh the table in place (``runs-changed``)
    on its first page, and are announced ("3 new — show") on a later one. With nothing
    active, nothing new and no row left to settle the answer is 204: the idle check swaps nothing.
    """
    since = _since(request)
    new_runs = form.apply(selectors.runs_for(access)).filter(created_at__gt=since).count() if since else 0
    context = _base_context(access, form, summary)
    live_ids = parse_uuids(request.GET.getlist("live"))[:MAX_PAGE_SIZE]
    if not context["polling"] and not new_runs and not live_ids:
        return HttpResponse(status=204)
    rows = list(selectors.runs_list(access).filter(pk__in=live_ids)) if live_ids else []
    cursor = request.GET.get("cursor", "")
    context |= {
        "live_rows": rows,
        "new_runs": new_runs if cursor else 0,
        "cursor": cursor,
        "since": (since or timezone.now()).isoformat(),
    }
    response = render(request, "monitor/runs.html#live-update", context)
    if new_runs and not cursor:
        response["HX-Trigger"] = "runs-changed"
    return response


def _base_context(access: Access, form, summary) -> dict:
    params = form.params()
    return {
        "access": access,
        "organization": access.organization,
        "tab": "runs",
        "form": form,
        "filter_params": params,
        "summary": summary,
        "cards": summary_cards(access, summary, params, form.cleaned_data.get("status") or ""),
        "polling": summary[RunStatus.PENDING] + summary[RunStatus.RUNNING] > 0,
        "poll_seconds": POLL_SECONDS,
        "idle_poll_seconds": IDLE_POLL_SECONDS,
        "runs_url": runs_url(access),
        "active_statuses": RUN_ACTIVE,
        "org_capacity": capacity_services.org_capacity(access.organization),
    }


def _matching_count(form: RunFilterForm, summary: dict, matching, page) -> int:
    """How many runs "all N matching" means; the summary already counted them when at most
    the status filter narrows, which spares a count over the whole org."""
    if not page.next_cursor and not page.previous_cursor:
        return len(page.rows)
    if {name for name, _ in form.params()} <= {"status"}:
        status = form.cleaned_data.get("status")
        return summary[status] if status else sum(summary[s] for s in RunStatus.values)
    return matching.count()


@console_view()
def runs_page(request, access: Access, run_id=None):
    form = RunFilterForm(request.GET, access=access)
    drawn_at = timezone.now()
    summary = selectors.runs_summary(access)
    target = request.htmx.target if request.htmx else None
    if target == "summary-cards" and request.htmx.trigger == "summary-cards":
        return _live_update(request, access, form, summary)

    context = _base_context(access, form, summary) | {"since": drawn_at.isoformat()}
    if run_id is not None:
        context.update(run_detail(access, run_id))
    if target == "detail-panel":
        response = render(request, "monitor/runs.html#run-panel", context)
        if request.htmx.trigger == "detail-panel" and not context["detail"].is_active:
            response.status_code = HttpResponseStopPolling.status_code
        return response

    matching = form.apply(selectors.runs_list(access))
    page = paginate(
        matching,
        cursor=request.GET.get("cursor"),
        size=_page_size(request),
        key="created_at",
        descending=True,
    )
    if page.notice:
        messages.warning(request, page.notice)
    context.update(
        page=page,
        rows=page.rows,
        matching_count=_matching_count(form, summary, matching, page),
        region_query=request.GET.urlencode(),
        cursor=request.GET.get("cursor", ""),
        # A filter, a card or the pager closes the panel; the table refreshing itself does not.
        close_panel=bool(request.htmx) and request.htmx.trigger != "runs-region",
        page_params=[*context["filter_params"], *(("limit", v) for v in request.GET.getlist("limit")[:1])],
    )
    if target == "runs-region":
        return render(request, "monitor/runs.html#runs-region", context)
    return render(request, "monitor/runs.html", context)


def _after_run_action(request, access: Access, run_id):
    """htmx: the refreshed panel (and a nudge for the table); otherwise back to the run's page."""
    if request.htmx:
        form = RunFilterForm(request.GET, access=access)
        context = _base_context(access, form, selectors.runs_summary(access)) | run_detail(access, run_id)
        response = render(request, "monitor/runs.html#run-panel", context | {"flash_oob": True})
        response["HX-Trigger"] = "runs-changed"
        response["HX-Push-Url"] = f"{runs_url(access, run_id)}?{request.GET.urlencode()}".rstrip("?")
        return response
    query = request.GET.urlencode()
    return redirect(f"{runs_url(access, run_id)}{'?' + query if query else ''}")


@require_POST
@console_view()
def run_cancel(request, access: Access, run_id):
    if not selectors.runs_for(access).filter(pk=run_id).exists():
        raise Http404("No such run.")
    try:
        cancel_run(run_id=run_id, actor=request.user, reason="cancelled from the monitor")
        messages.success(request, "Run cancelled. A running agent stops at its next heartbeat.")
    except InvalidTransition as exc:
        messages.error(request, f"Not cancelled: {exc}")
    return _after_run_action(request, access, run_id)


@require_POST
@console_view()
def run_retry(request, access: Access, run_id):
    if not selectors.runs_for(access).filter(pk=run_id).exists():
        raise Http404("No such run.")
    try:
        retry = retry_run(run_id=run_id, actor=request.user)
    except (InvalidTransition, ContextBusy) as exc:
        messages.error(request, f"Not retried: {exc}")
        return _after_run_action(request, access, run_id)
    messages.success(request, "Retry queued as a new run; this is it.")
    return _after_run_action(request, access, retry.pk)
