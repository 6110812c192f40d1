"""Admin for schedules: the form is checked and saved by the schedule services, and the
actions (enable, disable, Run now) call them too."""

from copy import copy

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.forms.models import construct_instance
from django.utils import timezone

from agentpress.orgs.admin import OrgScopedAdmin, owner_admin_site
from automation import cadence
from automation.models import Schedule
from automation.services import schedules as schedule_services

DISPATCHER_FIELDS = [
    "next_run_at", "upcoming", "last_run_at", "missed_count", "last_missed_at", "skipped_count",
    "buffered_slot", "blocked_reason", "created_by", "created_at", "updated_at",
]  # fmt: skip


class ScheduleAdminForm(forms.ModelForm):
    class Meta:
        model = Schedule
        fields = ["organization", "agent", *schedule_services.CONFIG_FIELDS]

    def clean(self):
        cleaned = super().clean()
        if self.errors:  # the checks combine fields, so they wait until each field is valid
            return cleaned
        candidate = construct_instance(self, copy(self.instance))
        stored = Schedule.objects.filter(pk=self.instance.pk).first() if self.instance.pk else None
        schedule_services.check_schedule_fields(candidate, stored=stored, now=timezone.now())
        return cleaned


@admin.register(Schedule, site=owner_admin_site)
class ScheduleAdmin(OrgScopedAdmin):
    form = ScheduleAdminForm
    list_display = [
        "name", "organization", "agent", "cadence", "enabled", "next_run_at", "last_run_at",
        "missed_count", "skipped_count", "blocked_reason",
    ]  # fmt: skip
    list_filter = ["enabled", "cadence", "overlap_policy"]
    search_fields = ["name", "instructions"]
    list_select_related = ["organization", "agent", "run_as"]
    readonly_fields = DISPATCHER_FIELDS
    actions = ["enable_schedules", "disable_schedules", "run_schedules_now"]

    @admin.display(description="Next run times")
    def upcoming(self, schedule):
        if not schedule.pk or not schedule.enabled or schedule.next_run_at is None:
            return "—"
        try:
            times = [schedule.next_run_at, *cadence.next_fire_times(schedule, schedule.next_run_at, 4)]
        except cadence.CadenceError as exc:
            return str(exc)
        return ", ".join(f"{t:%Y-%m-%d %H:%M} UTC" for t in times)

    def get_readonly_fields(self, request, obj=None):
        # A schedule stays with its agent (as in the API); its runs and counters belong to it.
        return [*DISPATCHER_FIELDS, "organization", "agent"] if obj else DISPATCHER_FIELDS

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        schedule_services.schedule_save(schedule=obj, actor=request.user)

    def has_delete_permission(self, request, obj=None):
        # Disabling keeps the history; only a superuser removes a schedule outright.
        return request.user.is_superuser

    @admin.action(description="Enable selected schedules (next run from now)")
    def enable_schedules(self, request, queryset):
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable selected schedules (rows and runs stay)")
    def disable_schedules(self, request, queryset):
        self._set_enabled(request, queryset, False)

    def _set_enabled(self, request, queryset, enabled: bool):
        def change(schedule):
            schedule_services.schedule_set_enabled(schedule=schedule, enabled=enabled, actor=request.user)

        self._apply(request, queryset, change, "enabled" if enabled else "disabled")

    @admin.action(description="Run selected schedules now (respects the overlap policy)")
    def run_schedules_now(self, request, queryset):
        def run_now(schedule):
            result = schedule_services.schedule_run_now(schedule=schedule, actor=request.user)
            if result.outcome not in ("started", "buffered"):
                raise ValidationError(result.reason or result.outcome)

        self._apply(request, queryset, run_now, "started (or queued behind an active run)")

    def row_label(self, obj) -> str:
        return str(obj)

    def _apply(self, request, queryset, change, verb):
        self.apply_each(request, queryset, change, noun="schedule", verb=verb, refusals=(ValidationError,))
