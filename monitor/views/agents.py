"""Agents, their Capabilities page (Scheduled runs, Self-reschedule) and their schedules."""

from datetime import timedelta
from zoneinfo import ZoneInfo

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from agentpress.orgs.permissions import Access
from automation import cadence, scope, selectors, tools, usage_report
from automation.models import Schedule
from automation.services import budgets
from automation.services import capacity as capacity_services
from automation.services import limits as limit_services
from automation.services import schedules as schedule_services
from automation.states import RunStatus
from monitor.access import console_view
from monitor.forms import AgentLimitsForm, ScheduleForm

PREVIEW_COUNT = 5
# The agent page's usage table covers this many days, today included.
USAGE_DAYS = 14
FAILED_STATUSES = (RunStatus.FAILED, RunStatus.INTERRUPTED)
NO_SCHEDULES = "No schedules yet. Create one to run this agent daily, weekly, every few minutes, once, or on a cron expression."


def _agent_or_404(access: Access, agent_id: int):
    agent = selectors.agents_for(access).filter(pk=agent_id).first()
    if agent is None:
        raise Http404("No such agent.")
    return agent


def _schedule_rows(qs) -> list[dict]:
    """Each schedule with what a person needs to know: when, and why it does not fire.
    A row whose times cannot be computed shows why instead; the others are unaffected."""
    rows = []
    schedules = list(qs.select_related("organization", "agent", "run_as"))
    refusals = scope.run_as_refusals(schedules)
    for schedule in schedules:
        try:
            when, error = cadence.describe(schedule), ""
        except cadence.CadenceError as exc:
            when, error = schedule.get_cadence_display(), str(exc)
        rows.append(
            {
                "schedule": schedule,
                "when": when,
                "error": error,
                "gate": schedule_services.gate_reason(schedule, refusals=refusals),
            }
        )
    return rows


def _capabilities_url(access: Access, agent) -> str:
    return reverse(
        "monitor:capabilities", kwargs={"org_slug": access.organization.slug, "agent_id": agent.pk}
    )


def _with_health(access: Access, agents):
    """Each agent's last success and failures in the last 24 h, in the viewer's scope (in flight and
    the limit come from ``capacity``)."""
    runs = selectors.runs_for(access).filter(agent=OuterRef("pk")).order_by()
    since = timezone.now() - timedelta(hours=24)

    return agents.annotate(
        last_success_at=Subquery(
            runs.filter(status=RunStatus.COMPLETED).order_by("-created_at").values("completed_at")[:1]
        ),
        failures_24h=Coalesce(
            Subquery(
                runs.filter(status__in=FAILED_STATUSES, created_at__gte=since)
                .values("agent")
                .annotate(n=Count("*"))
                .values("n")[:1]
            ),
            0,
        ),
    )


@console_view(needs_feature=False)
def agents_page(request, access: Access):
    agents = list(
        _with_health(access, selectors.agents_for(access).annotate(schedule_count=Count("schedules")))
    )
    capacities = capacity_services.agent_capacities(agents)
    for agent in agents:
        agent.capacity = capacities[agent.pk]
    return render(
        request, "agents/list.html", {"access": access, "organization": access.organization, "agents": agents}
    )


@console_view()
def schedules_page(request, access: Access):
    rows = _schedule_rows(selectors.schedules_for(access).order_by("agent__name", "name", "pk"))
    return render(
        request,
        "monitor/schedules.html",
        {"access": access, "organization": access.organization, "tab": "schedules", "rows": rows},
    )


@console_view(needs_feature=False)
def capabilities_page(request, access: Access, agent_id: int):
    agent = _agent_or_404(access, agent_id)
    limits_form = AgentLimitsForm(
        request.POST if request.POST.get("section") == "limits" else None,
        initial={name: getattr(agent, name) for name in limit_services.AGENT_LIMIT_FIELDS},
    )
    if request.method == "POST" and request.POST.get("section") == "limits":
        if not access.org_wide:
            messages.error(request, "Only owners and admins change an agent's limits.")
        elif limits_form.is_valid():
            limit_services.limits_update(owner=agent, actor=request.user, **limits_form.cleaned_data)
            messages.success(request, "Limits and budgets saved.")
        else:
            return _capabilities(request, access, agent, limits_form, status=400)
        return redirect(_capabilities_url(access, agent))
    if request.method == "POST":
        if not access.org_wide:
            messages.error(request, "Only owners and admins change an agent's capabilities.")
        else:
            agent.scheduled_runs_enabled = request.POST.get("scheduled_runs_enabled") == "on"
            agent.self_reschedule_enabled = request.POST.get("self_reschedule_enabled") == "on"
            chosen = set(request.POST.getlist("tools"))
            agent.tools = [name for name in tools.OPTIONAL_TOOLS if name in chosen]
            agent.save(update_fields=["scheduled_runs_enabled", "self_reschedule_enabled", "tools"])
            messages.success(request, "Capabilities saved.")
        return redirect(_capabilities_url(access, agent))
    return _capabilities(request, access, agent, limits_form)


def _capabilities(request, access: Access, agent, limits_form, status=200):
    rows = _schedule_rows(selectors.schedules_for(access).filter(agent=agent))
    empty_text = NO_SCHEDULES
    if not rows and not access.org_wide and agent.schedules.exists():
        # a member sees only their own schedules; say so rather than "none" when others exist
        empty_text = "None of this agent's schedules run as you. " + NO_SCHEDULES.removeprefix(
            "No schedules yet. "
        )
    now = timezone.now()
    start, _, _ = budgets.day_window(access.organization.timezone, now)
    context = {
        "access": access,
        "organization": access.organization,
        "agent": agent,
        "rows": rows,
        "schedules_empty_text": empty_text,
        "limits_form": limits_form,
        "capacity": capacity_services.agent_capacities([agent])[agent.pk],
        # the budget meter: the agent's day for owners and admins, a member's own runs for them
        "usage_today": budgets.usage_since(
            start, agent_id=agent.pk, run_as_id=None if access.org_wide else access.user.pk
        ),
        **agent_usage(access, agent, now),
        "tool_choices": [(spec, spec.name in tools.enabled_tools(agent)) for spec in tools.REGISTRY.values()],
    }
    return render(request, "agents/capabilities.html", context, status=status)


def agent_usage(access: Access, agent, now) -> dict:
    """The agent's runs, tokens and cost per day over the last ``USAGE_DAYS`` days and per
    schedule, in the viewer's scope and the organization's time zone (two statements)."""
    zone = usage_report.zone_of(access.organization.timezone)
    start, end = usage_report.last_days(zone, now, USAGE_DAYS)
    runs = selectors.runs_for(access).filter(agent=agent)
    by_day = usage_report.usage_report(runs, group_by="day", start=start, end=end, zone=zone)
    by_schedule = usage_report.usage_report(runs, group_by="schedule", start=start, end=end, zone=zone)
    return {
        "usage_days": USAGE_DAYS,
        "usage_zone": zone.key,
        "usage_by_day": by_day,
        "usage_by_schedule": by_schedule,
    }


def _preview(form: ScheduleForm, access: Access, agent, stored: Schedule | None) -> dict:
    """The next fire times of the settings in ``form``, or the messages that stop them."""
    if not form.is_valid():
        return {"preview_errors": [e for errors in form.errors.values() for e in errors]}
    now = timezone.now()
    settings = form.settings()
    candidate = Schedule(organization=access.organization, agent=agent, **settings)
    if candidate.cadence == "interval" and candidate.run_at is None:
        candidate.run_at = now.replace(second=0, microsecond=0)
    try:
        schedule_services.check_schedule_fields(candidate, stored=stored, now=now)
    except ValidationError as exc:
        return {"preview_errors": [e for errors in exc.message_dict.values() for e in errors]}
    zone = ZoneInfo(candidate.timezone)
    times = cadence.next_fire_times(candidate, now, PREVIEW_COUNT)
    return {
        "preview_zone": candidate.timezone,
        # Formatted here: template date filters would convert back to the server's timezone.
        "preview_times": [
            (t.astimezone(zone).strftime("%a %Y-%m-%d %H:%M %Z"), t.strftime("%Y-%m-%d %H:%M UTC"))
            for t in times
        ],
        "preview_when": cadence.describe(candidate),
    }


def _schedule_form_page(request, access: Access, agent, schedule: Schedule | None):
    initial = ScheduleForm.initial_for(schedule) if schedule else None
    form = ScheduleForm(request.POST or None, initial=initial, access=access)
    context = {"access": access, "organization": access.organization, "agent": agent, "schedule": schedule}
    if request.method == "POST" and "preview" not in request.POST and form.is_valid():
        try:
            if schedule is None:
                schedule = schedule_services.schedule_create(
                    organization=access.organization, agent=agent, actor=request.user, **form.settings()
                )
            else:
                schedule = schedule_services.schedule_update(
                    schedule=schedule, actor=request.user, **form.settings()
                )
        except ValidationError as exc:
            form.show_service_errors(exc)
        else:
            messages.success(request, f"Schedule “{schedule.name}” saved.")
            return redirect(f"{_capabilities_url(access, agent)}#schedule-{schedule.pk}")
    if request.method == "POST":
        context.update(_preview(form, access, agent, schedule))
    elif schedule is not None:
        # An existing schedule's page opens with its next runs already shown.
        context.update(_preview(ScheduleForm(initial, access=access), access, agent, schedule))
    return render(request, "agents/schedule_form.html", context | {"form": form})


@console_view(needs_feature=False)
def schedule_new(request, access: Access, agent_id: int):
    return _schedule_form_page(request, access, _agent_or_404(access, agent_id), None)


@console_view(needs_feature=False)
def schedule_edit(request, access: Access, agent_id: int, schedule_id: int):
    agent = _agent_or_404(access, agent_id)
    schedule = selectors.schedules_for(access).filter(agent=agent, pk=schedule_id).first()
    if schedule is None:
        raise Http404("No such schedule.")
    return _schedule_form_page(request, access, agent, schedule)


@console_view(needs_feature=False)
def schedule_preview(request, access: Access, agent_id: int):
    agent = _agent_or_404(access, agent_id)
    form = ScheduleForm(request.GET, access=access)
    stored = None
    if request.GET.get("schedule_id", "").isdigit():
        stored = selectors.schedules_for(access).filter(agent=agent, pk=request.GET["schedule_id"]).first()
    return render(request, "agents/schedule_form.html#preview", _preview(form, access, agent, stored))


@require_POST
@console_view(needs_feature=False)
def schedule_command(request, access: Access, agent_id: int, schedule_id: int, verb: str):
    agent = _agent_or_404(access, agent_id)
    schedule = selectors.schedules_for(access).filter(agent=agent, pk=schedule_id).first()
    if schedule is None or verb not in ("enable", "disable", "run-now"):
        raise Http404("No such schedule.")
    if verb == "run-now":
        outcome = schedule_services.schedule_run_now(schedule=schedule, actor=request.user)
        if outcome.outcome == "started":
            messages.success(request, f"“{schedule.name}” started a run now.")
        else:
            messages.warning(
                request, f"“{schedule.name}” did not start a run ({outcome.outcome}). {outcome.reason}"
            )
    else:
        try:
            schedule = schedule_services.schedule_set_enabled(
                schedule=schedule, enabled=verb == "enable", actor=request.user
            )
        except ValidationError as exc:
            messages.error(request, f"“{schedule.name}” was not {verb}d: {' '.join(exc.messages)}")
        else:
            messages.success(request, f"“{schedule.name}” {verb}d.")
    if request.POST.get("back") == "schedules":
        return redirect(reverse("monitor:schedules", kwargs={"org_slug": access.organization.slug}))
    return redirect(f"{_capabilities_url(access, agent)}#schedule-{schedule.pk}")
