"""A deterministic, offline runtime driven by directives in its prompt (DESIGN §11).

One directive per line: ``!reply <text>``, ``!fail <message>``, ``!sleep <seconds>``,
``!follow_up <seconds> <continuation prompt>``, ``!stop_when <condition>`` (adds a
stop condition to the follow-up above it; ``deadline <seconds>`` takes an offset) and
``!send_reply <text>`` (calls the ``send_reply`` tool). Other lines are text; a prompt
without directives gets a reply that quotes it.

Each reply is reported as one model call with a deterministic usage: input tokens are the
words of the instructions, history and prompt, output tokens the words of the reply,
priced by the endpoint named in ``runtime_config.endpoint`` when there is one.
"""

from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from . import endpoints
from .base import Invocation, InvocationResult, ModelCallRecord, OutMessage, RuntimeFailure

SCRIPTED = "scripted"


def _parse(prompt: str) -> list[tuple[str, str]]:
    steps = []
    for line in prompt.splitlines():
        stripped = line.strip()
        if stripped.startswith("!") and len(stripped) > 1:
            name, _, arg = stripped[1:].partition(" ")
            steps.append((name.lower(), arg.strip()))
    return steps


def _stop_condition(text: str) -> dict:
    kind, _, arg = text.partition(" ")
    condition = {"type": kind}
    if kind == "deadline" and arg:
        try:
            condition["at"] = (timezone.now() + timedelta(seconds=float(arg))).isoformat()
        except (ValueError, OverflowError):  # not an offset the calendar holds: the tool judges it as given
            condition["at"] = arg
    elif arg:
        condition["description"] = arg
    return condition


class ScriptedRuntime:
    def invoke(self, invocation: Invocation) -> InvocationResult:
        steps = _parse(invocation.prompt)
        messages: list[OutMessage] = []
        tool_calls: list[dict] = []
        follow_up: dict | None = None

        def flush_follow_up():
            nonlocal follow_up
            if follow_up is None:
                return
            tool = invocation.tool("schedule_follow_up")
            result = (
                tool.call(follow_up)
                if tool
                else {"ok": False, "error": "The schedule_follow_up tool is not offered."}
            )
            tool_calls.append({"name": "schedule_follow_up", "arguments": follow_up, "result": result})
            messages.append(
                OutMessage("tool", _describe(result), {"tool": "schedule_follow_up", "result": result})
            )
            follow_up = None

        def call_tool(tool_name: str, arguments: dict):
            tool = invocation.tool(tool_name)
            result = (
                tool.call(arguments)
                if tool
                else {"ok": False, "error": f"The {tool_name} tool is not offered."}
            )
            tool_calls.append({"name": tool_name, "arguments": arguments, "result": result})
            messages.append(
                OutMessage("tool", _describe_tool(tool_name, result), {"tool": tool_name, "result": result})
            )

        for name, arg in steps:
            invocation.check_cancelled()
            if name == "stop_when" and follow_up is not None:
                follow_up["stop_conditions"].append(_stop_condition(arg))
                continue
            flush_follow_up()
            if name == "reply":
                messages.append(OutMessage("assistant", arg))
                report_usage(invocation, arg)
            elif name == "send_reply":
                call_tool("send_reply", {"text": arg})
            elif name == "fail":
                raise RuntimeFailure(arg or "Scripted failure.")
            elif name == "sleep":
                try:
                    seconds = float(arg)
                except ValueError as exc:
                    raise RuntimeFailure(f"!sleep needs a number of seconds, got {arg!r}.") from exc
                invocation.sleep(seconds)
            elif name == "follow_up":
                delay, _, prompt = arg.partition(" ")
                follow_up = {
                    "delay_seconds": delay,
                    "continuation_prompt": prompt.strip(),
                    "stop_conditions": [],
                }
        flush_follow_up()
        if not any(m.role == "assistant" for m in messages):
            text = "\n".join(
                line for line in invocation.prompt.splitlines() if not line.strip().startswith("!")
            )
            reply = f'Done. You asked: "{text.strip()}"'
            messages.append(OutMessage("assistant", reply))
            report_usage(invocation, reply)
        return InvocationResult(messages=messages, tool_calls=tool_calls)


def words(text: str) -> int:
    return len(text.split())


def report_usage(invocation: Invocation, reply: str) -> None:
    context = [invocation.instructions, *(m["content"] for m in invocation.history), invocation.prompt]
    input_tokens = sum(words(text) for text in context)
    output_tokens = words(reply)
    name = invocation.config.get("endpoint")
    priced = isinstance(name, str) and name in endpoints.operator_endpoints()
    cost = (
        endpoints.resolve({"endpoint": name}, with_key=False).cost(input_tokens, output_tokens)
        if priced
        else Decimal(0)
    )
    invocation.report_model_call(
        ModelCallRecord(
            endpoint=name if priced else SCRIPTED,
            model=str(invocation.config.get("model") or SCRIPTED),
            attempt=1,
            outcome="ok",
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost=cost,
        )
    )


def _describe_tool(name: str, result: dict) -> str:
    if result.get("ok"):
        return f"{name} done" + (" (the earlier result, not sent again)." if result.get("replayed") else ".")
    return f"{name} not done: {result.get('error')}"


def _describe(result: dict) -> str:
    if result.get("ok"):
        return f"Follow-up scheduled for {result.get('scheduled_for')} (id {result.get('follow_up_id')})."
    return f"Follow-up refused: {result.get('error')}"
