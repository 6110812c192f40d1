"""``send_reply`` on an Outlook conversation, run by the executor against a local Graph (issue 18:
a reply sent once across a retried run; a reply that arrived first suppresses the send)."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from automation.models import AgentRun, FollowUp, OutlookSubscription, ToolCall
from automation.services import follow_ups, outlook_mail, runs
from automation.services.execution import execute_run
from tests.factories import ActionFactory

MAILBOX = "support@acme.example"


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    """Runs are executed here, in the test, not by a worker."""
    monkeypatch.setattr(runs, "dispatch_run", lambda *, run_id: True)


@pytest.fixture
def mailbox(roster, graph_stub):
    """An Outlook action of an agent that may ``send_reply``; its instructions are the script."""
    roster.agent.tools = ["send_reply"]
    roster.agent.save()
    action = ActionFactory(
        organization=roster.org, agent=roster.agent, run_as=roster.owner, provider="outlook",
        context_type="email_thread", context_key_pointer="",
    )  # fmt: skip
    OutlookSubscription.objects.create(action=action, organization=roster.org, mailbox=MAILBOX)
    return action


def mail(action, graph_stub, instructions, *, subject="Printer broken"):
    """An e-mail of conversation ``conv-7`` arrives; returns its message id and the run it started."""
    action.instructions = instructions
    action.save()
    message_id = graph_stub.add_message(subject=subject, conversation="conv-7")
    assert outlook_mail.message_notified(action_id=action.pk, message_id=message_id) == "started"
    return message_id, AgentRun.objects.get(action=action, retry_of=None, follow_up=None)


def execute(run):
    outcome = execute_run(run_id=run.pk, worker="w1")
    run.refresh_from_db()
    return outcome


def test_an_outlook_reply_is_sent_once_across_a_retried_run(client, roster, mailbox, graph_stub):
    message_id, run = mail(
        mailbox, graph_stub, "!send_reply Your printer is fixed.\n!fail the model fell over after sending"
    )
    assert execute(run) == "failed"
    sent = [{"mailbox": MAILBOX, "messageId": message_id, "comment": "Your printer is fixed."}]
    assert graph_stub.replies == sent
    retry = runs.retry_run(run_id=run.pk, actor=roster.owner)
    assert execute(retry) == "failed"
    assert graph_stub.replies == sent, "the retried run replied to the e-mail again"
    assert len(graph_stub.calls("POST", "/reply$")) == 1
    (record,) = ToolCall.objects.all()
    assert record.run_id == run.pk and record.outcome == ToolCall.Outcome.DONE
    assert record.result == {
        "ok": True, "provider": "outlook", "mailbox": MAILBOX, "inReplyTo": message_id,
        "conversationId": "conv-7",
    }  # fmt: skip
    done = run.events.get(kind="tool_call")
    assert done.detail["tool_call_id"] == record.pk and done.detail["outcome"] == "done"
    replayed = retry.events.get(kind="tool_call_replayed")
    assert replayed.detail["tool_call_id"] == record.pk and replayed.detail["outcome"] == "done"
    assert not retry.events.filter(kind="tool_call").exists()
    client.force_login(roster.owner)
    for shown, kind in ((run, "tool_call"), (retry, "tool_call_replayed")):
        entry = timeline_entry(client, shown, kind)
        assert "tool=send_reply" in entry and f"tool_call_id={record.pk}" in entry and "outcome=done" in entry


def timeline_entry(client, run, kind) -> str:
    """The entry of ``kind`` in the timeline of the run's page in the console."""
    page = client.get(f"/orgs/acme/agents/monitor/automation-runs/{run.pk}/").content.decode()
    (entry,) = re.findall(rf'<li><span class="kind">{kind}</span>.*?</li>', page, flags=re.S)
    return entry


@pytest.fixture
def clock(time_machine):
    time_machine.move_to(timezone.now(), tick=True)
    return time_machine


def test_an_e_mail_that_arrived_during_the_follow_up_suppresses_the_outlook_reply(
    roster, mailbox, graph_stub, clock
):
    _, first = mail(mailbox, graph_stub, "!follow_up 3600 Nudge the customer\n!stop_when reply_received")
    assert execute(first) == "completed"
    follow_up = FollowUp.objects.get()
    follow_up.continuation_prompt = "!send_reply Any news?"
    follow_up.save()
    clock.move_to(timezone.now() + timedelta(hours=2))
    assert follow_ups.fire_due_follow_ups() == 1  # no e-mail yet: the follow-up fires
    run = follow_up.fulfilling_run
    answer = graph_stub.add_message(subject="Re: Printer broken", conversation="conv-7")
    outlook_mail.message_notified(action_id=mailbox.pk, message_id=answer)  # the customer wrote back
    reply = run.thread.messages.get(role="event", metadata__event_id=f"message:{answer}")
    assert execute(run) == "completed"
    assert graph_stub.replies == [] and graph_stub.calls("POST", "/reply$") == []
    (record,) = ToolCall.objects.all()
    assert record.outcome == ToolCall.Outcome.SUPPRESSED
    assert record.evidence["condition"] == "reply_received" and record.evidence["message_id"] == reply.pk
    told = run.thread.messages.get(run=run, role="tool").content
    assert told.startswith("send_reply not done: Not done: Stop condition reply_received met")
