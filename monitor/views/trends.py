"""Trends and health: runs per hour by status, failure rate and duration percentiles over a
range, usage (runs, tokens, cost) per day, agent and schedule, and the workers seen by their
heartbeats."""

from datetime import timedelta

from django import forms
from django.conf import settings
from django.db.models import Count
from django.db.models.functions import TruncHour
from django.shortcuts import render
from django.utils import timezone

from agentpress.orgs.permissions import Access
from automation import selectors, usage_report
from automation.models import Worker
from automation.states import RunStatus
from monitor.access import console_view
from monitor.filters import InstantField

DEFAULT_RANGE = timedelta(hours=24)
MAX_RANGE = timedelta(days=14)
# Percentiles are read from at most this many of the range's newest finished runs.
DURATION_SAMPLE = 20_000
FAILED = (RunStatus.FAILED, RunStatus.INTERRUPTED)


class RangeForm(forms.Form):
    start = InstantField(label="From (UTC)")
    end = InstantField(label="To (UTC)")

    def __init__(self, data):
        super().__init__({name: data.get(name, "") for name in self.base_fields})
        self.is_valid()

    def clean(self):
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if start and end and start >= end:
            self.add_error("end", "Must be after From.")
        elif start and end and end - start > MAX_RANGE:
            self.add_error("end", f"A range is at most {MAX_RANGE.days} days.")
        return data

    def bounds(self):
        if self.errors:
            end = timezone.now()
            return end - DEFAULT_RANGE, end
        data = self.cleaned_data
        end = data.get("end") or (data["start"] + DEFAULT_RANGE if data.get("start") else timezone.now())
        start = data.get("start") or end - DEFAULT_RANGE
        return start, end


def _percentile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def run_trends(access: Access, start, end) -> dict:
    """Per hour: runs created by status, and the share of finished ones that failed; over the
    range: duration percentiles of finished runs."""
    runs = selectors.runs_for(access).filter(created_at__gte=start, created_at__lt=end)
    counts: dict = {}
    for row in (
        runs.annotate(hour=TruncHour("created_at")).order_by().values("hour", "status").annotate(n=Count("*"))
    ):
        counts.setdefault(row["hour"], dict.fromkeys(RunStatus.values, 0))[row["status"]] = row["n"]
    hours = []
    at = start.replace(minute=0, second=0, microsecond=0)
    while at < end:
        by_status = counts.get(at, dict.fromkeys(RunStatus.values, 0))
        finished = by_status[RunStatus.COMPLETED] + sum(by_status[s] for s in FAILED)
        failed = sum(by_status[s] for s in FAILED)
        hours.append(
            {
                "hour": at,
                "counts": [by_status[s] for s in RunStatus.values],
                "total": sum(by_status.values()),
                "failure_rate": failed / finished if finished else None,
            }
        )
        at += timedelta(hours=1)
    spans = runs.filter(started_at__isnull=False, completed_at__isnull=False).order_by("-created_at")
    durations = sorted(
        (done - began).total_seconds()
        for began, done in spans.values_list("started_at", "completed_at")[:DURATION_SAMPLE]
    )
    return {
        "hours": hours,
        "statuses": [(s.value, s.label) for s in RunStatus],
        "percentiles": [
            (label, _percentile(durations, q)) for label, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))
        ],
        "finished": len(durations),
    }


def _chart_data(trends: dict) -> dict:
    return {
        "t": [int(h["hour"].timestamp()) for h in trends["hours"]],
        "series": [
            {"label": label, "key": key, "values": [h["counts"][i] for h in trends["hours"]]}
            for i, (key, label) in enumerate(trends["statuses"])
        ],
        "failureRate": [
            None if h["failure_rate"] is None else round(h["failure_rate"] * 100, 1) for h in trends["hours"]
        ],
    }


def range_usage(access: Access, start, end) -> dict:
    """Usage of the caller's runs created in the range, per day (the organization's time zone),
    per agent and per schedule: one statement each."""
    zone = usage_report.zone_of(access.organization.timezone)
    runs = selectors.runs_for(access)
    return {
        "zone": zone.key,
        **{
            group: usage_report.usage_report(runs, group_by=group, start=start, end=end, zone=zone)
            for group in usage_report.GROUPS
        },
    }


@console_view()
def trends_page(request, access: Access):
    form = RangeForm(request.GET)
    start, end = form.bounds()
    trends = run_trends(access, start, end)
    return render(
        request,
        "monitor/trends.html",
        {
            "access": access,
            "organization": access.organization,
            "tab": "trends",
            "form": form,
            "start": start,
            "end": end,
            "trends": trends,
            "chart_data": _chart_data(trends),
            "usage": range_usage(access, start, end),
        },
    )


def worker_rows(now) -> list[dict]:
    """Each worker with whether it is alive: not stopped, and beating within a lease TTL."""
    overdue_after = timedelta(seconds=settings.AUTOMATION_LEASE_TTL_SECONDS)
    rows = []
    for worker in Worker.objects.order_by("stopped_at", "-last_beat_at", "name")[:200]:
        if worker.stopped_at:
            state = "stopped"
        elif worker.last_beat_at and now - worker.last_beat_at <= overdue_after:
            state = "alive"
        else:
            state = "overdue"
        rows.append({"worker": worker, "state": state})
    return rows


@console_view()
def workers_page(request, access: Access):
    if not access.org_wide:
        return render(request, "monitor/forbidden.html", {"organization": access.organization}, status=403)
    return render(
        request,
        "monitor/workers.html",
        {
            "access": access,
            "organization": access.organization,
            "tab": "workers",
            "rows": worker_rows(timezone.now()),
            "lease_ttl": settings.AUTOMATION_LEASE_TTL_SECONDS,
        },
    )
