"""Generic signed webhooks: Standard Webhooks verification and the event it yields.

A delivery carries ``webhook-id``, ``webhook-timestamp`` (Unix seconds) and
``webhook-signature``: space-separated ``v1,<base64 HMAC-SHA256>`` entries, each over
``"<id>.<timestamp>.<raw body>"`` with the base64-decoded ``whsec_…`` secret. The action
may hold several secrets (space-separated) and the sender several signatures, so a
secret can be rotated without a gap: any secret matching any signature is accepted.
Signatures are made and checked by the spec's own library, ``standardwebhooks``; the
headers and the timestamp are checked here first, so that a refusal says which is wrong.
"""

import base64
import json
import time
from datetime import UTC, datetime

from django.conf import settings
from standardwebhooks import Webhook, WebhookVerificationError

from automation.services.provider_events import InboundEvent

SECRET_PREFIX = "whsec_"
MAX_CONTENT_CHARS = 10_000


class SignatureError(Exception):
    """The delivery is not authentic (missing headers, stale timestamp, no matching signature)."""


class BodyNotText(ValueError):
    """The body is not UTF-8 text: it is no JSON, and no Standard Webhooks signature covers it."""


def secret_list(signing_secret: str) -> list[str]:
    return signing_secret.split()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (for tools that sign by hand, e.g. openssl)."""
    raw = secret.removeprefix(SECRET_PREFIX)
    return base64.b64decode(raw + "=" * (-len(raw) % 4))


def sign(*, secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` signature a sender puts in ``webhook-signature``."""
    return Webhook(secret).sign(msg_id, datetime.fromtimestamp(timestamp, UTC), body.decode())


def verify(*, signing_secret: str, headers, body: bytes) -> str:
    """Check a delivery and return its ``webhook-id``; raise ``SignatureError`` otherwise
    (``BodyNotText`` for a body that cannot be JSON, whatever its signature)."""
    msg_id = headers.get("webhook-id", "")
    raw_timestamp = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "")
    if not (msg_id and raw_timestamp and signatures):
        raise SignatureError("Missing webhook-id, webhook-timestamp or webhook-signature header.")
    try:
        timestamp = int(raw_timestamp)
    except ValueError as exc:
        raise SignatureError("webhook-timestamp is not a Unix timestamp.") from exc
    now = time.time()
    tolerance = settings.AUTOMATION_WEBHOOK_TOLERANCE_SECONDS
    # Both ways: an old timestamp is a replay, one far ahead is a signature minted for later replay.
    if timestamp < now - tolerance:
        raise SignatureError("webhook-timestamp is too old.")
    if timestamp > now + tolerance:
        raise SignatureError("webhook-timestamp is too far in the future.")
    try:
        text = body.decode()
    except UnicodeDecodeError as exc:
        raise BodyNotText("the body is not UTF-8 text") from exc
    # only well-formed v1 entries reach the library, which compares each in constant time
    offered = " ".join(s for s in signatures.split() if s.startswith("v1,") and s.count(",") == 1)
    signed = {"webhook-id": msg_id, "webhook-timestamp": raw_timestamp, "webhook-signature": offered}
    for secret in secret_list(signing_secret):
        try:
            Webhook(secret).verify(text, signed, json_parse=False)
        except (WebhookVerificationError, ValueError, RuntimeError):
            continue  # no match (or a malformed secret or signature): the next secret still may
        return msg_id
    raise SignatureError("No signature matches the action's signing secret.")


def resolve_pointer(document, pointer: str):
    """RFC 6901 JSON pointer lookup; ``None`` when the path does not exist."""
    if not pointer:
        return None
    if not pointer.startswith("/"):
        pointer = "/" + pointer
    node = document
    for token in pointer[1:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return None
    return node


def inbound_event(*, action, msg_id: str, payload) -> InboundEvent:
    """The normalized event of a verified delivery: id from ``webhook-id``, context key
    from the action's JSON pointer (an unresolvable pointer leaves the event without context)."""
    key = resolve_pointer(payload, action.context_key_pointer)
    context_key = str(key) if isinstance(key, str | int | float) and not isinstance(key, bool) else ""
    return InboundEvent(
        event_id=msg_id,
        context_type=action.context_type if context_key else "",
        context_key=context_key[:255],
        payload=payload,
        content=json.dumps(payload, indent=2, ensure_ascii=False)[:MAX_CONTENT_CHARS],
        provider_context={"webhookId": msg_id},
    )
