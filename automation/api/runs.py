"""``/api/orgs/<orgSlug>/agent-runs``: list with summary, detail, manual runs, cancel, retry."""

import django_filters
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import F
from djangorestframework_camel_case.render import CamelCaseBrowsableAPIRenderer, CamelCaseJSONRenderer
from djangorestframework_camel_case.util import camelize
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response

from agentpress.agents.models import Agent
from automation import lookups, scope, selectors
from automation.api.base import (
    IdFilter,
    InstantFilter,
    LimitCursorPagination,
    OrgFilterSet,
    OrgScopedView,
    conflict,
)
from automation.models import AgentRun, RunEvent
from automation.services import admission
from automation.services import runs as run_services
from automation.services.settlement import cancel_run
from automation.states import RunSource, RunStatus, WaitingKind


class RunEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = RunEvent
        fields = ["at", "kind", "detail"]


class AgentRunSerializer(serializers.ModelSerializer):
    agent_id = serializers.IntegerField(read_only=True)
    agent_name = serializers.CharField(source="agent.name", read_only=True)
    run_as_id = serializers.IntegerField(read_only=True)
    run_as_username = serializers.CharField(source="run_as.username", read_only=True)
    thread_id = serializers.IntegerField(read_only=True, allow_null=True)
    schedule_id = serializers.IntegerField(read_only=True, allow_null=True)
    action_id = serializers.UUIDField(read_only=True, allow_null=True)
    follow_up_id = serializers.IntegerField(read_only=True, allow_null=True)
    previous_run_id = serializers.UUIDField(read_only=True, allow_null=True)
    retry_of_id = serializers.UUIDField(read_only=True, allow_null=True)

    class Meta:
        model = AgentRun
        fields = [
            "id", "agent_id", "agent_name", "run_as_id", "run_as_username", "source", "status",
            "thread_id", "schedule_id", "action_id", "follow_up_id", "previous_run_id", "retry_of_id",
            "context_type", "context_key", "provider", "provider_context", "input_snapshot", "metadata",
            "created_at", "not_before", "scheduled_for", "dispatched_at", "started_at", "heartbeat_at",
            "completed_at", "cancelled_at", "waiting_reason", "lease_owner", "lease_expires_at", "attempt",
            "last_error", "input_tokens", "output_tokens", "cost",
        ]  # fmt: skip
        read_only_fields = fields


# The list reads its rows with ``.values()`` and formats only what JSON cannot carry as is:
# DRF's field-by-field serialization of this wide row was most of the list's time. The rows
# leave here camelized, each key once for all rows, so the renderer does not walk them again
# (``RunPageRenderer``). The answer is the serializer's own, camelized as the renderer would
# (``test_the_list_answers_what_the_serializer_writes``).
_JOINED = {"agent_name": F("agent__name"), "run_as_username": F("run_as__username")}
_COLUMNS = [name for name in AgentRunSerializer.Meta.fields if name not in _JOINED]
_FIELDS = AgentRunSerializer().fields
_FORMATTED = {
    name: field.to_representation
    for name, field in _FIELDS.items()
    if isinstance(field, serializers.DateTimeField | serializers.UUIDField | serializers.DecimalField)
}
_NESTED = [name for name, field in _FIELDS.items() if isinstance(field, serializers.JSONField)]
_CAMEL = {name: next(iter(camelize({name: None}))) for name in AgentRunSerializer.Meta.fields}


class CamelizedRows(list):
    """Rows whose keys, nested JSON included, are already what ``CamelCaseJSONRenderer`` writes."""


def run_rows(runs) -> CamelizedRows:
    """The rows of ``runs`` (a ``.values()`` queryset from ``run_values``) as ``AgentRunSerializer``
    writes them, camelized."""
    rows = CamelizedRows()
    for row in runs:
        for name, formatted in _FORMATTED.items():
            if row[name] is not None:
                row[name] = formatted(row[name])
        for name in _NESTED:
            if row[name]:
                row[name] = camelize(row[name])
        rows.append({_CAMEL[name]: value for name, value in row.items()})
    return rows


def run_values(runs):
    return runs.values(*_COLUMNS, **_JOINED)


class RunPageRenderer(CamelCaseJSONRenderer):
    """Camelizes a page of runs around its rows, which ``run_rows`` camelized already; any
    other answer (an error) is camelized whole."""

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, dict) and isinstance(data.get("results"), CamelizedRows):
            page = {key: value if key == "results" else camelize(value) for key, value in data.items()}
            return super(CamelCaseJSONRenderer, self).render(page, accepted_media_type, renderer_context)
        return super().render(data, accepted_media_type, renderer_context)


class AgentRunDetailSerializer(AgentRunSerializer):
    events = RunEventSerializer(many=True, read_only=True)
    provider_event_ids = serializers.SerializerMethodField()

    class Meta(AgentRunSerializer.Meta):
        fields = [*AgentRunSerializer.Meta.fields, "events", "provider_event_ids"]
        read_only_fields = fields

    def get_provider_event_ids(self, run) -> list[int]:
        return list(run.provider_events.values_list("pk", flat=True))


class ManualRunSerializer(serializers.Serializer):
    agent_id = serializers.IntegerField()
    prompt = serializers.CharField(max_length=20000)
    run_as_id = serializers.IntegerField(required=False)
    thread_id = serializers.IntegerField(required=False)
    context_type = serializers.CharField(required=False, allow_blank=True, max_length=64, default="")
    context_key = serializers.CharField(required=False, allow_blank=True, max_length=255, default="")

    def validate(self, data):
        access = self.context["access"]
        org = access.organization
        agent = Agent.objects.filter(organization=org, pk=data["agent_id"]).first()
        if agent is None:
            raise serializers.ValidationError({"agent_id": ["No such agent in this organization."]})
        data["agent"] = agent
        run_as_id = data.get("run_as_id", access.user.pk)
        if run_as_id != access.user.pk and not access.org_wide:
            raise exceptions.PermissionDenied("Members may only start runs that run as themselves.")
        run_as = get_user_model().objects.filter(memberships__organization=org, pk=run_as_id).first()
        if run_as is None:
            raise serializers.ValidationError({"run_as_id": ["Not a member of this organization."]})
        if refusal := scope.run_as_refusal(organization=org, user=run_as):
            raise serializers.ValidationError({"run_as_id": [refusal]})
        data["run_as"] = run_as
        if "thread_id" in data:
            # another user's thread answers as if it did not exist (scope.work_thread)
            thread = scope.work_thread(agent=agent, run_as=run_as, thread_id=data["thread_id"])
            if thread is None:
                raise serializers.ValidationError(
                    {"thread_id": ["No such thread of this agent that runs as the run-as user."]}
                )
            data["thread"] = thread
        if data["context_key"] and not data["context_type"]:
            raise serializers.ValidationError({"context_type": ["Required when contextKey is given."]})
        if refusal := scope.context_refusal(source=RunSource.MANUAL, context_type=data["context_type"]):
            raise serializers.ValidationError({"context_type": [refusal]})
        return data


class RunFilter(OrgFilterSet):
    source = django_filters.ChoiceFilter(choices=RunSource.choices)
    status = django_filters.ChoiceFilter(choices=RunStatus.choices)
    waitingReason = django_filters.ChoiceFilter(  # noqa: N815
        choices=WaitingKind.CHOICES, method="filter_waiting"
    )
    contextType = django_filters.CharFilter(field_name="context_type", max_length=64)  # noqa: N815
    contextKey = django_filters.CharFilter(field_name="context_key", max_length=255)  # noqa: N815
    threadId = IdFilter(field_name="thread_id")  # noqa: N815
    createdAfter = InstantFilter(field_name="created_at", lookup_expr="gte")  # noqa: N815
    createdBefore = InstantFilter(field_name="created_at", lookup_expr="lt")  # noqa: N815

    # Not filters, but understood by the list (pagination, DRF's renderer choice).
    OTHER_PARAMETERS = frozenset({"limit", "cursor", "format"})

    class Meta:
        model = AgentRun
        fields = []

    def filter_waiting(self, queryset, name, value):
        return queryset.filter(admission.waiting_filter(value))

    def is_valid(self):
        """A parameter that is not a filter of this list answers 400 instead of widening the answer."""
        unknown = sorted(set(self.data) - set(self.filters) - self.OTHER_PARAMETERS)
        if unknown:
            raise exceptions.ValidationError({name: ["Not a filter of this list."] for name in unknown})
        return super().is_valid()


# The list answers its own page shape (with the summary), so its query is spelled out here.
LIST_PARAMETERS = [
    OpenApiParameter("agentId", int, description="Only this agent's runs."),
    OpenApiParameter("source", str, enum=RunSource.values, description="Only runs from this source."),
    OpenApiParameter("status", str, enum=RunStatus.values, description="Only runs in this status."),
    OpenApiParameter("contextType", str, description="Only runs with this context type."),
    OpenApiParameter("contextKey", str, description="Only runs with this context key."),
    OpenApiParameter("threadId", int, description="Only runs in this thread."),
    OpenApiParameter(
        "createdAfter", OpenApiTypes.DATETIME, description="Only runs created at or after this instant."
    ),
    OpenApiParameter(
        "createdBefore", OpenApiTypes.DATETIME, description="Only runs created before this instant."
    ),
    OpenApiParameter(
        "waitingReason",
        str,
        enum=[kind for kind, _ in WaitingKind.CHOICES],
        description="Only pending runs waiting for this reason (limits, budget, not yet due, a worker…).",
    ),
    OpenApiParameter(
        "limit",
        OpenApiTypes.INT,
        description=f"Page size, 1 to {settings.AUTOMATION_API_MAX_LIMIT} (default 50).",
    ),
    OpenApiParameter("cursor", str, description="The `next` or `previous` cursor of an earlier page."),
]
RUN_ID = OpenApiParameter(
    "run_id",
    str,
    OpenApiParameter.PATH,
    description="The run's id, or its start as the console shows it (6 or more hex digits).",
)

SUMMARY_SCHEMA = inline_serializer(
    "RunsSummary",
    {key: serializers.IntegerField() for key in [*RunStatus.values, "scheduled", "active_follow_ups"]},
)


class AgentRunListView(OrgScopedView):
    serializer_class = AgentRunSerializer
    pagination_class = LimitCursorPagination
    filterset_class = RunFilter
    renderer_classes = [RunPageRenderer, CamelCaseBrowsableAPIRenderer]

    def get_queryset(self):
        return run_values(selectors.runs_for(self.access))

    def filter_queryset(self, queryset):
        # Without a filter in the query string the FilterSet (its filters copied, a form built and
        # validated) has nothing to narrow: the unfiltered first page skips it.
        if set(self.request.query_params) <= RunFilter.OTHER_PARAMETERS:
            return queryset
        return super().filter_queryset(queryset)

    @extend_schema(
        operation_id="agent_runs_list",
        summary="Run attempts and summary counts",
        parameters=LIST_PARAMETERS,
        responses=inline_serializer(
            "AgentRunPage",
            {
                "results": AgentRunSerializer(many=True),
                "summary": SUMMARY_SCHEMA,
                "next": serializers.URLField(allow_null=True),
                "previous": serializers.URLField(allow_null=True),
            },
        ),
    )
    def get(self, request, org_slug):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return Response(
            {
                "results": run_rows(page),
                "summary": selectors.runs_summary(self.access),
                "next": self.paginator.get_next_link(),
                "previous": self.paginator.get_previous_link(),
            }
        )

    @extend_schema(
        operation_id="agent_runs_create",
        summary="Start a manual run",
        request=ManualRunSerializer,
        responses={
            201: AgentRunDetailSerializer,
            409: conflict(
                "Another run of the run-as user is active in this context (`activeRunId` names it), "
                "or the agent is disabled."
            ),
        },
    )
    def post(self, request, org_slug):
        data = ManualRunSerializer(data=request.data, context=self.get_serializer_context())
        data.is_valid(raise_exception=True)
        v = data.validated_data
        run = run_services.run_create(
            agent=v["agent"],
            run_as=v["run_as"],
            source=RunSource.MANUAL,
            prompt=v["prompt"],
            thread=v.get("thread"),
            context_type=v["context_type"],
            context_key=v["context_key"],
            actor=request.user,
        )
        return Response(AgentRunDetailSerializer(run).data, status=status.HTTP_201_CREATED)


class RunObjectView(OrgScopedView):
    serializer_class = AgentRunDetailSerializer

    def get_object(self):
        if lookups.run_id_range(self.kwargs["run_id"]) is None:
            raise exceptions.ValidationError({"detail": f"{self.kwargs['run_id']!r} is not a valid run id."})
        try:
            found = lookups.run_by_ref(self.access, self.kwargs["run_id"])
        except lookups.AmbiguousRef as exc:
            raise exceptions.ValidationError({"detail": str(exc)}) from exc
        run = (
            found and selectors.runs_list(self.access).prefetch_related("events").filter(pk=found.pk).first()
        )
        if run is None:
            raise exceptions.NotFound("No such run.")
        return run


class AgentRunDetailView(RunObjectView):
    @extend_schema(operation_id="agent_runs_retrieve", summary="A run with its timeline", parameters=[RUN_ID])
    def get(self, request, org_slug, run_id):
        return Response(self.get_serializer(self.get_object()).data)


class AgentRunCancelView(RunObjectView):
    @extend_schema(
        operation_id="agent_runs_cancel",
        summary="Cancel a pending or running run",
        parameters=[RUN_ID],
        request=None,
        responses={200: AgentRunDetailSerializer, 409: conflict("The run already ended.")},
    )
    def post(self, request, org_slug, run_id):
        run = self.get_object()
        cancel_run(run_id=run.pk, actor=request.user, reason="cancelled through the API")
        return Response(self.get_serializer(self.get_object()).data)


class AgentRunRetryView(RunObjectView):
    @extend_schema(
        operation_id="agent_runs_retry",
        summary="Retry a failed, interrupted or cancelled run",
        parameters=[RUN_ID],
        request=None,
        responses={
            201: AgentRunDetailSerializer,
            409: conflict(
                "The run cannot be retried: not failed, interrupted or cancelled, already retried "
                "(`retryRunId` names the retry), its agent is disabled, its run-as user may no longer "
                "run work, or its context is busy."
            ),
        },
    )
    def post(self, request, org_slug, run_id):
        run = self.get_object()
        retry = run_services.retry_run(run_id=run.pk, actor=request.user)
        return Response(self.get_serializer(retry).data, status=status.HTTP_201_CREATED)
