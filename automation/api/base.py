"""What every org-scoped API view shares: the caller's access, pagination, and input checks."""

import uuid
from base64 import b64decode

import django_filters
from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import Http404
from django.utils.dateparse import parse_datetime
from django_filters.fields import IsoDateTimeField
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, generics
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import IsAuthenticated

from agentpress.agents.models import Agent
from agentpress.orgs.permissions import Access, get_access_or_404
from automation.api.errors import ErrorResponse
from automation.instants import in_utc

# What any org-scoped operation may answer besides its own outcomes.
COMMON_ERRORS = {
    "400": "Invalid input: `detail` and, per request field or query parameter, a list of messages.",
    "401": "No or an invalid `Authorization: Token …` header (or session).",
    "403": "A member without the actions:manage permission, or acting for someone else.",
    "404": "No such organization for this caller (non-members never learn it exists), or no such row in scope.",
}


class OrgScopedSchema(AutoSchema):
    """Documents each operation's error answers (all JSON with a ``detail``) and keeps a view's
    description to its own docstring rather than its base class's."""

    def get_description(self):
        own = self.view.__class__.__dict__.get("__doc__") or ""
        return super().get_description() if own else ""

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code, description in COMMON_ERRORS.items():
            if code not in responses:
                error = OpenApiResponse(ErrorResponse, description=description)
                responses[code] = self._get_response_for_code(error, code, direction=direction)
        return dict(sorted(responses.items()))


def conflict(description: str) -> OpenApiResponse:
    """A documented 409: the row's state does not allow the change (``detail`` says why)."""
    return OpenApiResponse(ErrorResponse, description=description)


class OrgScopedView(generics.GenericAPIView):
    """Resolves ``org_slug``: 404 for non-members (the org stays hidden), 403 without
    ``actions:manage``. ``self.access`` is then the caller's scope for selectors."""

    permission_classes = [IsAuthenticated]
    schema = OrgScopedSchema()
    access: Access

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        try:
            self.access = get_access_or_404(request.user, kwargs["org_slug"])
        except Http404 as exc:
            raise exceptions.NotFound("No such organization.") from exc
        if not self.access.can_manage_actions:
            raise exceptions.PermissionDenied("You need the actions:manage permission in this organization.")

    def get_serializer_context(self):
        context = super().get_serializer_context()
        context["access"] = getattr(self, "access", None)
        return context


def parse_uuid(value: str, what: str = "id") -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError as exc:
        raise exceptions.ValidationError({"detail": f"{value!r} is not a valid {what}."}) from exc


class LimitCursorPagination(CursorPagination):
    """Cursor pagination (deep pages cost what the first does) sized by ``limit``.

    Out-of-range limits and bad cursors are errors (400), not silently clamped.
    """

    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = settings.AUTOMATION_API_MAX_LIMIT

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"].update(minimum=1, maximum=self.max_page_size, default=self.page_size)
        return parameters

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        try:
            size = int(raw)
        except ValueError:
            size = 0
        if not 1 <= size <= self.max_page_size:
            raise exceptions.ValidationError(
                {"limit": [f"Must be a whole number from 1 to {self.max_page_size}."]}
            )
        return size

    def decode_cursor(self, request):
        raw = request.query_params.get(self.cursor_query_param)
        if raw is not None:
            try:
                b64decode(raw.encode("ascii"), validate=False)
            except (ValueError, UnicodeEncodeError) as exc:
                raise exceptions.ValidationError({"cursor": ["Invalid cursor."]}) from exc
        try:
            cursor = super().decode_cursor(request)
        except exceptions.NotFound as exc:
            raise exceptions.ValidationError({"cursor": ["Invalid cursor."]}) from exc
        return self._position_in_utc(cursor)

    @staticmethod
    def _position_in_utc(cursor):
        """A position that is an instant (the lists order by one) goes to the query in UTC; a
        hand-made one that no instant can be is an invalid cursor."""
        if cursor is None or cursor.position is None:
            return cursor
        try:
            moment = parse_datetime(cursor.position)
            if moment is None or moment.tzinfo is None:
                return cursor  # not an instant: the ordering field judges it
            return cursor._replace(position=in_utc(moment).isoformat())
        except (ValueError, ValidationError) as exc:
            raise exceptions.ValidationError({"cursor": ["Invalid cursor."]}) from exc


class UtcIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 instant, read in UTC (``automation.instants``)."""

    def to_python(self, value):
        value = super().to_python(value)
        return None if value is None else in_utc(value)


class InstantFilter(django_filters.IsoDateTimeFilter):
    """An instant a client typed: any offset Python reads is accepted and queried in UTC; one
    that UTC cannot hold is a 400 naming the parameter."""

    field_class = UtcIsoDateTimeField


class IdFilter(django_filters.Filter):
    """A whole, positive id: ``1.5`` or an id beyond the column's range is a 400, not a 500."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        super().__init__(*args, min_value=1, max_value=2**63 - 1, **kwargs)


class OrgFilterSet(django_filters.FilterSet):
    """Filters of an org-scoped list: ``agentId`` must name an agent of the caller's org."""

    agentId = IdFilter(field_name="agent_id", method="filter_agent")  # noqa: N815

    def filter_agent(self, queryset, name, value):
        organization = self.request.parser_context["view"].access.organization
        if not Agent.objects.filter(pk=value, organization=organization).exists():
            raise exceptions.ValidationError({"agentId": ["No such agent in this organization."]})
        return queryset.filter(agent_id=value)
