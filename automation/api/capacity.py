"""``/api/orgs/<orgSlug>/capacity``: runs in flight against the limits, today's usage against
the daily budgets, and why pending runs wait, for the organization and each agent."""

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from automation.api.base import OrgScopedView
from automation.services import capacity as capacity_services
from automation.states import WaitingKind


class UsageSerializer(serializers.Serializer):
    runs = serializers.IntegerField()
    tokens = serializers.IntegerField()
    cost = serializers.DecimalField(max_digits=14, decimal_places=6, coerce_to_string=True)


class WaitingSerializer(serializers.Serializer):
    reason = serializers.ChoiceField(choices=[*WaitingKind.CHOICES, ("none", "No reason recorded")])
    count = serializers.IntegerField()


class BudgetFields(serializers.Serializer):
    in_flight = serializers.IntegerField(help_text="Runs running now.")
    max_concurrent_runs = serializers.IntegerField(
        allow_null=True, help_text="The stored limit; empty means the deployment's default."
    )
    effective_limit = serializers.IntegerField(allow_null=True, help_text="The limit in force; empty: none.")
    daily_run_limit = serializers.IntegerField(allow_null=True)
    daily_token_limit = serializers.IntegerField(allow_null=True)
    daily_cost_limit = serializers.DecimalField(max_digits=12, decimal_places=4, allow_null=True)
    usage_today = UsageSerializer(help_text="Runs started today and their tokens and cost.")


class AgentCapacitySerializer(BudgetFields):
    id = serializers.IntegerField()
    name = serializers.CharField()
    max_tokens_per_run = serializers.IntegerField(allow_null=True)


class CapacitySerializer(BudgetFields):
    timezone = serializers.CharField(help_text="The organization's time zone, in which days are counted.")
    day_started_at = serializers.DateTimeField()
    day_ends_at = serializers.DateTimeField(help_text="When today's budgets reset.")
    waiting = WaitingSerializer(
        many=True, help_text="Pending runs by waiting reason (the runs list's filter)."
    )
    agents = AgentCapacitySerializer(many=True)


class CapacityView(OrgScopedView):
    serializer_class = CapacitySerializer

    @extend_schema(operation_id="capacity_retrieve", summary="Limits, budgets and waiting runs")
    def get(self, request, org_slug):
        return Response(CapacitySerializer(capacity_services.capacity_report(self.access.organization)).data)


urlpatterns = [path("orgs/<slug:org_slug>/capacity", CapacityView.as_view(), name="api-capacity")]
