"""``/api/orgs/<orgSlug>/provider-events`` (deliveries and what became of them) and
``/api/orgs/<orgSlug>/actions`` (inbound triggers; the secret is shown once, on creation)."""

import django_filters
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.urls import path, reverse
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response

from agentpress.agents.models import Agent
from agentpress.orgs.models import Membership
from automation import scope, selectors, tasks
from automation.api.base import LimitCursorPagination, OrgFilterSet, OrgScopedView, parse_uuid
from automation.models import Action, ProviderEvent
from automation.services import outlook as outlook_services
from automation.services import provider_events as event_services
from automation.states import ProviderEventStatus, RunSource


class ProviderEventSerializer(serializers.ModelSerializer):
    action_id = serializers.UUIDField(read_only=True)
    action_name = serializers.CharField(source="action.name", read_only=True)
    agent_id = serializers.IntegerField(read_only=True)
    run_id = serializers.UUIDField(read_only=True, allow_null=True)
    deferred_behind_id = serializers.UUIDField(read_only=True, allow_null=True)

    class Meta:
        model = ProviderEvent
        fields = [
            "id", "action_id", "action_name", "agent_id", "event_id", "context_type", "context_key",
            "status", "reason", "run_id", "deferred_behind_id", "delivery_count", "payload",
            "received_at", "processed_at",
        ]  # fmt: skip
        read_only_fields = fields


class ProviderEventFilter(OrgFilterSet):
    actionId = django_filters.CharFilter(method="filter_action")  # noqa: N815
    status = django_filters.ChoiceFilter(choices=ProviderEventStatus.choices)
    contextKey = django_filters.CharFilter(field_name="context_key")  # noqa: N815

    class Meta:
        model = ProviderEvent
        fields = []

    def filter_action(self, queryset, name, value):
        return queryset.filter(action_id=parse_uuid(value, "action id"))


class ProviderEventPagination(LimitCursorPagination):
    ordering = ("-received_at", "-id")  # served by the (organization, -received_at) index


class ProviderEventListView(OrgScopedView):
    serializer_class = ProviderEventSerializer
    pagination_class = ProviderEventPagination
    filterset_class = ProviderEventFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no caller
            return ProviderEvent.objects.none()
        return selectors.provider_events_for(self.access).select_related("action")

    @extend_schema(
        operation_id="provider_events_list",
        summary="Provider deliveries and their outcome (started, deferred, coalesced, ignored)",
        responses=ProviderEventSerializer(many=True),
    )
    def get(self, request, org_slug):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class ActionSerializer(serializers.ModelSerializer):
    agent_id = serializers.IntegerField()
    run_as_id = serializers.IntegerField(required=False)
    hook_url = serializers.SerializerMethodField()
    blocked_reason = serializers.SerializerMethodField(
        help_text="Why deliveries start nothing while its run-as user may not run work; empty otherwise."
    )
    debounce_seconds = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=settings.AUTOMATION_DEBOUNCE_MAX_DELAY_SECONDS
    )

    class Meta:
        model = Action
        fields = [
            "id", "agent_id", "run_as_id", "name", "provider", "enabled", "instructions", "context_type",
            "context_key_pointer", "debounce_seconds", "hook_url", "blocked_reason", "created_at",
        ]  # fmt: skip
        read_only_fields = ["id", "hook_url", "blocked_reason", "created_at"]

    def get_hook_url(self, action) -> str:
        return self.context["request"].build_absolute_uri(reverse("action-hook", args=[action.pk]))

    def get_blocked_reason(self, action) -> str:
        refusals = self.context.get("refusals") or scope.run_as_refusals([action])
        return refusals[(action.organization_id, action.run_as_id)]

    def validate_context_type(self, value):
        if refusal := scope.context_refusal(source=RunSource.PROVIDER_EVENT, context_type=value):
            raise serializers.ValidationError(refusal)
        return value

    def validate_context_key_pointer(self, value):
        if value and not value.startswith("/"):
            raise serializers.ValidationError('A JSON pointer starts with "/", e.g. /ticket/id.')
        return value

    def validate(self, data):
        access = self.context["access"]
        org = access.organization
        agent = Agent.objects.filter(organization=org, pk=data["agent_id"]).first()
        if agent is None:
            raise serializers.ValidationError({"agent_id": ["No such agent in this organization."]})
        run_as_id = data.pop("run_as_id", access.user.pk)
        if run_as_id != access.user.pk and not access.org_wide:
            raise exceptions.PermissionDenied("Members may only create actions that run as themselves.")
        if not Membership.objects.filter(organization=org, user_id=run_as_id).exists():
            raise serializers.ValidationError({"run_as_id": ["Not a member of this organization."]})
        data.pop("agent_id")
        return {**data, "agent": agent, "run_as": get_user_model().objects.get(pk=run_as_id)}


class CreatedActionSerializer(ActionSerializer):
    signing_secret = serializers.CharField(read_only=True, help_text="Shown once, only in this answer.")

    class Meta(ActionSerializer.Meta):
        fields = [*ActionSerializer.Meta.fields, "signing_secret"]


class ActionListView(OrgScopedView):
    serializer_class = ActionSerializer
    pagination_class = LimitCursorPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no caller
            return Action.objects.none()
        return selectors.actions_for(self.access)

    @extend_schema(
        operation_id="actions_list",
        summary="Inbound actions (webhook, Outlook) with their hook URLs",
        responses=ActionSerializer(many=True),
    )
    def get(self, request, org_slug):
        page = self.paginate_queryset(self.get_queryset().select_related("organization", "run_as"))
        refusals = scope.run_as_refusals(page)
        context = {**self.get_serializer_context(), "refusals": refusals}
        return self.get_paginated_response(ActionSerializer(page, many=True, context=context).data)

    @extend_schema(
        operation_id="actions_create",
        summary="Create an action; the answer shows its signing secret once",
        request=ActionSerializer,
        responses={201: CreatedActionSerializer},
    )
    def post(self, request, org_slug):
        data = self.get_serializer(data=request.data)
        data.is_valid(raise_exception=True)
        action = event_services.action_create(**data.validated_data)
        if action.provider == Action.Provider.OUTLOOK:
            outlook_services.subscription_for(action)
            transaction.on_commit(lambda: tasks.outlook_sync_subscription.delay(str(action.pk)))
        body = CreatedActionSerializer(action, context=self.get_serializer_context()).data
        return Response(body, status=status.HTTP_201_CREATED)


org = "orgs/<slug:org_slug>/"

urlpatterns = [
    path(f"{org}provider-events", ProviderEventListView.as_view(), name="api-provider-events"),
    path(f"{org}actions", ActionListView.as_view(), name="api-actions"),
]
