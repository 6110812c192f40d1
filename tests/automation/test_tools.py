"""The tool registry, the guarded ``send_reply`` and the runaway guards (issue 17 items 3, 5, 6)."""

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone
from standardwebhooks import Webhook

from agentpress.agents.models import Message, MessageRole
from automation import tools
from automation.models import Action, AgentRun, FollowUp, FollowUpRefusal, ToolCall
from automation.services import follow_ups, runs, usage
from automation.services.execution import execute_run
from automation.states import RunSource, RunStatus
from tests.factories import ActionFactory, AgentRunFactory
from tests.support.model_stub import ModelStub, Reply, completion, tool_call

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Receiver:
    """The customer's side of a reply URL: verifies every delivery with standardwebhooks."""

    def __init__(self):
        self.deliveries: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                payload = Webhook(SECRET).verify(body, dict(self.headers.items()))
                receiver.deliveries.append({"id": self.headers["webhook-id"], "payload": payload})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/replies"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def clock(time_machine):
    time_machine.move_to(timezone.now(), tick=True)
    return time_machine


@pytest.fixture
def receiver(settings):
    settings.AUTOMATION_REPLY_URL_ALLOWED_HOSTS = ["127.0.0.1"]
    server = Receiver()
    yield server
    server.server.shutdown()


@pytest.fixture
def replying_agent(roster):
    roster.agent.tools = ["send_reply"]
    roster.agent.save()
    return roster.agent


def provider_run(roster, action, prompt):
    return runs.run_create(
        agent=action.agent, run_as=roster.owner, source=RunSource.PROVIDER_EVENT, prompt=prompt,
        action=action, provider="webhook", context_type="ticket", context_key="T-1",
    )  # fmt: skip


def execute(run):
    outcome = execute_run(run_id=run.pk, worker="w1")
    run.refresh_from_db()
    return outcome


def test_send_reply_posts_a_signed_reply_once_across_a_retried_run(roster, receiver, replying_agent):
    action = ActionFactory(
        agent=replying_agent, run_as=roster.owner, reply_url=receiver.url, signing_secret=SECRET
    )
    run = provider_run(
        roster, action, "!send_reply Your printer is fixed.\n!fail the model fell over after sending"
    )
    assert execute(run) == "failed"
    assert [d["payload"]["text"] for d in receiver.deliveries] == ["Your printer is fixed."]
    retry = runs.retry_run(run_id=run.pk, actor=roster.owner)
    assert execute(retry) == "failed"
    assert len(receiver.deliveries) == 1, "the retried run did not send again"
    (record,) = ToolCall.objects.all()
    assert record.run_id == run.pk and record.outcome == "done"
    assert record.result["webhook_id"] == receiver.deliveries[0]["id"]
    assert retry.events.filter(kind="tool_call_replayed").exists()


def test_a_reply_that_arrived_during_the_follow_up_suppresses_the_send(
    client, roster, receiver, replying_agent, clock
):
    action = ActionFactory(
        agent=replying_agent, run_as=roster.owner, reply_url=receiver.url, signing_secret=SECRET
    )
    first = provider_run(roster, action, "!follow_up 3600 Nudge the customer\n!stop_when reply_received")
    assert execute(first) == "completed"
    follow_up = FollowUp.objects.get()
    follow_up.continuation_prompt = "!send_reply Any news?"
    follow_up.save()
    clock.move_to(timezone.now() + timedelta(hours=2))
    assert follow_ups.fire_due_follow_ups() == 1  # no reply yet: the follow-up fires
    run = follow_up.fulfilling_run
    reply = Message.objects.create(
        thread=run.thread, role=MessageRole.EVENT, content="Fixed it myself, thanks"
    )
    assert execute(run) == "completed"
    assert receiver.deliveries == []
    (record,) = ToolCall.objects.all()
    assert record.outcome == ToolCall.Outcome.SUPPRESSED
    assert record.evidence["condition"] == "reply_received" and record.evidence["message_id"] == reply.pk
    event = run.events.get(kind="tool_call_suppressed")
    assert event.detail["message_id"] == reply.pk
    told = run.thread.messages.get(run=run, role="tool").content
    assert told.startswith("send_reply not done: Not done: Stop condition reply_received met")
    client.force_login(roster.owner)
    page = client.get(f"/orgs/acme/threads/{run.thread_id}/").content.decode()
    assert "<strong>Suppressed by a stop condition</strong>" in page
    assert f"Evidence: Stop condition reply_received met: event message {reply.pk} arrived" in page


def test_a_reply_url_inside_our_network_is_refused(roster, replying_agent, settings):
    action = ActionFactory(
        agent=replying_agent, run_as=roster.owner, reply_url="http://169.254.169.254/latest/"
    )
    run = provider_run(roster, action, "!send_reply hello")
    assert execute(run) == "completed"
    record = ToolCall.objects.get()
    assert record.outcome == "refused" and "169.254.169.254 is a link-local address" in record.result["error"]


def test_an_outlook_action_without_a_mailbox_answers_that_it_cannot_reply(roster, replying_agent):
    action = ActionFactory(agent=replying_agent, run_as=roster.owner, provider=Action.Provider.OUTLOOK)
    run = provider_run(roster, action, "!send_reply hello")
    assert execute(run) == "completed"
    assert "no mailbox configured" in ToolCall.objects.get().result["error"]


def test_send_reply_is_offered_only_when_chosen_and_the_run_has_a_channel(roster):
    action = ActionFactory(agent=roster.agent, run_as=roster.owner, reply_url="https://example.com/r")
    run = AgentRunFactory(agent=roster.agent, run_as=roster.owner, action=action)
    offered = lambda: [t.name for t in tools.tools_for_run(run=run, lease_token=None)]  # noqa: E731
    assert offered() == ["schedule_follow_up"]
    roster.agent.tools = ["send_reply"]
    roster.agent.save()
    assert offered() == ["schedule_follow_up", "send_reply"]
    run.action = None
    assert offered() == ["schedule_follow_up"]


def test_capabilities_page_sets_the_agents_tools_for_owners_only(client, roster):
    url = f"/orgs/acme/agents/{roster.agent.pk}/capabilities/"
    client.force_login(roster.member)
    client.post(url, {"tools": ["send_reply"]})
    roster.agent.refresh_from_db()
    assert roster.agent.tools == []
    client.force_login(roster.owner)
    client.post(url, {"self_reschedule_enabled": "on", "tools": ["send_reply", "rm_rf"]})
    roster.agent.refresh_from_db()
    assert roster.agent.tools == ["send_reply"]
    assert 'name="tools" value="send_reply" checked' in client.get(url).content.decode()


def chain_run(roster, depth, claim=True):
    """A running (or, unclaimed, pending) run at the end of a chain of ``depth`` follow-ups."""
    previous = AgentRunFactory(agent=roster.agent, run_as=roster.owner, status=RunStatus.COMPLETED)
    for _ in range(depth):
        follow_up = FollowUp.objects.create(
            organization=roster.org, agent=roster.agent, run_as=roster.owner, previous_run=previous,
            continuation_prompt="again", scheduled_for=timezone.now(), status="running",
        )  # fmt: skip
        previous = AgentRunFactory(
            agent=roster.agent, run_as=roster.owner, source=RunSource.FOLLOW_UP, follow_up=follow_up,
            status=RunStatus.COMPLETED,
        )  # fmt: skip
    run = AgentRunFactory(
        agent=roster.agent, run_as=roster.owner, source=RunSource.FOLLOW_UP, status=RunStatus.PENDING,
        follow_up=FollowUp.objects.create(
            organization=roster.org, agent=roster.agent, run_as=roster.owner, previous_run=previous,
            continuation_prompt="again", scheduled_for=timezone.now(), status="running",
        ),
    )  # fmt: skip
    return runs.claim_run(run_id=run.pk, worker="w1") if claim else run


def test_a_follow_up_chain_at_the_limit_is_refused_back_to_the_agent(roster, settings):
    settings.AUTOMATION_MAX_FOLLOW_UP_CHAIN = 3
    ok = chain_run(roster, depth=1)  # this run is follow-up 2 of its chain
    assert follow_ups.schedule_follow_up(
        run_id=ok.run.pk, lease_token=ok.token, arguments={"delay_seconds": 3600, "continuation_prompt": "x"}
    )["ok"]
    lease = chain_run(roster, depth=2)  # follow-up 3: a fourth would pass the limit
    result = follow_ups.schedule_follow_up(
        run_id=lease.run.pk,
        lease_token=lease.token,
        arguments={"delay_seconds": 3600, "continuation_prompt": "x"},
    )
    assert result["ok"] is False and "AUTOMATION_MAX_FOLLOW_UP_CHAIN is 3" in result["error"]
    assert "follow-up 3 of a chain" in lease.run.events.get(kind="follow_up_refused").detail["reason"]


def test_more_follow_ups_from_one_run_than_allowed_are_refused(roster, settings):
    settings.AUTOMATION_MAX_FOLLOW_UPS_PER_RUN = 1
    run = runs.run_create(
        agent=roster.agent, run_as=roster.owner, source=RunSource.MANUAL,
        prompt="!follow_up 3600 first\n!follow_up 7200 second",
    )  # fmt: skip
    assert execute(run) == "completed"
    assert list(FollowUp.objects.values_list("continuation_prompt", flat=True)) == ["first"]
    refusal = run.events.get(kind="follow_up_refused").detail["reason"]
    assert "already scheduled 1 follow-ups (AUTOMATION_MAX_FOLLOW_UPS_PER_RUN is 1)" in refusal


def test_the_thread_page_shows_model_calls_tool_calls_and_suppressed_sends_in_order(
    client, roster, replying_agent
):
    action = ActionFactory(agent=replying_agent, run_as=roster.owner, reply_url="http://10.0.0.1/r")
    run = provider_run(roster, action, "!reply Looking into it\n!send_reply On it")
    execute(run)
    record = ToolCall.objects.get()
    client.force_login(roster.owner)
    page = client.get(f"/orgs/acme/threads/{run.thread_id}/").content.decode()
    model_at, tool_at = (
        page.index(f'id="model-call-{run.model_calls.get().pk}"'),
        page.index(f'id="tool-call-{record.pk}"'),
    )
    assert model_at < tool_at
    assert "scripted / scripted</span>, attempt 1: OK" in page and "7 tokens in, 3 out" in page
    assert "Tool call: send_reply" in page and "<strong>Refused</strong>" in page and "On it" in page
    assert "10.0.0.1 is a private network address" in page


def test_a_member_sees_the_calls_of_their_own_runs_only(client, roster):
    mine = runs.run_create(
        agent=roster.agent, run_as=roster.member, source=RunSource.MANUAL, prompt="!reply mine"
    )
    execute(mine)
    theirs = runs.run_create(
        agent=roster.agent,
        run_as=roster.owner,
        source=RunSource.MANUAL,
        prompt="!reply owner secret plan",
    )  # fmt: skip  (the owner's work may not join the member's thread: scope.check_thread)
    execute(theirs)
    ToolCall.objects.create(
        run=theirs, organization=roster.org, tool="send_reply", idempotency_key="owner-1",
        arguments={"text": "owner-only text"}, outcome="done", result={"ok": True},
    )  # fmt: skip
    client.force_login(roster.member)
    page = client.get(f"/orgs/acme/threads/{mine.thread_id}/").content.decode()
    assert f'id="model-call-{mine.model_calls.get().pk}"' in page
    assert f'id="model-call-{theirs.model_calls.get().pk}"' not in page and "owner-only text" not in page
    other = client.get(f"/orgs/acme/threads/{theirs.thread_id}/")
    assert other.status_code == 404 and "owner-only text" not in other.content.decode()


# Against a local OpenAI-compatible endpoint: the model asks for send_reply itself ----------


@pytest.fixture
def model_stub(settings):
    server = ModelStub().start()
    settings.AUTOMATION_MODEL_ENDPOINTS = {"stub": {"base_url": server.url, "max_retries": 1}}
    yield server
    server.stop()


def on_the_model(agent):
    agent.runtime = "openai"
    agent.runtime_config = {"endpoint": "stub", "model": "gpt-stub"}
    agent.save()
    return agent


def test_a_model_asking_to_send_sends_once_across_a_retried_run(roster, receiver, replying_agent, model_stub):
    on_the_model(replying_agent)
    action = ActionFactory(
        agent=replying_agent, run_as=roster.owner, reply_url=receiver.url, signing_secret=SECRET
    )
    asks_to_send = Reply(
        body=completion(None, tool_calls=[tool_call("send_reply", {"text": "Your printer is fixed."})])
    )
    model_stub.replies = [
        asks_to_send,
        *[Reply(status=500, body={"error": {"message": "boom"}})] * 2,  # the run fails after sending
        asks_to_send,  # the retry asks again
        Reply(body=completion("Told the customer.")),
    ]  # fmt: skip
    run = provider_run(roster, action, "The printer is fixed; tell the customer.")
    assert execute(run) == "failed"
    assert run.last_error.startswith("The model endpoint 'stub' answered HTTP 500 after 2 attempts")
    retry = runs.retry_run(run_id=run.pk, actor=roster.owner)
    assert execute(retry) == "completed"
    assert [d["payload"]["text"] for d in receiver.deliveries] == ["Your printer is fixed."]
    (record,) = ToolCall.objects.all()
    assert (record.run_id, record.outcome) == (run.pk, "done")
    assert retry.events.filter(kind="tool_call_replayed").exists()
    # the retry's model saw the stored result of the send, not a second one
    told = json.loads(model_stub.requests[-1]["body"]["messages"][-1]["content"])
    assert told == {**record.result, "replayed": True}


def test_a_reply_arriving_while_the_model_answers_suppresses_its_send(
    roster, receiver, replying_agent, model_stub, clock, monkeypatch
):
    action = ActionFactory(
        agent=replying_agent, run_as=roster.owner, reply_url=receiver.url, signing_secret=SECRET
    )
    first = provider_run(roster, action, "!follow_up 3600 Nudge the customer\n!stop_when reply_received")
    assert execute(first) == "completed"
    on_the_model(replying_agent)
    clock.move_to(timezone.now() + timedelta(hours=2))
    assert follow_ups.fire_due_follow_ups() == 1  # no reply yet: the follow-up fires
    run = FollowUp.objects.get().fulfilling_run
    model_stub.replies = [
        Reply(body=completion(None, tool_calls=[tool_call("send_reply", {"text": "Any news?"})])),
        Reply(body=completion("The customer already replied; nothing sent.")),
    ]
    arrived = []
    record = usage.UsageRecorder.record

    def the_customer_replies_meanwhile(self, call):
        record(self, call)
        if not arrived:  # the run is running and its model is answering
            assert AgentRun.objects.get(pk=self.run.pk).status == RunStatus.RUNNING
            arrived.append(
                Message.objects.create(thread=run.thread, role=MessageRole.EVENT, content="Fixed it")
            )

    monkeypatch.setattr(usage.UsageRecorder, "record", the_customer_replies_meanwhile)
    assert execute(run) == "completed"
    assert receiver.deliveries == []
    (suppressed,) = ToolCall.objects.all()
    assert suppressed.outcome == ToolCall.Outcome.SUPPRESSED
    assert suppressed.evidence["message_id"] == arrived[0].pk
    told = json.loads(model_stub.requests[-1]["body"]["messages"][-1]["content"])
    assert told["ok"] is False and "Stop condition reply_received met" in told["error"]


def test_with_self_reschedule_off_the_model_still_gets_the_tool_and_its_call_is_refused_once(
    roster, model_stub
):
    agent = on_the_model(roster.agent)
    agent.self_reschedule_enabled = False
    agent.save()
    arguments = {"delay_seconds": 7200, "continuation_prompt": "check the refund"}
    model_stub.replies = [
        Reply(body=completion(None, tool_calls=[tool_call("schedule_follow_up", arguments)])),
        Reply(body=completion("I cannot follow up by myself.")),
    ]
    run = runs.run_create(agent=agent, run_as=roster.owner, source=RunSource.MANUAL, prompt="Follow up later")
    assert execute(run) == "completed"
    offered = [t["function"]["name"] for t in model_stub.requests[0]["body"]["tools"]]
    assert offered == ["schedule_follow_up"]
    (refusal,) = FollowUpRefusal.objects.filter(run=run)
    assert refusal.code == "capability_off" and "Self-reschedule" in refusal.reason
    assert list(run.events.filter(kind="follow_up_refused").values_list("detail__code", flat=True)) == [
        "capability_off"
    ]
    told = json.loads(model_stub.requests[1]["body"]["messages"][-1]["content"])
    assert told == {"ok": False, "error": refusal.reason}
    assert not FollowUp.objects.exists()


def test_a_model_asking_past_the_chain_limit_is_told_why_and_the_refusal_is_on_the_timeline(
    roster, model_stub, settings
):
    settings.AUTOMATION_MAX_FOLLOW_UP_CHAIN = 2
    agent = on_the_model(roster.agent)
    agent.self_reschedule_enabled = True
    agent.save()
    run = chain_run(roster, depth=1, claim=False)  # follow-up 2 of its chain: a third would pass the limit
    model_stub.replies = [
        Reply(body=completion(None, tool_calls=[tool_call("schedule_follow_up", {"delay_seconds": 3600, "continuation_prompt": "again"})])),
        Reply(body=completion("Stopping the chain here.")),
    ]  # fmt: skip
    assert execute(run) == "completed"
    assert not FollowUp.objects.filter(previous_run=run).exists()
    refused = run.events.get(kind="follow_up_refused").detail
    assert refused["code"] == "runaway_guard" and "AUTOMATION_MAX_FOLLOW_UP_CHAIN is 2" in refused["reason"]
    told = json.loads(model_stub.requests[-1]["body"]["messages"][-1]["content"])
    assert told == {"ok": False, "error": refused["reason"]}
