"""Outlook through Microsoft Graph change notifications: parsing, authentication, the event.

Graph first validates the endpoint (``POST ?validationToken=…``, answered by echoing the
token as ``text/plain``), then posts ``{"value": [notification, …]}``. Each notification
carries the ``clientState`` given when the subscription was created; it must equal one of
the action's secrets. Lifecycle notifications (``reauthorizationRequired``,
``subscriptionRemoved``, ``missed``) concern the subscription, not a message.

Order of the checks (issue 13, defect 5): the batch size is capped, then every notification
is authenticated, and only what is authentic is validated, counted and stored. A forged post
costs one parse and a few constant-time compares, and leaves no row behind.

A notification only names a message; the message itself is fetched from Graph
(``message_event`` turns it into the event written to the thread), so a notification and a
resync that finds the same message yield the same event id and the second is a repeat.
"""

import hashlib
import hmac
from dataclasses import dataclass

from django.conf import settings
from django.utils.html import strip_tags

from automation.services.provider_events import InboundEvent

CONTEXT_TYPE = "email_thread"
LIFECYCLE_EVENTS = ("reauthorizationRequired", "subscriptionRemoved", "missed")
MESSAGE_FIELDS = "id,subject,from,receivedDateTime,conversationId,bodyPreview,body,internetMessageId"
TRUNCATED = "\n[… truncated]"


class MalformedNotification(ValueError):
    """The body is JSON but not a Graph change notification collection."""


class BatchTooLarge(ValueError):
    """More notifications in one post than ``AUTOMATION_OUTLOOK_MAX_BATCH``."""


@dataclass(frozen=True)
class Notification:
    """An authenticated notification, reduced to what we act on."""

    subscription_id: str
    lifecycle_event: str = ""
    message_id: str = ""
    expiration: str = ""
    raw: dict | None = None


def notifications(body) -> list[dict]:
    value = body.get("value") if isinstance(body, dict) else None
    if not isinstance(value, list) or not value or not all(isinstance(n, dict) for n in value):
        raise MalformedNotification('Expected {"value": [notification, …]}.')
    if len(value) > settings.AUTOMATION_OUTLOOK_MAX_BATCH:
        raise BatchTooLarge(
            f"{len(value)} notifications in one post; at most {settings.AUTOMATION_OUTLOOK_MAX_BATCH} are accepted."
        )
    return value


def client_state_matches(notification: dict, signing_secret: str) -> bool:
    offered = notification.get("clientState")
    if not isinstance(offered, str) or not offered:
        return False
    # every secret is compared, in constant time, so which one matched is not observable
    matches = [hmac.compare_digest(offered.encode(), secret.encode()) for secret in signing_secret.split()]
    return any(matches)


def authentic(batch: list[dict], signing_secret: str) -> list[dict]:
    return [n for n in batch if client_state_matches(n, signing_secret)]


def parse(notification: dict) -> Notification:
    """Validate an authenticated notification's shape; ``MalformedNotification`` names the field."""
    subscription_id = _text(notification, "subscriptionId", required=False)
    if "lifecycleEvent" in notification:
        kind = notification["lifecycleEvent"]
        if kind not in LIFECYCLE_EVENTS:
            raise MalformedNotification(f"lifecycleEvent must be one of {', '.join(LIFECYCLE_EVENTS)}.")
        expiration = _text(notification, "subscriptionExpirationDateTime", required=False)
        return Notification(subscription_id, lifecycle_event=kind, expiration=expiration, raw=notification)
    data = notification.get("resourceData")
    if not isinstance(data, dict):
        raise MalformedNotification("resourceData must be an object.")
    sender = data.get("from")
    if sender is not None and not (isinstance(sender, dict) and isinstance(sender.get("emailAddress"), dict)):
        raise MalformedNotification("resourceData.from.emailAddress must be an object.")
    message_id = _text(data, "id", required=True, label="resourceData.id")
    return Notification(subscription_id, message_id=message_id, raw=notification)


def _text(container: dict, key: str, *, required: bool, label: str = "") -> str:
    value = container.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value) or len(value) > 1000:
        raise MalformedNotification(f"{label or key} must be a string of at most 1000 characters.")
    return value


def message_event_id(message_id: str) -> str:
    """One id per message, whichever way it arrived (notification or resync)."""
    if len(message_id) <= 240:
        return f"message:{message_id}"
    return "message:sha256:" + hashlib.sha256(message_id.encode()).hexdigest()


def message_event(*, message: dict, mailbox: str, subscription_id: str = "", source: str) -> InboundEvent:
    """A fetched Graph message as the inbound event of its conversation (the context key).

    The body is plain text (asked for with ``Prefer: outlook.body-content-type="text"``; HTML
    is stripped should Graph send it anyway), bounded by ``AUTOMATION_OUTLOOK_MAX_BODY_CHARS``.
    """
    message_id = str(message.get("id") or "")
    conversation_id = str(message.get("conversationId") or "") or message_id
    subject = str(message.get("subject") or "")
    sender = sender_of(message)
    received = str(message.get("receivedDateTime") or "")
    lines = ["Outlook e-mail" + (f" received {received}" if received else "")]
    if sender:
        lines.append(f"From: {sender}")
    lines.append(f"Subject: {subject or '(no subject)'}")
    content = "\n".join(lines) + "\n\n" + body_text(message)
    return InboundEvent(
        event_id=message_event_id(message_id),
        context_type=CONTEXT_TYPE,
        context_key=conversation_id[:255],
        payload={
            "messageId": message_id,
            "conversationId": conversation_id,
            "internetMessageId": str(message.get("internetMessageId") or ""),
            "subject": subject[:500],
            "from": sender[:500],
            "receivedDateTime": received,
            "mailbox": mailbox,
            "subscriptionId": subscription_id,
            "source": source,
        },
        content=content,
        provider_context={
            "mailbox": mailbox,
            "messageId": message_id,
            "conversationId": conversation_id,
            "subscriptionId": subscription_id,
        },
    )


def sender_of(message: dict) -> str:
    sender = message.get("from")
    address = sender.get("emailAddress") if isinstance(sender, dict) else None
    if not isinstance(address, dict):
        return ""
    name, email = str(address.get("name") or ""), str(address.get("address") or "")
    if name and email and name != email:
        return f"{name} <{email}>"
    return email or name


def body_text(message: dict) -> str:
    limit = settings.AUTOMATION_OUTLOOK_MAX_BODY_CHARS
    body = message.get("body")
    text = ""
    if isinstance(body, dict) and isinstance(body.get("content"), str):
        text = body["content"]
        if str(body.get("contentType", "")).lower() == "html":
            text = strip_tags(text)
    text = text.strip() or str(message.get("bodyPreview") or "").strip()
    return text if len(text) <= limit else text[:limit] + TRUNCATED


def missing_message_event(*, message_id: str, mailbox: str) -> InboundEvent:
    """A notified message that was gone before it could be read, kept for the record."""
    return InboundEvent(
        event_id=message_event_id(message_id),
        context_type="",
        context_key="",
        payload={"messageId": message_id, "mailbox": mailbox},
        content="",
    )


def lifecycle_event(notification: Notification, *, received_at: str) -> InboundEvent:
    """A lifecycle notification, kept for the record; the subscription service acts on it.

    Lifecycle notifications carry no id of their own and a second ``missed`` is as real as the
    first, so each is its own event (acting twice is harmless: a resync deduplicates by message).
    """
    own_id = (notification.raw or {}).get("id")
    suffix = own_id if isinstance(own_id, str) and own_id else received_at
    event_id = f"lifecycle:{notification.subscription_id}:{notification.lifecycle_event}:{suffix}"
    payload = {k: v for k, v in (notification.raw or {}).items() if k != "clientState"}
    return InboundEvent(event_id=event_id, context_type="", context_key="", payload=payload, content="")
