"""``send_reply`` for Outlook: a reply in the same conversation, through Graph."""

import uuid

import pytest

from automation.models import AgentRun, OutlookSubscription
from automation.providers import graph, outlook_reply
from automation.services import outlook_mail, runs
from tests.factories import ActionFactory


@pytest.fixture
def conversation(roster, graph_stub, monkeypatch):
    """An Outlook action whose conversation ``conv-9`` received two e-mails, and the run they started."""
    monkeypatch.setattr(runs, "dispatch_run", lambda *, run_id, **_: True)
    action = ActionFactory(
        organization=roster.org, agent=roster.agent, run_as=roster.owner, provider="outlook"
    )
    OutlookSubscription.objects.create(action=action, organization=roster.org, mailbox="support@acme.example")
    first = graph_stub.add_message(subject="Refund", conversation="conv-9")
    latest = graph_stub.add_message(subject="Re: Refund", conversation="conv-9")
    outlook_mail.message_notified(action_id=action.pk, message_id=first)
    outlook_mail.message_notified(action_id=action.pk, message_id=latest)  # deferred behind the first run
    run = AgentRun.objects.get()
    return action, run, latest


def test_the_reply_goes_to_the_latest_message_of_the_conversation(conversation, graph_stub):
    action, run, latest = conversation
    sent = outlook_reply.send(
        action=action, run=run, thread=run.thread, text="Refund issued.", idempotency_key="k-1"
    )
    assert graph_stub.replies == [
        {"mailbox": "support@acme.example", "messageId": latest, "comment": "Refund issued."}
    ]
    assert sent == {
        "provider": "outlook",
        "mailbox": "support@acme.example",
        "inReplyTo": latest,
        "conversationId": "conv-9",
    }
    [call] = graph_stub.calls("POST", "/reply$")
    assert call.headers["client-request-id"] == str(uuid.uuid5(outlook_reply.REPLY_NAMESPACE, "k-1"))


def test_a_throttled_reply_waits_and_is_sent_once(conversation, graph_stub):
    action, run, _ = conversation
    waits = []
    graph.client().sleep = waits.append
    graph_stub.fail("POST", "/reply$", 503, headers={"Retry-After": "2"})
    outlook_reply.send(action=action, run=run, thread=run.thread, text="Hello", idempotency_key="k-2")
    assert waits == [2.0] and len(graph_stub.replies) == 1


def test_a_long_throttle_is_raised_for_the_tool_to_report(conversation, graph_stub):
    action, run, _ = conversation
    graph_stub.fail("POST", "/reply$", 429, headers={"Retry-After": "3600"})
    with pytest.raises(graph.GraphThrottled) as throttled:
        outlook_reply.send(action=action, run=run, thread=run.thread, text="Hello", idempotency_key="k-3")
    assert throttled.value.retry_after == 3600 and graph_stub.replies == []


def test_without_a_mailbox_or_a_received_message_the_reply_is_refused(roster, graph_stub, conversation):
    action, run, _ = conversation
    OutlookSubscription.objects.filter(action=action).update(mailbox="")
    with pytest.raises(outlook_reply.ReplyRefused, match="no mailbox"):
        outlook_reply.send(action=action, run=run, thread=run.thread, text="x", idempotency_key="k-4")
    OutlookSubscription.objects.filter(action=action).update(mailbox="support@acme.example")
    run.context_key = "another-conversation"
    with pytest.raises(outlook_reply.ReplyRefused, match="nothing to reply to"):
        outlook_reply.send(action=action, run=run, thread=run.thread, text="x", idempotency_key="k-5")
    assert graph_stub.replies == []
