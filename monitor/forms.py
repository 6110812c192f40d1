"""The schedule form of an agent's Capabilities page.

It only turns browser input into typed values (a local ``datetime-local`` becomes an
instant in the schedule's own timezone); whether a schedule can work is decided by
``automation.services.schedules``, whose field messages the form then shows.
"""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError

from agentpress.orgs.permissions import Access
from automation import cadence
from automation.cadence import MAX_INTERVAL_MINUTES
from automation.models import Schedule
from automation.services.schedules import MAX_CATCHUP_WINDOW
from automation.states import Cadence, OverlapPolicy

WEEKDAY_CHOICES = [(d, d.capitalize()) for d in cadence.WEEKDAYS]


class ScheduleForm(forms.Form):
    name = forms.CharField(max_length=200)
    cadence = forms.ChoiceField(choices=Cadence.choices, initial=Cadence.DAILY)
    time_of_day = forms.TimeField(
        required=False, label="Time of day", widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M")
    )
    weekdays = forms.MultipleChoiceField(
        required=False, choices=WEEKDAY_CHOICES, widget=forms.CheckboxSelectMultiple
    )
    # The same floor as the service's, so the browser refuses what the server would.
    interval_minutes = forms.IntegerField(
        required=False,
        min_value=settings.AUTOMATION_MIN_INTERVAL_MINUTES,
        max_value=MAX_INTERVAL_MINUTES,
        label="Every (minutes)",
        # the service's wording, so the form and the API say the same thing
        error_messages={"min_value": f"Must be at least {settings.AUTOMATION_MIN_INTERVAL_MINUTES} minutes."},
    )
    run_at = forms.DateTimeField(
        required=False,
        label="At (once) or starting at (interval), wall time where the schedule runs",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"],
    )
    cron_expression = forms.CharField(required=False, max_length=120, label="Cron expression")
    timezone = forms.ChoiceField(initial="UTC", label="Timezone")
    instructions = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}), label="Instructions (the prompt)"
    )
    run_as = forms.ModelChoiceField(queryset=None, label="Run as", empty_label=None)
    enabled = forms.BooleanField(required=False, initial=True)
    catchup_window = forms.IntegerField(
        min_value=1,
        max_value=MAX_CATCHUP_WINDOW // timedelta(minutes=1),
        initial=60,
        label="Catch-up window (minutes)",
        help_text="Older missed slots do not fire.",
    )
    overlap_policy = forms.ChoiceField(choices=OverlapPolicy.choices, initial=OverlapPolicy.SKIP)

    def __init__(self, *args, access: Access, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["timezone"].choices = [(z, z) for z in sorted(cadence.known_timezones())]
        users = get_user_model().objects.filter(memberships__organization=access.organization)
        if not access.org_wide:
            # Members may only create schedules that run as themselves (DESIGN §8).
            users = users.filter(pk=access.user.pk)
        self.fields["run_as"].queryset = users.order_by("username")
        self.fields["run_as"].initial = access.user.pk

    def clean(self):
        data = super().clean()
        run_at = data.get("run_at")
        zone = data.get("timezone")
        if run_at is not None and zone:
            # The browser sends wall time; it means wall time in the schedule's zone.
            data["run_at"] = datetime.combine(run_at.date(), run_at.time(), ZoneInfo(zone))
        return data

    def settings(self) -> dict:
        """The cleaned values as ``schedule_create`` / ``schedule_update`` settings."""
        data = dict(self.cleaned_data)
        data["catchup_window"] = timedelta(minutes=data["catchup_window"])
        data["weekdays"] = list(data.get("weekdays") or [])
        data["cron_expression"] = data.get("cron_expression") or ""
        return data

    def show_service_errors(self, exc: ValidationError) -> None:
        for field, errors in exc.message_dict.items():
            self.add_error(field if field in self.fields else None, errors)

    @classmethod
    def initial_for(cls, schedule: Schedule) -> dict:
        return {
            "name": schedule.name,
            "cadence": schedule.cadence,
            "time_of_day": schedule.time_of_day,
            "weekdays": schedule.weekdays,
            "interval_minutes": schedule.interval_minutes,
            "run_at": _wall_time(schedule),
            "cron_expression": schedule.cron_expression,
            "timezone": schedule.timezone,
            "instructions": schedule.instructions,
            "run_as": schedule.run_as_id,
            "enabled": schedule.enabled,
            "catchup_window": int(schedule.catchup_window.total_seconds() // 60),
            "overlap_policy": schedule.overlap_policy,
        }


def _wall_time(schedule: Schedule) -> datetime | None:
    """``run_at`` as wall time in the schedule's zone; empty when a row stored before the
    bounds holds one that no zone can show, so the form can still fix it."""
    if schedule.run_at is None:
        return None
    try:
        return schedule.run_at.astimezone(ZoneInfo(schedule.timezone)).replace(tzinfo=None)
    except (OverflowError, ValueError, KeyError):
        return None


class AgentLimitsForm(forms.Form):
    """Concurrency limit, daily budgets and token ceiling of an agent (empty: none / the default)."""

    max_concurrent_runs = forms.IntegerField(
        required=False, min_value=1, max_value=100_000, label="Runs at once", help_text="Empty: the default."
    )
    daily_run_limit = forms.IntegerField(required=False, min_value=0, max_value=10**9, label="Runs per day")
    daily_token_limit = forms.IntegerField(
        required=False, min_value=0, max_value=10**15, label="Tokens per day"
    )
    daily_cost_limit = forms.DecimalField(
        required=False, min_value=0, max_digits=12, decimal_places=4, label="Cost per day"
    )
    max_tokens_per_run = forms.IntegerField(
        required=False, min_value=1, max_value=10**9, label="Tokens per run", help_text="A run past it fails."
    )
