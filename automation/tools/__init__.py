"""The tool registry: what an agent may call during a run (DESIGN §7a).

``schedule_follow_up`` is offered while the Self-reschedule capability is on; the optional
tools (``send_reply``) are offered when the agent's ``Agent.tools`` names them (set on the
Capabilities page) and the run has what they need. Side-effecting tools go through
``services.tool_calls.perform_side_effect``: once per idempotency key, never against a stop
condition. An idempotency key is derived from the run the call belongs to (the original run
when this one is a retry) and the call's position among that tool's calls in the run.
"""

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from agentpress.agents.runtime import Tool
from automation import follow_up_requests
from automation.models import AgentRun
from automation.services import follow_ups, tool_calls
from automation.tools import send_reply

MAX_RETRY_LINKS = 50


@dataclass(frozen=True)
class ToolSpec:
    name: str
    label: str
    description: str
    parameters: dict
    optional: bool  # chosen per agent in Agent.tools
    call: Callable[["CallContext", dict], dict]
    # Why it is not offered on this run ("" when it is); none: always offered. Rules that the
    # call itself refuses and records (a capability, a guard) belong in the call, not here.
    unavailable: Callable[[AgentRun], str] | None = None


@dataclass
class CallContext:
    run: AgentRun
    lease_token: object
    original_run_id: str
    counts: Counter = field(default_factory=Counter)

    def idempotency_key(self, tool: str) -> str:
        self.counts[tool] += 1
        return hashlib.sha256(f"{self.original_run_id}:{tool}:{self.counts[tool]}".encode()).hexdigest()


def _schedule_follow_up(context: CallContext, arguments) -> dict:
    """Always offered: the capability and the runaway guards are checked once, in
    ``follow_ups.schedule_follow_up``, which refuses by name and records the refusal (a
    ``FollowUpRefusal`` and a ``follow_up_refused`` timeline entry), instead of the agent
    meeting an unknown tool."""
    return follow_ups.schedule_follow_up(
        run_id=context.run.pk, lease_token=context.lease_token, arguments=arguments
    )


def _send_reply(context: CallContext, arguments) -> dict:
    try:
        text = send_reply.check_text(arguments)
    except ValueError as exc:
        return {"ok": False, "error": str(exc)}
    key = context.idempotency_key(send_reply.NAME)
    return tool_calls.perform_side_effect(
        run_id=context.run.pk,
        lease_token=context.lease_token,
        tool=send_reply.NAME,
        idempotency_key=key,
        arguments={"text": text},
        act=lambda run: send_reply.act(run, text=text, idempotency_key=key),
    )


REGISTRY: dict[str, ToolSpec] = {
    spec.name: spec
    for spec in (
        ToolSpec(
            name=follow_up_requests.TOOL_NAME,
            label="Schedule a follow-up (refused while Self-reschedule is off)",
            description=follow_up_requests.TOOL_DESCRIPTION,
            parameters=follow_up_requests.TOOL_PARAMETERS,
            optional=False,
            call=_schedule_follow_up,
        ),
        ToolSpec(
            name=send_reply.NAME,
            label="Send a reply through the conversation's channel (webhook reply URL, Outlook)",
            description=send_reply.DESCRIPTION,
            parameters=send_reply.PARAMETERS,
            optional=True,
            unavailable=send_reply.unavailable,
            call=_send_reply,
        ),
    )
}
OPTIONAL_TOOLS = [name for name, spec in REGISTRY.items() if spec.optional]


def enabled_tools(agent) -> list[str]:
    """The tool names the agent may use: the built-in ones and the optional ones it chose."""
    chosen = set(agent.tools or [])
    return [name for name, spec in REGISTRY.items() if not spec.optional or name in chosen]


def original_run_id(run: AgentRun) -> str:
    """The run this one retries (transitively), or itself: calls of a retry share its keys."""
    current_id, retry_of = run.pk, run.retry_of_id
    for _ in range(MAX_RETRY_LINKS):
        if retry_of is None:
            break
        current_id = retry_of
        retry_of = AgentRun.objects.filter(pk=retry_of).values_list("retry_of_id", flat=True).first()
    return str(current_id)


def tools_for_run(*, run: AgentRun, lease_token) -> list[Tool]:
    """The tools offered to the agent in this run, bound to its lease."""
    context = CallContext(run=run, lease_token=lease_token, original_run_id=original_run_id(run))
    offered = []
    for name in enabled_tools(run.agent):
        spec = REGISTRY[name]
        if spec.unavailable is not None and spec.unavailable(run):
            continue
        offered.append(Tool(spec.name, spec.description, spec.parameters, partial(spec.call, context)))
    return offered
