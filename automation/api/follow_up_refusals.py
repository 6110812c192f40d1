"""``/api/orgs/<orgSlug>/agent-run-follow-up-refusals``: ``schedule_follow_up`` requests that were refused."""

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers

from automation import selectors
from automation.api.base import LimitCursorPagination, OrgFilterSet, OrgScopedView
from automation.models import FollowUpRefusal


class FollowUpRefusalSerializer(serializers.ModelSerializer):
    agent_id = serializers.IntegerField(read_only=True)
    run_id = serializers.UUIDField(read_only=True, allow_null=True)
    run_as_id = serializers.IntegerField(read_only=True, allow_null=True)
    thread_id = serializers.IntegerField(read_only=True, allow_null=True)

    class Meta:
        model = FollowUpRefusal
        fields = [
            "id", "agent_id", "run_id", "run_as_id", "thread_id", "context_type", "context_key", "code",
            "reason", "arguments", "created_at",
        ]  # fmt: skip
        read_only_fields = fields


class FollowUpRefusalFilter(OrgFilterSet):
    class Meta:
        model = FollowUpRefusal
        fields = []


class RefusalPagination(LimitCursorPagination):
    ordering = ("-created_at", "-id")


class FollowUpRefusalListView(OrgScopedView):
    serializer_class = FollowUpRefusalSerializer
    pagination_class = RefusalPagination
    filterset_class = FollowUpRefusalFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no caller
            return FollowUpRefusal.objects.none()
        return selectors.follow_up_refusals_for(self.access)

    @extend_schema(
        operation_id="follow_up_refusals_list",
        summary="Refused follow-up requests (reason, the run that asked, the arguments), newest first",
        responses=FollowUpRefusalSerializer(many=True),
    )
    def get(self, request, org_slug):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


org = "orgs/<slug:org_slug>/"

urlpatterns = [
    path(
        f"{org}agent-run-follow-up-refusals", FollowUpRefusalListView.as_view(), name="api-follow-up-refusals"
    ),
]
