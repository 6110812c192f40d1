"""Demo provider events for seed_demo: a signed-webhook action and an Outlook action, with
deliveries in every status, made through the real ingestion service, and a ready ``curl``
command that sends a correctly signed event to the running demo."""

import json
import os
import shlex

from automation.models import Action, OutlookSubscription
from automation.providers import outlook
from automation.providers.webhook import secret_key
from automation.services.provider_events import InboundEvent, action_create, ingest_event

# The port `make run` serves on (honcho passes PORT through; 8000 by default).
HOOK_BASE = f"http://127.0.0.1:{os.environ.get('PORT') or 8000}/hooks/actions"


def ticket_event(event_id: str, ticket: str, text: str) -> InboundEvent:
    payload = {"type": "ticket.updated", "data": {"ticket": {"id": ticket}, "comment": {"body": text}}}
    return InboundEvent(
        event_id=event_id,
        context_type="ticket",
        context_key=ticket,
        payload=payload,
        content=json.dumps(payload, indent=2),
        provider_context={"webhookId": event_id},
    )


def mail_message(n: int, conversation: str, subject: str) -> dict:
    """A message as Graph returns it; the demo has no tenant, so it is ingested as if fetched."""
    return {
        "id": f"demo-message-{n}",
        "conversationId": conversation,
        "subject": subject,
        "receivedDateTime": f"2026-01-0{n}T09:00:00Z",
        "from": {"emailAddress": {"name": "Dana Whitfield", "address": "dana@example.com"}},
        "body": {"contentType": "text", "content": "Hello, I was charged twice for invoice 1042."},
    }


def seed(command, *, acme, globex, agents, users):
    """Idempotent: the actions are found by name, and deliveries are made only once."""
    support, owner = agents["support"], users["owner"]
    tickets = Action.objects.filter(organization=acme, name="Helpdesk tickets").first() or action_create(
        agent=support,
        run_as=owner,
        name="Helpdesk tickets",
        provider=Action.Provider.WEBHOOK,
        instructions="A ticket was updated. Reply to the customer.",
        context_type="ticket",
        context_key_pointer="/data/ticket/id",
    )
    mailbox = Action.objects.filter(organization=acme, name="Support mailbox").first() or action_create(
        agent=support,
        run_as=owner,
        name="Support mailbox",
        provider=Action.Provider.OUTLOOK,
        instructions="A customer e-mail arrived. Answer it.",
        debounce_seconds=60,
    )
    if not tickets.events.exists():
        ingest_event(action=tickets, event=ticket_event("msg_demo_1", "T-2001", "My order never arrived."))
        ingest_event(action=tickets, event=ticket_event("msg_demo_2", "T-2001", "Any news?"))  # deferred
        ingest_event(action=tickets, event=ticket_event("msg_demo_1", "T-2001", "My order never arrived."))
    # no tenant: the action's page lists the Graph settings an operator still has to provide
    OutlookSubscription.objects.get_or_create(
        action=mailbox, defaults={"organization": acme, "mailbox": "support@acme.example"}
    )
    if not mailbox.events.exists():
        for n, subject in [(1, "Invoice question"), (2, "Re: Invoice question")]:  # started, then coalesced
            message = mail_message(n, "demo-conversation-1", subject)
            ingest_event(
                action=mailbox,
                event=outlook.message_event(message=message, mailbox="support@acme.example", source="demo"),
            )
        ingest_event(
            action=mailbox,
            event=outlook.lifecycle_event(
                outlook.Notification("7f105c7d-2dc5-4530-97cd-4e7ae6534c07", lifecycle_event="missed"),
                received_at="2026-01-02T10:00:00Z",
            ),
            ignore_reason="Lifecycle notification (missed); the subscription is updated.",
        )
    command.stdout.write(command.style.MIGRATE_HEADING("Send a signed webhook event to the running demo:"))
    command.stdout.write(signed_curl(tickets))


def signed_curl(action: Action) -> str:
    """A shell snippet that signs at the moment it runs (the signature is only valid 5 minutes)."""
    body = json.dumps(
        {"type": "ticket.updated", "data": {"ticket": {"id": "T-3001"}, "comment": {"body": "Hello!"}}}
    )
    hex_key = secret_key(action.signing_secret.split()[0]).hex()
    return "\n".join(
        [
            f"BODY={shlex.quote(body)}",
            'ID="msg_$(date +%s%N)"; TS="$(date +%s)"',
            f'SIG="v1,$(printf \'%s\' "$ID.$TS.$BODY" | openssl dgst -sha256 -mac HMAC -macopt hexkey:{hex_key} '
            '-binary | base64)"',
            f"curl -sS -X POST {HOOK_BASE}/{action.pk}/ -H 'content-type: application/json' "
            '-H "webhook-id: $ID" -H "webhook-timestamp: $TS" -H "webhook-signature: $SIG" -d "$BODY"',
        ]
    )
