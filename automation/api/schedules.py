"""``/api/orgs/<orgSlug>/agent-run-schedules``: list, create, detail, update, disable, Run now."""

from contextlib import contextmanager
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from django.urls import path
from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_field, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response

from agentpress.agents.models import Agent
from automation import cadence, selectors
from automation.api.base import LimitCursorPagination, OrgFilterSet, OrgScopedView, conflict
from automation.api.runs import AgentRunSerializer
from automation.cadence import MAX_INTERVAL_MINUTES, WEEKDAYS
from automation.models import Schedule
from automation.services import schedules as schedule_services
from automation.states import Cadence, OverlapPolicy

PREVIEW_COUNT = 5
MAX_ID = 2**63 - 1
# Service errors name model fields; the API answers in the names the request used.
REQUEST_KEYS = {"catchup_window": "catchup_window_seconds", "run_as": "run_as_id", "agent": "agent_id"}


@extend_schema_field({"type": "string", "pattern": r"^\d{2}:\d{2}$", "example": "09:30"})
class HourMinuteField(serializers.TimeField):
    """A time of day as ``"HH:MM"`` both ways (OpenAPI's ``format: time`` would promise seconds)."""

    def __init__(self, **kwargs):
        super().__init__(format="%H:%M", input_formats=["%H:%M"], **kwargs)


class ScheduleSerializer(serializers.ModelSerializer):
    agent_id = serializers.IntegerField(read_only=True)
    agent_name = serializers.CharField(source="agent.name", read_only=True)
    run_as_id = serializers.IntegerField(read_only=True)
    run_as_username = serializers.CharField(source="run_as.username", read_only=True)
    time_of_day = HourMinuteField(read_only=True, allow_null=True)
    catchup_window_seconds = serializers.SerializerMethodField()
    description = serializers.SerializerMethodField()
    cron_description = serializers.SerializerMethodField()
    next_run_times = serializers.SerializerMethodField()
    cadence_error = serializers.SerializerMethodField()

    class Meta:
        model = Schedule
        fields = [
            "id", "agent_id", "agent_name", "name", "cadence", "description", "cron_description",
            "time_of_day", "weekdays", "interval_minutes", "run_at", "cron_expression", "timezone",
            "instructions", "run_as_id", "run_as_username", "enabled", "next_run_at", "next_run_times",
            "last_run_at", "catchup_window_seconds", "overlap_policy", "missed_count", "last_missed_at",
            "skipped_count", "buffered_slot", "blocked_reason", "cadence_error", "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = fields

    def get_catchup_window_seconds(self, schedule) -> int:
        return int(schedule.catchup_window.total_seconds())

    def get_description(self, schedule) -> str:
        return self._computed(schedule)[0]

    def get_cadence_error(self, schedule) -> str | None:
        """Why the schedule's times cannot be computed (a row stored before its fields were
        bounded); such a row is listed like the others, with this message and no next run times."""
        return self._computed(schedule)[2]

    def get_cron_description(self, schedule) -> str | None:
        return cadence.describe_cron(schedule.cron_expression) if schedule.cadence == Cadence.CRON else None

    def get_next_run_times(self, schedule) -> list[str]:
        """The coming slots: from ``nextRunAt`` when enabled, else what enabling now would give."""
        return [serializers.DateTimeField().to_representation(t) for t in self._computed(schedule)[1]]

    def _computed(self, schedule) -> tuple[str, list, str | None]:
        """Description, coming slots and error of a row, computed once per row."""
        cache = self.__dict__.setdefault("_cadence_cache", {})
        if schedule.pk not in cache:
            try:
                if schedule.enabled and schedule.next_run_at:
                    times = [
                        schedule.next_run_at,
                        *cadence.next_fire_times(schedule, schedule.next_run_at, PREVIEW_COUNT - 1),
                    ]
                else:
                    times = cadence.next_fire_times(schedule, timezone.now(), PREVIEW_COUNT)
                cache[schedule.pk] = (cadence.describe(schedule), times, None)
            except cadence.CadenceError as exc:
                cache[schedule.pk] = (f"{schedule.get_cadence_display()} ({schedule.timezone})", [], str(exc))
        return cache[schedule.pk]


class ScheduleWriteSerializer(serializers.Serializer):
    agent_id = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    name = serializers.CharField(max_length=200)
    cadence = serializers.ChoiceField(choices=Cadence.choices)
    timezone = serializers.CharField(max_length=64)
    instructions = serializers.CharField(max_length=20000)
    run_as_id = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    enabled = serializers.BooleanField(default=True)
    time_of_day = HourMinuteField(required=False, allow_null=True)
    weekdays = serializers.ListField(child=serializers.ChoiceField(choices=WEEKDAYS), required=False)
    interval_minutes = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=MAX_INTERVAL_MINUTES
    )
    run_at = serializers.DateTimeField(required=False, allow_null=True)
    cron_expression = serializers.CharField(required=False, allow_blank=True, max_length=120)
    catchup_window_seconds = serializers.IntegerField(
        required=False,
        min_value=int(schedule_services.MIN_CATCHUP_WINDOW.total_seconds()),
        max_value=int(schedule_services.MAX_CATCHUP_WINDOW.total_seconds()),
    )
    overlap_policy = serializers.ChoiceField(choices=OverlapPolicy.choices, required=False)


class ScheduleFilter(OrgFilterSet):
    class Meta:
        model = Schedule
        fields = []


RUN_NOW_FIELDS = {
    "outcome": serializers.CharField(help_text="started, buffered, skipped, duplicate or blocked"),
    "schedule": ScheduleSerializer(),
    "active_run_id": serializers.UUIDField(required=False, help_text="The run this one waits for."),
}


@contextmanager
def errors_in_request_keys():
    try:
        yield
    except DjangoValidationError as exc:
        errors = {REQUEST_KEYS.get(field, field): messages for field, messages in exc.message_dict.items()}
        raise exceptions.ValidationError(errors) from exc


class ScheduleScopedView(OrgScopedView):
    """Schedules of agents: owners and admins see the org's, members only their own."""

    serializer_class = ScheduleSerializer

    def scoped(self):
        return selectors.schedules_for(self.access).select_related("agent", "run_as")

    def get_object(self) -> Schedule:
        """Another member's schedule is a 404, as if it did not exist."""
        schedule_id = self.kwargs["schedule_id"]
        schedule = self.scoped().filter(pk=schedule_id).first() if schedule_id <= MAX_ID else None
        if schedule is None:
            raise exceptions.NotFound("No such schedule.")
        return schedule

    def settings_from(self, validated: dict, *, current: Schedule | None = None) -> dict:
        """Model settings from a request body; decides whose name the schedule runs under."""
        settings = dict(validated)
        settings.pop("agent_id", None)
        if "catchup_window_seconds" in settings:
            settings["catchup_window"] = timedelta(seconds=settings.pop("catchup_window_seconds"))
        default_run_as = current.run_as_id if current else self.access.user.pk
        run_as_id = settings.pop("run_as_id", default_run_as)
        with errors_in_request_keys():
            schedule_services.check_may_schedule_as(access=self.access, run_as_id=run_as_id)
        if current is None or run_as_id != current.run_as_id:
            settings["run_as"] = get_user_model().objects.get(pk=run_as_id)
        return settings


class ScheduleListView(ScheduleScopedView):
    pagination_class = LimitCursorPagination
    filterset_class = ScheduleFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no caller
            return Schedule.objects.none()
        return self.scoped()

    @extend_schema(
        summary="Schedules in the caller's scope (an agent's with agentId)",
        operation_id="agent_run_schedules_list",
        responses=ScheduleSerializer(many=True),
    )
    def get(self, request, org_slug):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(
        operation_id="agent_run_schedules_create",
        summary="Create a daily, weekly, interval, once or cron schedule",
        request=ScheduleWriteSerializer,
        responses={201: ScheduleSerializer},
    )
    def post(self, request, org_slug):
        body = ScheduleWriteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        agent = Agent.objects.filter(
            organization=self.access.organization, pk=body.validated_data["agent_id"]
        ).first()
        if agent is None:
            raise exceptions.ValidationError({"agent_id": ["No such agent in this organization."]})
        settings = self.settings_from(body.validated_data)
        with errors_in_request_keys():
            schedule = schedule_services.schedule_create(
                organization=self.access.organization, agent=agent, actor=request.user, **settings
            )
        return Response(self.get_serializer(schedule).data, status=status.HTTP_201_CREATED)


class ScheduleDetailView(ScheduleScopedView):
    @extend_schema(operation_id="agent_run_schedules_retrieve", summary="A schedule with its next run times")
    def get(self, request, org_slug, schedule_id):
        return Response(self.get_serializer(self.get_object()).data)

    @extend_schema(
        operation_id="agent_run_schedules_update",
        summary="Enable or update a schedule (recomputes nextRunAt from now)",
        request=ScheduleWriteSerializer,
        responses={200: ScheduleSerializer},
    )
    def patch(self, request, org_slug, schedule_id):
        schedule = self.get_object()
        body = ScheduleWriteSerializer(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        if body.validated_data.get("agent_id", schedule.agent_id) != schedule.agent_id:
            raise exceptions.ValidationError({"agent_id": ["A schedule cannot move to another agent."]})
        settings = self.settings_from(body.validated_data, current=schedule)
        with errors_in_request_keys():
            schedule_services.schedule_update(schedule=schedule, actor=request.user, **settings)
        return Response(self.get_serializer(self.get_object()).data)

    @extend_schema(
        operation_id="agent_run_schedules_disable",
        summary="Disable a schedule (the row and its runs stay)",
        responses={200: ScheduleSerializer},
    )
    def delete(self, request, org_slug, schedule_id):
        schedule_services.schedule_set_enabled(schedule=self.get_object(), enabled=False, actor=request.user)
        return Response(self.get_serializer(self.get_object()).data)


class ScheduleRunNowView(ScheduleScopedView):
    @extend_schema(
        operation_id="agent_run_schedules_run_now",
        summary="Run now: start a run outside the cadence, under the overlap policy",
        request=None,
        responses={
            201: inline_serializer("ScheduleRunStarted", {**RUN_NOW_FIELDS, "run": AgentRunSerializer()}),
            202: inline_serializer("ScheduleRunBuffered", RUN_NOW_FIELDS),
            409: conflict("Skipped (a run is active) or blocked (disabled, gated off)."),
        },
    )
    def post(self, request, org_slug, schedule_id):
        result = schedule_services.schedule_run_now(schedule=self.get_object(), actor=request.user)
        body = {"outcome": result.outcome, "schedule": self.get_serializer(self.get_object()).data}
        if result.active_run is not None:
            body["active_run_id"] = str(result.active_run.pk)
        if result.outcome == "started":
            return Response(
                {**body, "run": AgentRunSerializer(result.run).data}, status=status.HTTP_201_CREATED
            )
        if result.outcome == "buffered":
            return Response(body, status=status.HTTP_202_ACCEPTED)
        detail = result.reason or "This schedule's slot already has a run."
        return Response({"detail": detail, **body}, status=status.HTTP_409_CONFLICT)


org = "orgs/<slug:org_slug>/"

urlpatterns = [
    path(f"{org}agent-run-schedules", ScheduleListView.as_view(), name="api-schedules"),
    path(
        f"{org}agent-run-schedules/<int:schedule_id>",
        ScheduleDetailView.as_view(),
        name="api-schedule-detail",
    ),
    path(
        f"{org}agent-run-schedules/<int:schedule_id>/run",
        ScheduleRunNowView.as_view(),
        name="api-schedule-run",
    ),
]
