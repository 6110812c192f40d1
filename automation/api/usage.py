"""``/api/orgs/<orgSlug>/usage``: runs, tokens and cost per day, agent or schedule over a range,
in the caller's scope (a member: their own runs) and the organization's time zone."""

from datetime import UTC, datetime, timedelta

from django.urls import path
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.response import Response

from agentpress.agents.models import Agent
from automation import selectors, usage_report
from automation.api.base import OrgScopedView

DEFAULT_RANGE = timedelta(days=7)
MAX_RANGE = timedelta(days=93)
EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, tzinfo=UTC)
PARAMETERS = {"groupBy", "createdAfter", "createdBefore", "agentId", "format"}


class UsageQuery(serializers.Serializer):
    group_by = serializers.ChoiceField(choices=usage_report.GROUPS, default="day")
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)
    agent_id = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)

    def validate(self, data):
        for name in ("created_after", "created_before"):
            if name in data and not EARLIEST <= data[name] <= LATEST:
                # days are counted in the organization's zone, which may lie a day either side
                raise serializers.ValidationError(
                    {name: [f"Must be from {EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d}."]}
                )
        end = data.get("created_before") or timezone.now()
        start = data.get("created_after") or (
            end - DEFAULT_RANGE if end - EARLIEST > DEFAULT_RANGE else EARLIEST
        )
        if start >= end:
            raise serializers.ValidationError({"created_before": ["Must be after createdAfter."]})
        if end - start > MAX_RANGE:
            raise serializers.ValidationError(
                {"created_before": [f"A range is at most {MAX_RANGE.days} days."]}
            )
        return data | {"created_after": start, "created_before": end}


class UsageReportRowSerializer(serializers.Serializer):
    key = serializers.CharField(
        allow_null=True,
        help_text="The day (YYYY-MM-DD), the agent's id or the schedule's id; null for runs without a schedule.",
    )
    label = serializers.CharField(help_text="The day, the agent's name or the schedule's name.")
    agent_id = serializers.IntegerField(
        allow_null=True, help_text="The agent (of the schedule, when grouped by schedule); null per day."
    )
    runs = serializers.IntegerField()
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    tokens = serializers.IntegerField()
    cost = serializers.DecimalField(max_digits=16, decimal_places=6, coerce_to_string=True)


class UsageReportSerializer(serializers.Serializer):
    group_by = serializers.ChoiceField(choices=usage_report.GROUPS)
    timezone = serializers.CharField(help_text="The organization's time zone, in which days are counted.")
    created_after = serializers.DateTimeField()
    created_before = serializers.DateTimeField()
    results = UsageReportRowSerializer(many=True)
    total = UsageReportRowSerializer()
    truncated = serializers.BooleanField(
        help_text=f"More than {usage_report.MAX_GROUP_ROWS} agents or schedules: only the largest are listed."
    )


def _row(row: usage_report.UsageRow) -> dict:
    return {
        "key": row.key_text,
        "label": row.label,
        "agent_id": row.agent_id,
        "runs": row.runs,
        "input_tokens": row.input_tokens,
        "output_tokens": row.output_tokens,
        "tokens": row.tokens,
        "cost": row.cost,
    }


class UsageView(OrgScopedView):
    """Totals of the caller's runs (a member: their own; owners and admins: the organization's)
    created in the range, grouped by the day they were created in the organization's time zone
    (every day of the range, empty ones included), by agent or by schedule (largest cost first)."""

    serializer_class = UsageReportSerializer

    @extend_schema(
        operation_id="usage_retrieve",
        summary="Runs, tokens and cost per day, agent or schedule",
        parameters=[
            OpenApiParameter(
                "groupBy", str, enum=list(usage_report.GROUPS), description="How to group (default: day)."
            ),
            OpenApiParameter(
                "createdAfter",
                OpenApiTypes.DATETIME,
                description="Runs created at or after this instant (default: a week before createdBefore).",
            ),
            OpenApiParameter(
                "createdBefore",
                OpenApiTypes.DATETIME,
                description="Runs created before this instant (default: now).",
            ),
            OpenApiParameter("agentId", int, description="Only this agent's runs."),
        ],
    )
    def get(self, request, org_slug):
        params = request.query_params
        unknown = sorted(set(params) - PARAMETERS)
        if unknown:
            raise exceptions.ValidationError({name: ["Not a parameter of this report."] for name in unknown})
        query = UsageQuery(
            data={
                snake: params[camel]
                for camel, snake in (
                    ("groupBy", "group_by"),
                    ("createdAfter", "created_after"),
                    ("createdBefore", "created_before"),
                    ("agentId", "agent_id"),
                )
                if camel in params
            }
        )
        query.is_valid(raise_exception=True)
        data = query.validated_data
        organization = self.access.organization
        runs = selectors.runs_for(self.access)
        if "agent_id" in data:
            if not Agent.objects.filter(pk=data["agent_id"], organization=organization).exists():
                raise exceptions.ValidationError({"agent_id": ["No such agent in this organization."]})
            runs = runs.filter(agent_id=data["agent_id"])
        zone = usage_report.zone_of(organization.timezone)
        report = usage_report.usage_report(
            runs,
            group_by=data["group_by"],
            start=data["created_after"],
            end=data["created_before"],
            zone=zone,
        )
        body = {
            "group_by": report.group_by,
            "timezone": zone.key,
            "created_after": data["created_after"],
            "created_before": data["created_before"],
            "results": [_row(row) for row in report.rows],
            "total": _row(report.total),
            "truncated": report.truncated,
        }
        return Response(UsageReportSerializer(body).data)


urlpatterns = [path("orgs/<slug:org_slug>/usage", UsageView.as_view(), name="api-usage")]
