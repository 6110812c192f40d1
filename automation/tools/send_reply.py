"""The ``send_reply`` tool: answer the conversation through the channel it came from.

A webhook action with a ``reply_url`` gets the reply POSTed there, signed with Standard
Webhooks and the action's (first) secret; the ``webhook-id`` is derived from the call's
idempotency key, so a retried run that repeats the call sends the same id and the receiver
can deduplicate (and we do not send again: ``tool_calls.perform_side_effect``). The URL
is the tenant's: it is reached only at public addresses unless its host is in
``AUTOMATION_REPLY_URL_ALLOWED_HOSTS``. Outlook actions reply through
``automation.providers.outlook_reply``.
"""

import json
from datetime import UTC, datetime

import httpx2
from django.conf import settings
from standardwebhooks import Webhook

from agentpress.agents.runtime import transport
from agentpress.ops.logs import redact_secrets
from automation.models import Action, AgentRun, ToolCall
from automation.providers import graph, outlook_reply
from automation.services.tool_calls import Acted

NAME = "send_reply"
MAX_TEXT = 20000
MAX_LINKS = 50
DESCRIPTION = (
    "Send a reply to the customer through the channel this conversation came from (the webhook's reply "
    "URL or the e-mail thread). It is not sent when a stop condition of this follow-up is met; you are told why."
)
PARAMETERS = {
    "type": "object",
    "properties": {"text": {"type": "string", "description": "The reply to send."}},
    "required": ["text"],
}


def conversation_action(run: AgentRun) -> Action | None:
    """The action the conversation came in through: the run's, or the nearest previous run's."""
    current = run
    for _ in range(MAX_LINKS):
        if current.action_id:
            return current.action
        if not current.previous_run_id:
            return None
        current = AgentRun.objects.select_related("action").get(pk=current.previous_run_id)
    return None


def unavailable(run: AgentRun) -> str:
    action = conversation_action(run)
    if action is None:
        return "This conversation did not come in through an action, so there is no channel to reply on."
    if action.provider == Action.Provider.WEBHOOK and not action.reply_url:
        return f"The action {action.name!r} has no reply URL."
    return ""


def check_text(arguments) -> str:
    text = arguments.get("text") if isinstance(arguments, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text is required: the reply to send.")
    if len(text) > MAX_TEXT:
        raise ValueError(f"text is longer than {MAX_TEXT} characters.")
    return text.strip()


def act(run: AgentRun, *, text: str, idempotency_key: str) -> Acted:
    action = conversation_action(run)
    if action is None:
        return Acted(ToolCall.Outcome.REFUSED, {"ok": False, "error": unavailable(run)})
    if action.provider == Action.Provider.OUTLOOK:
        try:
            sent = outlook_reply.send(
                action=action, run=run, thread=run.thread, text=text, idempotency_key=idempotency_key
            )
        except outlook_reply.ReplyRefused as exc:
            return Acted(ToolCall.Outcome.REFUSED, {"ok": False, "error": str(exc)})
        except graph.GraphError as exc:
            return Acted(
                ToolCall.Outcome.FAILED,
                {"ok": False, "error": f"Microsoft Graph did not take the reply ({exc}); nothing was sent."},
            )
        return Acted(ToolCall.Outcome.DONE, {"ok": True, **sent})
    return _post_webhook(action, run, text, idempotency_key)


def _post_webhook(action: Action, run: AgentRun, text: str, idempotency_key: str) -> Acted:
    message_id = f"msg_{idempotency_key[:40]}"
    body = json.dumps(
        {
            "type": "agent.reply",
            "run_id": str(run.pk),
            "thread_id": run.thread_id,
            "context_type": run.context_type,
            "context_key": run.context_key,
            "text": text,
        }
    )
    timestamp = datetime.now(UTC)
    secret = action.signing_secret.split()[0]
    headers = {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, timestamp, body),
    }
    try:
        with httpx2.Client(
            transport=transport.GuardedTransport(host_allowed=_host_allowed),
            timeout=settings.AUTOMATION_REPLY_TIMEOUT_SECONDS,
            follow_redirects=False,
        ) as client:
            response = client.post(action.reply_url, content=body, headers=headers)
    except transport.AddressRefused as exc:
        return Acted(ToolCall.Outcome.REFUSED, {"ok": False, "error": str(exc)})
    except httpx2.HTTPError as exc:
        error = f"The reply URL could not be reached ({type(exc).__name__}); nothing was delivered."
        return Acted(ToolCall.Outcome.FAILED, {"ok": False, "error": error, "webhook_id": message_id})
    if response.is_success:
        return Acted(
            ToolCall.Outcome.DONE, {"ok": True, "webhook_id": message_id, "status": response.status_code}
        )
    summary = redact_secrets(" ".join(response.text[:120].split()))
    error = f"The reply URL answered HTTP {response.status_code}: {summary}"
    return Acted(ToolCall.Outcome.FAILED, {"ok": False, "error": error, "webhook_id": message_id})


def _host_allowed(host: str) -> bool:
    allowed = {h.strip().lower().rstrip(".") for h in settings.AUTOMATION_REPLY_URL_ALLOWED_HOSTS}
    return host.lower().rstrip(".") in allowed
