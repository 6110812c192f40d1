"""Every API error is JSON with a ``detail`` (and field errors where there are some)."""

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from automation.services.runs import AlreadyRetried, ContextBusy
from automation.states import InvalidTransition


class ErrorResponse(serializers.Serializer):
    """The body of every error answer. Validation errors add one key per request field
    (its name as sent) with a list of messages; a 409 for a busy context adds ``activeRunId``,
    one for a run retried already ``retryRunId``."""

    detail = serializers.CharField(help_text="What went wrong, in a sentence.")


def exception_handler(exc, context):
    if isinstance(exc, InvalidTransition | ContextBusy):
        body = {"detail": str(exc)}
        if isinstance(exc, ContextBusy) and exc.active_run is not None:
            body["activeRunId"] = str(exc.active_run.pk)
        if isinstance(exc, AlreadyRetried) and exc.retry is not None:
            body["retryRunId"] = str(exc.retry.pk)
        return Response(body, status=status.HTTP_409_CONFLICT)
    if isinstance(exc, DjangoValidationError):
        exc = ValidationError(exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages})
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and "detail" not in response.data:
        response.data = {"detail": "Invalid input.", **response.data}
    elif response is not None and isinstance(response.data, list):
        response.data = {"detail": " ".join(str(m) for m in response.data)}
    return response
