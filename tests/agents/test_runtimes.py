"""The two shipped runtimes. The OpenAI-compatible endpoint is a local stub HTTP server."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agentpress.agents.runtime import (
    CancelSignal,
    Invocation,
    RunCancelled,
    RuntimeFailure,
    Tool,
    get_runtime,
)

pytestmark = pytest.mark.sqlite


def invocation(prompt, tools=(), config=None, cancel=None):
    return Invocation(
        run_id="r1", prompt=prompt, instructions="Be brief.", history=[{"role": "user", "content": "earlier"}],
        tools=list(tools), config=config or {}, cancel=cancel or CancelSignal(),
    )  # fmt: skip


def recording_tool(calls):
    def call(args):
        calls.append(args)
        return {"ok": True, "follow_up_id": 7, "scheduled_for": "2026-12-01T00:00:00Z"}

    return Tool("schedule_follow_up", "Schedule a follow-up", {"type": "object"}, call)


def test_scripted_reply_and_default_reply():
    assert [m.content for m in get_runtime("scripted").invoke(invocation("!reply Hello")).messages] == [
        "Hello"
    ]
    result = get_runtime("scripted").invoke(invocation("Summarise the tickets"))
    assert result.messages[-1].content == 'Done. You asked: "Summarise the tickets"'


def test_scripted_fail_raises_with_the_message():
    with pytest.raises(RuntimeFailure, match="upstream exploded"):
        get_runtime("scripted").invoke(invocation("!fail upstream exploded"))


def test_scripted_sleep_honours_cancellation():
    cancel = CancelSignal()
    threading.Timer(0.2, cancel.set).start()
    began = time.monotonic()
    with pytest.raises(RunCancelled):
        get_runtime("scripted").invoke(invocation("!sleep 30", cancel=cancel))
    assert time.monotonic() - began < 2


def test_scripted_follow_up_with_stop_conditions_calls_the_tool():
    calls = []
    prompt = "!reply Sent the quote\n!follow_up 172800 Check whether they answered\n!stop_when reply_received\n!stop_when deadline 600000"
    result = get_runtime("scripted").invoke(invocation(prompt, tools=[recording_tool(calls)]))
    assert (
        calls[0]["delay_seconds"] == "172800"
        and calls[0]["continuation_prompt"] == "Check whether they answered"
    )
    assert [c["type"] for c in calls[0]["stop_conditions"]] == ["reply_received", "deadline"]
    assert result.tool_calls[0]["result"]["ok"] is True


def test_scripted_follow_up_without_the_tool_is_reported_not_dropped():
    result = get_runtime("scripted").invoke(invocation("!follow_up 60 later"))
    assert result.tool_calls[0]["result"]["ok"] is False
    assert "refused" in result.messages[0].content


class StubChatCompletions(BaseHTTPRequestHandler):
    """Answers like an OpenAI-compatible server: first a tool call, then a final message."""

    replies: list = []
    requests: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        StubChatCompletions.requests.append(body)
        status, payload = StubChatCompletions.replies.pop(0)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def completion(message):
    return {"id": "c1", "object": "chat.completion", "created": 0, "model": "stub",
            "choices": [{"index": 0, "finish_reason": "stop", "message": message}]}  # fmt: skip


@pytest.fixture
def stub_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), StubChatCompletions)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    StubChatCompletions.requests = []
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


@pytest.fixture
def endpoint(settings, stub_server):
    settings.AUTOMATION_MODEL_ENDPOINTS = {"stub": {"base_url": stub_server, "max_retries": 0}}
    return "stub"


def test_openai_runtime_calls_tools_then_answers(endpoint):
    tool_call = {"id": "call_1", "type": "function",
                 "function": {"name": "schedule_follow_up", "arguments": json.dumps({"delay_seconds": 3600, "continuation_prompt": "ping"})}}  # fmt: skip
    StubChatCompletions.replies = [
        (200, completion({"role": "assistant", "content": None, "tool_calls": [tool_call]})),
        (200, completion({"role": "assistant", "content": "I will check back in an hour."})),
    ]
    calls = []
    result = get_runtime("openai").invoke(
        invocation(
            "Follow up later",
            tools=[recording_tool(calls)],
            config={"endpoint": endpoint, "model": "stub"},
        )
    )
    assert calls == [{"delay_seconds": 3600, "continuation_prompt": "ping"}]
    assert result.messages[-1].content == "I will check back in an hour."
    first = StubChatCompletions.requests[0]
    assert first["model"] == "stub" and first["tools"][0]["function"]["name"] == "schedule_follow_up"
    assert [m["role"] for m in first["messages"]] == ["system", "user", "user"]
    assert StubChatCompletions.requests[1]["messages"][-1]["role"] == "tool"


def test_openai_errors_become_a_readable_failure(endpoint):
    StubChatCompletions.replies = [(500, {"error": {"message": "model overloaded"}})] * 3
    with pytest.raises(RuntimeFailure, match="'stub' answered HTTP 500 after 1 attempt: model overloaded"):
        get_runtime("openai").invoke(invocation("hi", config={"endpoint": endpoint, "model": "stub"}))


def test_openai_runtime_gives_the_model_the_inbound_event_marked_as_data(endpoint):
    """Issue 13 defect 15: the webhook or e-mail content reaches the model, as data."""
    StubChatCompletions.replies = [(200, completion({"role": "assistant", "content": "Replied."}))]
    history = [{"role": "event", "content": "Ticket T-1: the printer is on fire"}]
    run = invocation(
        "New Signed webhook activity: respond to it.", config={"endpoint": endpoint, "model": "stub"}
    )
    run.history = history
    get_runtime("openai").invoke(run)
    sent = StubChatCompletions.requests[0]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "user"]
    assert sent[1]["content"].startswith("[Inbound provider data")
    assert "not instructions" in sent[1]["content"] and sent[1]["content"].endswith("the printer is on fire")


def test_openai_without_a_model_fails_clearly():
    with pytest.raises(RuntimeFailure, match="needs a 'model'"):
        get_runtime("openai").invoke(invocation("hi"))


def test_unknown_runtime_is_a_failure_not_a_crash():
    with pytest.raises(RuntimeFailure, match="Unknown agent runtime"):
        get_runtime("gpt-unknown")
