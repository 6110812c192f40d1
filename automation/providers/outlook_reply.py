"""Replies of the ``send_reply`` tool for Outlook actions: in the same e-mail conversation,
through Graph ``POST /users/{mailbox}/messages/{id}/reply``.

The tool registry owns idempotency (a ``ToolCall`` per idempotency key) and the stop-condition
check; this module only sends, once per call it is given. Throttling (429 / 503 with
``Retry-After``) is waited out by the Graph client; a longer wait raises ``GraphThrottled``.
"""

import uuid
from urllib.parse import quote

from automation.models import OutlookSubscription, ProviderEvent
from automation.providers import graph, outlook

REPLY_NAMESPACE = uuid.UUID("5b0cbb5e-6c38-4d55-9c0e-2f8a5f3d7a41")


class ReplyRefused(Exception):
    """Nothing to reply to, or the action cannot reply (no mailbox); the reason is for the agent."""


def send(*, action, run, thread, text: str, idempotency_key: str) -> dict:
    """Reply to the latest message of the run's conversation; returns what was sent where."""
    subscription = OutlookSubscription.objects.filter(action=action).first()
    mailbox = subscription.mailbox if subscription else ""
    if not mailbox:
        raise ReplyRefused("This Outlook action has no mailbox configured, so it cannot reply.")
    conversation = run.context_key or thread.context_key
    message_id = latest_message_id(action=action, conversation_id=conversation)
    if not message_id:
        raise ReplyRefused("No e-mail of this conversation was received, so there is nothing to reply to.")
    graph.client().request(
        "POST",
        f"users/{quote(mailbox, safe='@')}/messages/{quote(message_id, safe='')}/reply",
        json={"comment": text},
        # Graph's request id is a GUID: derived from the key, the same call is the same request in its logs
        headers={"client-request-id": str(uuid.uuid5(REPLY_NAMESPACE, idempotency_key))},
    )
    return {
        "provider": "outlook",
        "mailbox": mailbox,
        "inReplyTo": message_id,
        "conversationId": conversation,
    }


def latest_message_id(*, action, conversation_id: str) -> str:
    """The newest message of the conversation that this action received."""
    event = (
        ProviderEvent.objects.filter(
            action=action,
            context_type=outlook.CONTEXT_TYPE,
            context_key=conversation_id,
            event_id__startswith="message:",
        )
        .order_by("-received_at", "-id")
        .first()
    )
    message_id = event.payload.get("messageId") if event and isinstance(event.payload, dict) else ""
    return message_id if isinstance(message_id, str) else ""
