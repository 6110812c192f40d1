"""The runs table's filters, read from the query string so a filtered view is a shareable URL."""

from datetime import UTC, timedelta

from django import forms
from django.db.models import QuerySet
from django.utils import timezone

from agentpress.orgs.permissions import Access
from automation import selectors
from automation.instants import in_utc
from automation.services import admission
from automation.states import RunSource, RunStatus, WaitingKind

CREATED_WITHIN = {
    "1h": ("Last hour", timedelta(hours=1)),
    "24h": ("Last 24 hours", timedelta(hours=24)),
    "7d": ("Last 7 days", timedelta(days=7)),
    "30d": ("Last 30 days", timedelta(days=30)),
}

FILTER_NAMES = (
    "agent",
    "source",
    "status",
    "waiting",
    "context_type",
    "context_key",
    "thread",
    "created",
    "created_after",
    "created_before",
)
# <input type="datetime-local"> sends minutes (or seconds); ISO 8601 is accepted too.
INSTANT_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"]


class InstantField(forms.DateTimeField):
    """A UTC instant typed into the filter bar; a value with an offset is read in UTC."""

    widget = forms.DateTimeInput(attrs={"type": "datetime-local", "step": "60"}, format="%Y-%m-%dT%H:%M")

    def __init__(self, **kwargs):
        super().__init__(input_formats=INSTANT_FORMATS, required=False, **kwargs)

    def to_python(self, value):
        value = super().to_python(value)
        return None if value is None else in_utc(value)


class RunFilterForm(forms.Form):
    agent = forms.ModelChoiceField(queryset=None, required=False, empty_label="All agents")
    source = forms.ChoiceField(choices=[("", "All sources"), *RunSource.choices], required=False)
    status = forms.ChoiceField(choices=[("", "All statuses"), *RunStatus.choices], required=False)
    waiting = forms.ChoiceField(
        choices=[("", "Any reason"), *WaitingKind.CHOICES], required=False, label="Waiting"
    )
    context_type = forms.CharField(required=False, max_length=64, label="Context type")
    context_key = forms.CharField(required=False, max_length=255, label="Context key")
    thread = forms.IntegerField(required=False, min_value=1, max_value=2**63 - 1, label="Thread id")
    created = forms.ChoiceField(
        choices=[("", "Any time"), *((k, label) for k, (label, _) in CREATED_WITHIN.items())],
        required=False,
        label="Created",
    )
    created_after = InstantField(label="From (UTC)")
    created_before = InstantField(label="To (UTC)")

    def clean(self):
        data = super().clean()
        start, end = data.get("created_after"), data.get("created_before")
        if start and end and start >= end:
            self.add_error("created_before", "Must be after From.")
        return data

    def __init__(self, data, *, access: Access):
        super().__init__({k: data.get(k, "") for k in FILTER_NAMES})
        self.fields["agent"].queryset = selectors.agents_for(access)
        self.is_valid()

    def apply(self, qs: QuerySet) -> QuerySet:
        """Narrow ``qs`` by every filter that parsed; a bad value is reported, not applied."""
        data = self.cleaned_data
        if data.get("agent"):
            qs = qs.filter(agent=data["agent"])
        for name in ("source", "status", "context_type", "context_key"):
            if data.get(name):
                qs = qs.filter(**{name: data[name]})
        if data.get("waiting"):
            qs = qs.filter(admission.waiting_filter(data["waiting"]))
        if data.get("thread"):
            qs = qs.filter(thread_id=data["thread"])
        if data.get("created"):
            qs = qs.filter(created_at__gte=timezone.now() - CREATED_WITHIN[data["created"]][1])
        if data.get("created_after"):
            qs = qs.filter(created_at__gte=data["created_after"])
        if data.get("created_before"):
            qs = qs.filter(created_at__lt=data["created_before"])
        return qs

    def params(self) -> list[tuple[str, str]]:
        """The applied filters as query parameters, for hidden fields and links."""
        out = []
        for name in FILTER_NAMES:
            value = self.cleaned_data.get(name)
            if not value:
                continue
            if name == "agent":
                value = value.pk
            elif name in ("created_after", "created_before"):
                value = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
            out.append((name, str(value)))
        return out
