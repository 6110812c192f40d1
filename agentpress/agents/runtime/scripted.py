"""A deterministic, offline runtime driven by directives in its prompt (DESIGN §11).

One directive per line: ``!reply <text>``, ``!fail <message>``, ``!sleep <seconds>``,
``!follow_up <seconds> <continuation prompt>`` and ``!stop_when <condition>`` (adds a
stop condition to the follow-up above it; ``deadline <seconds>`` takes an offset).
Other lines are text; a prompt without directives gets a reply that quotes it.
"""

from datetime import timedelta

from django.utils import timezone

from .base import Invocation, InvocationResult, OutMessage, RuntimeFailure


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

        for name, arg in steps:
            invocation.check_cancelled()
            if name == "stop_when" and follow_up is not None:
                follow_up["stop_conditions"].append(_stop_condition(arg))
                continue
            flush_follow_up()
            if name == "reply":
                messages.append(OutMessage("assistant", arg))
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
            messages.append(OutMessage("assistant", f'Done. You asked: "{text.strip()}"'))
        return InvocationResult(messages=messages, tool_calls=tool_calls)


def _describe(result: dict) -> str:
    if result.get("ok"):
        return f"Follow-up scheduled for {result.get('scheduled_for')} (id {result.get('follow_up_id')})."
    return f"Follow-up refused: {result.get('error')}"
