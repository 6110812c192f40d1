"""The runs table's filters, read from the query string so a filtered view is a shareable URL."""

from datetime import timedelta

from django import forms
from django.db.models import QuerySet
from django.utils import timezone

from agentpress.orgs.permissions import Access
from automation import selectors
from automation.services import admission
from automation.states import RunSource, RunStatus, WaitingKind

CREATED_WITHIN = {
    "1h": ("Last hour", timedelta(hours=1)),
    "24h": ("Last 24 hours", timedelta(hours=24)),
    "7d": ("Last 7 days", timedelta(days=7)),
    "30d": ("Last 30 days", timedelta(days=30)),
}

FILTER_NAMES = ("agent", "source", "status", "waiting", "context_type", "context_key", "created")


class RunFilterForm(forms.Form):
    agent = forms.ModelChoiceField(queryset=None, required=False, empty_label="All agents")
    source = forms.ChoiceField(choices=[("", "All sources"), *RunSource.choices], required=False)
    status = forms.ChoiceField(choices=[("", "All statuses"), *RunStatus.choices], required=False)
    waiting = forms.ChoiceField(
        choices=[("", "Any reason"), *WaitingKind.CHOICES], required=False, label="Waiting"
    )
    context_type = forms.CharField(required=False, max_length=64, label="Context type")
    context_key = forms.CharField(required=False, max_length=255, label="Context key")
    created = forms.ChoiceField(
        choices=[("", "Any time"), *((k, label) for k, (label, _) in CREATED_WITHIN.items())],
        required=False,
        label="Created",
    )

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
        if data.get("created"):
            qs = qs.filter(created_at__gte=timezone.now() - CREATED_WITHIN[data["created"]][1])
        return qs

    def params(self) -> list[tuple[str, str]]:
        """The applied filters as query parameters, for hidden fields and links."""
        out = []
        for name in FILTER_NAMES:
            value = self.cleaned_data.get(name)
            if value:
                out.append((name, str(value.pk if name == "agent" else value)))
        return out
