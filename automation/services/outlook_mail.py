"""Outlook mail (DESIGN §7a): every e-mail reaches its conversation's thread through
``ingest_message``, whether a notification named it or a resync found it.

- One event id per message (``message:<id>``), so a message notified and then found again by a
  resync is a repeat: counted, not fetched, and it starts nothing.
- ``walk_delta`` follows the folder's delta query page by page and returns the link to store
  only after every message of the round was ingested; a failure part-way leaves the old link,
  and the next round repeats what was already ingested harmlessly.
"""

from datetime import UTC, datetime
from urllib.parse import quote

from django.db.models import F
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from automation.models import Action, OutlookSubscription, ProviderEvent
from automation.providers.graph import GraphError, client
from automation.providers.outlook import (
    MESSAGE_FIELDS,
    message_event,
    message_event_id,
    missing_message_event,
)
from automation.services.provider_events import DUPLICATE, Ingested, ingest_event

MAX_DELTA_PAGES = 100
BODY_TEXT = {"Prefer": 'outlook.body-content-type="text"'}


def message_notified(*, action_id, message_id: str) -> str:
    """A notification named this message: ingest it. Graph errors propagate for the task to
    retry; should every retry fail, the next periodic resync still finds the message."""
    subscription = OutlookSubscription.objects.select_related("action").filter(action_id=action_id).first()
    if subscription is None or not subscription.mailbox:
        return "unconfigured"
    result = ingest_message(
        action=subscription.action, subscription=subscription, message_id=message_id, source="notification"
    )
    return result.outcome


def ingest_message(
    *, action: Action, subscription: OutlookSubscription, message_id: str, source: str
) -> Ingested:
    """Fetch one message and ingest it as the inbound event of its conversation. A message
    already ingested is a repeat (counted, not fetched); one deleted meanwhile is recorded."""
    event_id = message_event_id(message_id)
    known = ProviderEvent.objects.filter(action=action, event_id=event_id)
    if known.update(delivery_count=F("delivery_count") + 1):
        return Ingested(known.get(), DUPLICATE)
    mailbox = subscription.mailbox
    try:
        message = client().request(
            "GET",
            f"users/{quote(mailbox, safe='@')}/messages/{quote(message_id, safe='')}",
            params={"$select": MESSAGE_FIELDS},
            headers=BODY_TEXT,
        )
    except GraphError as exc:
        if exc.status != 404:
            raise
        return ingest_event(
            action=action,
            event=missing_message_event(message_id=message_id, mailbox=mailbox),
            ignore_reason="The message was deleted before it could be read.",
        )
    if not isinstance(message, dict) or not isinstance(message.get("id"), str):
        raise GraphError(f"Graph answered something that is not a message for {message_id}.")
    event = message_event(
        message=message, mailbox=mailbox, subscription_id=subscription.graph_id, source=source
    )
    return ingest_event(action=action, event=event)


def walk_delta(subscription: OutlookSubscription) -> str:
    """Walk the folder's delta from the stored link, ingest every message found, and return the
    link to store. Mail received before ``baseline_at`` (the first subscription) is skipped: a
    delta also returns old messages that were merely read, flagged or moved; they are not new."""
    graph = client()
    baseline = subscription.baseline_at or timezone.now()
    if subscription.delta_link:
        link, params = subscription.delta_link, None
    else:
        since = baseline.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        folder = quote(subscription.folder, safe="")
        link = f"users/{quote(subscription.mailbox, safe='@')}/mailFolders/{folder}/messages/delta"
        params = {"$select": "id,receivedDateTime", "$filter": f"receivedDateTime ge {since}"}
    for _ in range(MAX_DELTA_PAGES):
        page = graph.request("GET", link, params=params)
        params = None
        if not isinstance(page, dict):
            raise GraphError("Graph answered the delta query with something that is not a page.")
        for item in page.get("value") or []:
            if _is_new_mail(item, baseline):
                ingest_message(
                    action=subscription.action,
                    subscription=subscription,
                    message_id=item["id"],
                    source="resync",
                )
        link = page.get("@odata.nextLink") or page.get("@odata.deltaLink") or link
        if "@odata.nextLink" not in page:
            break
    return link


def _is_new_mail(item, baseline: datetime) -> bool:
    if not isinstance(item, dict) or not isinstance(item.get("id"), str) or "@removed" in item:
        return False
    received = item.get("receivedDateTime")
    parsed = parse_datetime(received) if isinstance(received, str) else None
    # one second of slack: Graph's filter compares whole seconds
    return parsed is None or parsed >= baseline.replace(microsecond=0)
