"""Outlook through Microsoft Graph change notifications.

Graph first validates the endpoint (``POST ?validationToken=…``, answered by echoing the
token as ``text/plain``), then posts ``{"value": [notification, …]}``. Each notification
carries the ``clientState`` given when the subscription was created; it must equal one of
the action's secrets. Lifecycle notifications (``reauthorizationRequired``,
``subscriptionRemoved``, ``missed``) concern the subscription, not a message.

``inbound_event`` is the adapter boundary: it turns one notification into the normalized
``InboundEvent`` the ingestion service takes. It uses only what the notification carries
(rich notifications include ``conversationId``, subject and preview in ``resourceData``);
a Graph client that fetches the full message can be put behind the same function later.
"""

import hashlib
import hmac
import json

from automation.services.provider_events import InboundEvent

CONTEXT_TYPE = "email_thread"


class MalformedNotification(ValueError):
    """The body is JSON but not a Graph change notification collection."""


def notifications(body) -> list[dict]:
    value = body.get("value") if isinstance(body, dict) else None
    if not isinstance(value, list) or not value or not all(isinstance(n, dict) for n in value):
        raise MalformedNotification('Expected {"value": [notification, …]}.')
    return value


def client_state_matches(notification: dict, signing_secret: str) -> bool:
    offered = str(notification.get("clientState") or "").encode()
    # every secret is compared, in constant time, so which one matched is not observable
    matches = [hmac.compare_digest(offered, secret.encode()) for secret in signing_secret.split()]
    return bool(offered) and any(matches)


def is_lifecycle(notification: dict) -> bool:
    return bool(notification.get("lifecycleEvent"))


def inbound_event(notification: dict) -> InboundEvent:
    """A change notification about a message, as an event on its e-mail conversation.

    The conversation id is the context key; without one (a basic notification) the message
    id stands in, so the event still runs, in a conversation of its own.
    """
    data = notification.get("resourceData") or {}
    message_id = str(data.get("id") or "")
    conversation_id = str(data.get("conversationId") or "") or message_id
    change = notification.get("changeType", "")
    event_id = notification.get("id") or f"{notification.get('subscriptionId', '')}:{change}:{message_id}"
    lines = [f"Outlook: {change or 'new'} message {message_id}".rstrip()]
    for label, key in (("From", "from"), ("Subject", "subject"), ("Preview", "bodyPreview")):
        value = data.get(key)
        if isinstance(value, dict):  # Graph recipients: {"emailAddress": {"name", "address"}}
            value = (value.get("emailAddress") or {}).get("address")
        if value:
            lines.append(f"{label}: {value}")
    return InboundEvent(
        event_id=str(event_id),
        context_type=CONTEXT_TYPE,
        context_key=conversation_id[:255],
        payload=_redacted(notification),
        content="\n".join(lines),
        provider_context={
            "subscriptionId": notification.get("subscriptionId"),
            "tenantId": notification.get("tenantId"),
            "changeType": change,
            "resource": notification.get("resource"),
            "messageId": message_id,
            "conversationId": conversation_id,
        },
    )


def lifecycle_event(notification: dict) -> InboundEvent:
    """A lifecycle notification, kept for the record; it starts nothing."""
    kind = notification["lifecycleEvent"]
    event_id = (
        f"lifecycle:{notification.get('subscriptionId', '')}:{kind}:"
        f"{notification.get('subscriptionExpirationDateTime', '')}"
    )
    return InboundEvent(
        event_id=event_id, context_type="", context_key="", payload=_redacted(notification), content=""
    )


def rejected_event(notification: dict) -> InboundEvent:
    """A notification whose ``clientState`` did not match, kept for the record.

    Its id is derived from its content, never taken from it: an unauthenticated sender must
    not be able to claim the id of a genuine notification and have that one dropped as a repeat.
    """
    payload = _redacted(notification)
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:40]
    return InboundEvent(
        event_id=f"rejected:{digest}", context_type="", context_key="", payload=payload, content=""
    )


def _redacted(notification: dict) -> dict:
    """The notification without its ``clientState``, which is a shared secret."""
    return {k: v for k, v in notification.items() if k != "clientState"}
