"""``/api/orgs/<orgSlug>/agent-run-follow-ups``: list with filters, detail, cancel (DELETE)."""

import django_filters
from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers
from rest_framework.response import Response

from automation import selectors
from automation.api.base import IdFilter, LimitCursorPagination, OrgFilterSet, OrgScopedView, conflict
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


class FollowUpFilter(OrgFilterSet):
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
