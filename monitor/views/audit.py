"""The audit trail in the console: who changed what, when and why — for owners and admins."""

from django import forms
from django.shortcuts import render
from django.urls import reverse

from agentpress.orgs.permissions import Access
from automation.models import AuditEntry
from monitor.access import console_view
from monitor.filters import InstantField
from monitor.pagination import paginate
from monitor.views.runs import PAGE_SIZE

TARGET_TYPES = [("", "Anything"), ("agentrun", "Runs"), ("schedule", "Schedules"), ("followup", "Follow-ups"),
                ("action", "Actions")]  # fmt: skip


class AuditFilterForm(forms.Form):
    verb = forms.CharField(required=False, max_length=32, label="What was done")
    target_type = forms.ChoiceField(choices=TARGET_TYPES, required=False, label="On")
    target_id = forms.CharField(required=False, max_length=64, label="Row id")
    actor = forms.CharField(required=False, max_length=150, label="By (username)")
    at_after = InstantField(label="From (UTC)")
    at_before = InstantField(label="To (UTC)")

    def __init__(self, data):
        super().__init__({name: data.get(name, "") for name in self.base_fields})
        self.is_valid()

    def apply(self, qs):
        data = self.cleaned_data
        for name, lookup in (("verb", "verb"), ("target_type", "target_type"), ("actor", "actor__username")):
            if data.get(name):
                qs = qs.filter(**{lookup: data[name]})
        if data.get("target_id"):
            qs = qs.filter(target_id__startswith=data["target_id"].lower())
        if data.get("at_after"):
            qs = qs.filter(at__gte=data["at_after"])
        if data.get("at_before"):
            qs = qs.filter(at__lt=data["at_before"])
        return qs


@console_view()
def audit_page(request, access: Access):
    if not access.org_wide:
        return render(request, "monitor/forbidden.html", {"organization": access.organization}, status=403)
    form = AuditFilterForm(request.GET)
    rows = form.apply(AuditEntry.objects.filter(organization=access.organization).select_related("actor"))
    page = paginate(rows, cursor=request.GET.get("cursor"), size=PAGE_SIZE, key="at", descending=True)
    params = [(k, v) for k, v in request.GET.items() if k in form.fields and v]
    return render(
        request,
        "monitor/audit.html",
        {
            "access": access,
            "organization": access.organization,
            "tab": "audit",
            "form": form,
            "filter_params": params,
            "page": page,
            "rows": page.rows,
            "audit_url": reverse("monitor:audit", kwargs={"org_slug": access.organization.slug}),
        },
    )
