"""``POST /hooks/actions/<action_id>/``: the public endpoint providers deliver to.

No session and no CSRF token: a delivery is authenticated by its signature (webhook) or
its ``clientState`` (Outlook). Verification and storage happen in the request; the run is
sent to a worker when the ingestion transaction commits, so the answer comes quickly.
"""

import logging
from functools import wraps

import kombu.exceptions
from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from agentpress.ops.metrics import record_webhook_rejection
from automation import scope, tasks
from automation.models import Action
from automation.providers import outlook, webhook
from automation.services import outlook as outlook_services
from automation.services.provider_events import DUPLICATE, Ingested, ingest_event
from automation.services.rate_limits import action_rate_check
from automation.services.refused_deliveries import refused_delivery_record
from automation.strict_json import loads as parse_json

logger = logging.getLogger(__name__)


def error(status: int, detail: str, reason: str) -> JsonResponse:
    """A refused delivery: JSON ``detail``, counted in metrics by a short stable reason
    (and logged by ``logs_refusals`` once the answer is ready)."""
    record_webhook_rejection(reason=reason)
    response = JsonResponse({"detail": detail}, status=status)
    response.refusal = (reason, detail)
    return response


def logs_refusals(view):
    """Every refusal the view answers goes to the refused-deliveries log, whichever path refused it."""

    @wraps(view)
    def wrapper(request, action_id):
        response = view(request, action_id)
        if refusal := getattr(response, "refusal", None):
            try:
                declared = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                declared = 0
            refused_delivery_record(
                action_ref=str(action_id),
                reason=refusal[0],
                detail=refusal[1],
                source_address=request.META.get("REMOTE_ADDR"),
                body_size=declared,
                status_code=response.status_code,
            )
        return response

    return wrapper


def rate_limited(action: Action) -> JsonResponse | None:
    decision = action_rate_check(action_id=action.pk)
    if decision.allowed:
        return None
    response = error(429, "Too many deliveries for this action; retry later.", "rate_limited")
    response["Retry-After"] = str(decision.retry_after_seconds)
    return response


def read_body(request) -> bytes | None:
    """The raw body, or ``None`` when it is over the limit; never reads past limit + 1 bytes."""
    limit = settings.AUTOMATION_WEBHOOK_MAX_BODY_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        return None
    body = request.read(limit + 1)
    return None if len(body) > limit else body


def answer(result: Ingested) -> dict:
    return {
        "eventId": result.event.event_id,
        "providerEventId": result.event.pk,
        "status": result.outcome,
        "runId": str(result.run_id) if result.run_id else None,
        "reason": result.event.reason or None,
    }


@csrf_exempt
@require_POST
@logs_refusals
def action_hook(request, action_id):
    action = (
        scope.with_run_as_membership(Action.objects.select_related("organization", "agent", "run_as"))
        .filter(pk=action_id)
        .first()
    )
    if action is None:
        return error(404, "No such action.", "unknown_action")
    if action.provider == Action.Provider.OUTLOOK and "validationToken" in request.GET:
        # Graph's subscription handshake: echo the token, as plain text, within 10 seconds.
        return HttpResponse(request.GET["validationToken"], content_type="text/plain; charset=utf-8")
    body = read_body(request)
    if body is None:
        return error(
            413, f"The body is larger than {settings.AUTOMATION_WEBHOOK_MAX_BODY_BYTES} bytes.", "too_large"
        )
    if action.provider == Action.Provider.OUTLOOK:
        return outlook_delivery(action, body)
    return webhook_delivery(request, action, body)


def webhook_delivery(request, action: Action, body: bytes) -> JsonResponse:
    try:
        msg_id = webhook.verify(signing_secret=action.signing_secret, headers=request.headers, body=body)
    except webhook.SignatureError as exc:
        return error(401, str(exc), "bad_signature")
    except webhook.BodyNotText as exc:
        return error(400, f"The body is not valid JSON: {exc}", "malformed")
    if refused := rate_limited(action):
        return refused
    try:
        payload = parse_json(body)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return error(400, f"The body is not valid JSON: {exc}", "malformed")
    if not isinstance(payload, dict):  # a Standard Webhooks event is an object; null cannot be stored
        return error(400, "The body is not valid JSON: it must be a JSON object.", "malformed")
    result = ingest_event(
        action=action, event=webhook.inbound_event(action=action, msg_id=msg_id, payload=payload)
    )
    return JsonResponse(answer(result), status=200 if result.outcome == DUPLICATE else 202)


def outlook_delivery(action: Action, body: bytes) -> JsonResponse:
    """Cap, authenticate, then validate, count and act, in that order: a forged post (no
    notification with the action's ``clientState``) is answered 401 without a row or a count.
    Messages are fetched by a worker (Graph wants an answer within 3 seconds); a broker that
    cannot take the work answers 503, so Graph delivers again."""
    try:
        batch = outlook.notifications(parse_json(body))
    except outlook.BatchTooLarge as exc:
        return error(413, str(exc), "too_large")
    except (ValueError, outlook.MalformedNotification) as exc:
        return error(400, f"Not a Microsoft Graph change notification: {exc}", "malformed")
    genuine = outlook.authentic(batch, action.signing_secret)
    if not genuine:
        return error(401, "No notification carried the action's clientState.", "bad_client_state")
    try:
        parsed = [outlook.parse(notification) for notification in genuine]
    except outlook.MalformedNotification as exc:
        return error(400, f"Not a Microsoft Graph change notification: {exc}", "malformed")
    if refused := rate_limited(action):
        return refused
    outlook_services.notification_received(action_id=action.pk)
    results = []
    try:
        for notification in parsed:
            results.append(outlook_accept(action, notification))
    except (kombu.exceptions.OperationalError, ConnectionError) as exc:
        logger.warning("Could not queue Outlook work for action %s: %s", action.pk, exc)
        response = error(503, "The work queue is unavailable; deliver again later.", "queue_unavailable")
        response["Retry-After"] = "30"
        return response
    return JsonResponse({"results": results, "rejected": len(batch) - len(genuine)}, status=202)


def outlook_accept(action: Action, notification: outlook.Notification) -> dict:
    if not notification.lifecycle_event:
        tasks.outlook_ingest_message.delay(str(action.pk), notification.message_id)
        return {"messageId": notification.message_id, "status": "queued"}
    result = ingest_event(
        action=action,
        event=outlook.lifecycle_event(notification, received_at=timezone.now().isoformat()),
        ignore_reason=f"Lifecycle notification ({notification.lifecycle_event}); the subscription is updated.",
    )
    if result.outcome != DUPLICATE:
        tasks.outlook_lifecycle.delay(
            str(action.pk), notification.lifecycle_event, notification.subscription_id
        )
    return {
        "lifecycleEvent": notification.lifecycle_event,
        "status": "queued",
        "providerEventId": result.event.pk,
    }
