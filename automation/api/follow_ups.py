"""``/api/orgs/<orgSlug>/agent-run-follow-ups``: list with filters, detail, cancel (DELETE)."""

import django_filters
from django import forms
from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers
from rest_framework.response import Response

from agentpress.agents.models import Agent
from automation import selectors
from automation.api.base import LimitCursorPagination, OrgScopedView, conflict
from automation.models import FollowUp
from automation.services import follow_ups as follow_up_services
from automation.states import FOLLOW_UP_ACTIVE, FollowUpStatus


class FollowUpSerializer(serializers.ModelSerializer):
    agent_id = serializers.IntegerField(read_only=True)
    agent_name = serializers.CharField(source="agent.name", read_only=True)
    run_as_id = serializers.IntegerField(read_only=True)
    run_as_username = serializers.CharField(source="run_as.username", read_only=True)
    previous_run_id = serializers.UUIDField(read_only=True, allow_null=True)
    thread_id = serializers.IntegerField(read_only=True, allow_null=True)
    run_id = serializers.UUIDField(read_only=True, allow_null=True)

    class Meta:
        model = FollowUp
        fields = [
            "id", "agent_id", "agent_name", "run_as_id", "run_as_username", "status", "previous_run_id",
            "thread_id", "run_id", "context_type", "context_key", "continuation_prompt", "stop_conditions",
            "scheduled_for", "claimed_at", "completed_at", "cancelled_at", "cancel_reason", "last_error",
            "created_at",
        ]  # fmt: skip
        read_only_fields = fields


class IdFilter(django_filters.Filter):
    """A whole, positive id: ``1.5`` or an id beyond the column's range is a 400, not a 500."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        super().__init__(*args, min_value=1, max_value=2**63 - 1, **kwargs)


class FollowUpFilter(django_filters.FilterSet):
    agentId = IdFilter(field_name="agent_id", method="filter_agent")  # noqa: N815
    status = django_filters.ChoiceFilter(choices=FollowUpStatus.choices)
    statusGroup = django_filters.ChoiceFilter(  # noqa: N815
        choices=[("active", "Active (pending and running)")], method="filter_status_group"
    )
    contextType = django_filters.CharFilter(field_name="context_type")  # noqa: N815
    contextKey = django_filters.CharFilter(field_name="context_key")  # noqa: N815
    threadId = IdFilter(field_name="thread_id")  # noqa: N815

    class Meta:
        model = FollowUp
        fields = []

    def filter_agent(self, queryset, name, value):
        organization = self.request.parser_context["view"].access.organization
        if not Agent.objects.filter(pk=value, organization=organization).exists():
            raise exceptions.ValidationError({"agentId": ["No such agent in this organization."]})
        return queryset.filter(agent_id=value)

    def filter_status_group(self, queryset, name, value):
        return queryset.filter(status__in=FOLLOW_UP_ACTIVE)


class FollowUpPagination(LimitCursorPagination):
    # the queue's own order: latest scheduled first (served by the status/run-as indexes)
    ordering = ("-scheduled_for", "-id")


class FollowUpListView(OrgScopedView):
    serializer_class = FollowUpSerializer
    pagination_class = FollowUpPagination
    filterset_class = FollowUpFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no caller
            return FollowUp.objects.none()
        return selectors.follow_ups_for(self.access).select_related("agent", "run_as")

    @extend_schema(
        operation_id="agent_run_follow_ups_list",
        summary="Follow-ups in the caller's scope",
        responses=FollowUpSerializer(many=True),
    )
    def get(self, request, org_slug):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class FollowUpDetailView(OrgScopedView):
    serializer_class = FollowUpSerializer

    def get_object(self):
        follow_up = (
            selectors.follow_ups_for(self.access)
            .select_related("agent", "run_as")
            .filter(pk=self.kwargs["follow_up_id"])
            .first()
        )
        if follow_up is None:
            raise exceptions.NotFound("No such follow-up.")
        return follow_up

    @extend_schema(operation_id="agent_run_follow_ups_retrieve", summary="A follow-up")
    def get(self, request, org_slug, follow_up_id):
        return Response(self.get_serializer(self.get_object()).data)

    @extend_schema(
        operation_id="agent_run_follow_ups_cancel",
        summary="Cancel a pending follow-up",
        responses={
            200: FollowUpSerializer,
            409: conflict("The follow-up already became a run or ended."),
        },
    )
    def delete(self, request, org_slug, follow_up_id):
        follow_up = self.get_object()
        follow_up_services.cancel_follow_up(
            follow_up_id=follow_up.pk,
            actor=request.user,
            reason=f"Cancelled through the API by {request.user}.",
        )
        return Response(self.get_serializer(self.get_object()).data)


org = "orgs/<slug:org_slug>/"

urlpatterns = [
    path(f"{org}agent-run-follow-ups", FollowUpListView.as_view(), name="api-follow-ups"),
    path(
        f"{org}agent-run-follow-ups/<int:follow_up_id>",
        FollowUpDetailView.as_view(),
        name="api-follow-up-detail",
    ),
]
