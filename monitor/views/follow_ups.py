"""The follow-ups tab: work agents queued for themselves, active first, with cancel for pending ones."""

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from agentpress.orgs.permissions import Access
from automation import selectors
from automation.services import follow_ups as follow_up_services
from automation.states import FOLLOW_UP_ACTIVE, FollowUpStatus, InvalidTransition
from monitor.access import console_view
from monitor.pagination import paginate
from monitor.views.runs import PAGE_SIZE

STATUS_GROUPS = {
    "active": ("Active", FOLLOW_UP_ACTIVE),
    "completed": ("Completed", (FollowUpStatus.COMPLETED,)),
    "cancelled": ("Cancelled", (FollowUpStatus.CANCELLED,)),
    "failed": ("Failed", (FollowUpStatus.FAILED,)),
    "all": ("All", None),
    # Not follow-ups: the requests for one that were refused (kept as FollowUpRefusal rows).
    "refused": ("Refused", None),
}


def _group(request) -> str:
    group = request.GET.get("status", "active")
    return group if group in STATUS_GROUPS else "active"


def _follow_ups(access: Access):
    return selectors.follow_ups_for(access).select_related("agent", "run_as", "thread", "previous_run", "run")


def _context(access: Access, group: str) -> dict:
    return {
        "access": access,
        "organization": access.organization,
        "tab": "follow-ups",
        "group": group,
        "groups": [(key, label) for key, (label, _) in STATUS_GROUPS.items()],
        "follow_ups_url": reverse("monitor:follow-ups", kwargs={"org_slug": access.organization.slug}),
    }


@console_view()
def follow_ups_page(request, access: Access):
    group = _group(request)
    if group == "refused":
        qs = selectors.follow_up_refusals_for(access).select_related("agent", "run_as", "run")
        page = paginate(
            qs, cursor=request.GET.get("cursor"), size=PAGE_SIZE, key="created_at", descending=True
        )
    else:
        qs = _follow_ups(access)
        statuses = STATUS_GROUPS[group][1]
        if statuses is not None:
            qs = qs.filter(status__in=statuses)
        # Queued work reads soonest first; history reads newest first.
        page = paginate(
            qs,
            cursor=request.GET.get("cursor"),
            size=PAGE_SIZE,
            key="scheduled_for",
            descending=group != "active",
        )
    if page.notice:
        messages.warning(request, page.notice)
    context = _context(access, group) | {"page": page, "rows": page.rows}
    if request.htmx and request.htmx.target == "follow-ups-region":
        return render(request, "monitor/follow_ups.html#follow-ups-region", context)
    return render(request, "monitor/follow_ups.html", context)


@require_POST
@console_view()
def follow_up_cancel(request, access: Access, follow_up_id: int):
    if not selectors.follow_ups_for(access).filter(pk=follow_up_id).exists():
        raise Http404("No such follow-up.")
    try:
        follow_up_services.cancel_follow_up(
            follow_up_id=follow_up_id,
            actor=request.user,
            reason=f"cancelled from the monitor by {request.user}",
        )
        messages.success(request, f"Follow-up #{follow_up_id} cancelled; it will not run.")
    except InvalidTransition as exc:
        messages.error(request, f"Follow-up #{follow_up_id} was not cancelled: {exc}")
    group = _group(request)
    if request.htmx:
        context = _context(access, group) | {
            "fu": _follow_ups(access).get(pk=follow_up_id),
            "flash_oob": True,
        }
        return render(request, "monitor/follow_ups.html#follow-up-row", context)
    return redirect(f"{_context(access, group)['follow_ups_url']}?status={group}")
