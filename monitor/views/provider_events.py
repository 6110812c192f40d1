"""The provider-events tab: every delivery per action with its outcome, and the refused ones."""

from django import forms
from django.shortcuts import render
from django.urls import reverse

from agentpress.orgs.permissions import Access
from automation import selectors
from automation.models import RefusedDelivery
from automation.states import ProviderEventStatus
from monitor.access import console_view
from monitor.pagination import paginate
from monitor.views.runs import PAGE_SIZE

VIEWS = {"deliveries": "Deliveries", "refused": "Refused"}


class DeliveryFilterForm(forms.Form):
    action = forms.ModelChoiceField(queryset=None, required=False, empty_label="All actions")
    outcome = forms.ChoiceField(choices=[("", "All outcomes"), *ProviderEventStatus.choices], required=False)
    context_key = forms.CharField(required=False, max_length=255, label="Context key")
    event_id = forms.CharField(required=False, max_length=255, label="Event id")

    def __init__(self, data, *, access: Access):
        super().__init__({name: data.get(name, "") for name in self.base_fields})
        self.fields["action"].queryset = selectors.actions_for(access)
        self.is_valid()

    def apply(self, qs):
        data = self.cleaned_data
        if data.get("action"):
            qs = qs.filter(action=data["action"])
        if data.get("outcome"):
            qs = qs.filter(status=data["outcome"])
        if data.get("context_key"):
            qs = qs.filter(context_key=data["context_key"])
        if data.get("event_id"):
            qs = qs.filter(event_id=data["event_id"])
        return qs

    def params(self) -> list[tuple[str, str]]:
        return [
            (name, str(value.pk if name == "action" else value))
            for name, value in self.cleaned_data.items()
            if value
        ]


def refused_for(access: Access):
    """Refusals for the org's actions; a member sees those of actions that run as them."""
    rows = RefusedDelivery.objects.filter(organization=access.organization)
    if not access.org_wide:
        rows = rows.filter(action__run_as=access.user)
    return rows.select_related("action")


@console_view()
def provider_events_page(request, access: Access):
    view = request.GET.get("view", "deliveries")
    view = view if view in VIEWS else "deliveries"
    form = DeliveryFilterForm(request.GET, access=access)
    if view == "refused":
        rows = refused_for(access)
        if form.cleaned_data.get("action"):
            rows = rows.filter(action=form.cleaned_data["action"])
    else:
        rows = form.apply(
            selectors.provider_events_for(access).select_related("action", "run", "deferred_behind")
        )
    page = paginate(
        rows, cursor=request.GET.get("cursor"), size=PAGE_SIZE, key="received_at", descending=True
    )
    return render(
        request,
        "monitor/provider_events.html",
        {
            "access": access,
            "organization": access.organization,
            "tab": "provider-events",
            "view": view,
            "views": list(VIEWS.items()),
            "form": form,
            "filter_params": form.params(),
            "page": page,
            "rows": page.rows,
            "events_url": reverse("monitor:provider-events", kwargs={"org_slug": access.organization.slug}),
        },
    )
