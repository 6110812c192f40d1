"""Side-effecting tool calls (DESIGN §7a): once per idempotency key, and never against a stop condition.

Before a tool acts on the world (sends a reply), ``perform_side_effect``
- returns the stored result when a call with the same idempotency key already acted (a
  retried or replayed run gets the first answer back, nothing is sent twice);
- refuses when the run no longer holds its lease;
- checks the stop conditions of the follow-up that started the run again, against the
  thread as it is now: when one is met (the customer replied during the run), the call is
  suppressed, the agent is told why, and the suppression is stored with its evidence.
Every outcome is a ``ToolCall`` row and a ``RunEvent``.
"""

from collections.abc import Callable
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from automation import stop_conditions
from automation.models import AgentRun, ToolCall
from automation.services.runs import record_event
from automation.states import RunStatus


@dataclass(frozen=True)
class Acted:
    """What the side effect did: its outcome (``ToolCall.Outcome``) and the agent's tool result."""

    outcome: str
    result: dict


def perform_side_effect(
    *, run_id, lease_token, tool: str, idempotency_key: str, arguments: dict, act: Callable[[AgentRun], Acted]
) -> dict:
    """Run ``act`` at most once for ``idempotency_key``, unless a stop condition forbids it now."""
    stored = ToolCall.objects.filter(idempotency_key=idempotency_key).first()
    if stored is not None:
        record_event(run_id, "tool_call_replayed", tool=tool, tool_call_id=stored.pk, outcome=stored.outcome)
        return {**stored.result, "replayed": True}
    run = (
        AgentRun.objects.select_related("follow_up", "organization")
        .filter(pk=run_id, status=RunStatus.RUNNING, lease_token=lease_token)
        .first()
    )
    if run is None:
        return {
            "ok": False,
            "error": "This run no longer holds its lease (cancelled or recovered); nothing was done.",
        }
    met = stop_conditions.first_met(run.follow_up, now=timezone.now()) if run.follow_up_id else None
    if met is not None:
        acted = Acted(
            ToolCall.Outcome.SUPPRESSED,
            {"ok": False, "suppressed": True, "error": f"Not done: {met.reason}", "condition": met.type},
        )
        evidence = {"condition": met.type, "reason": met.reason, **met.evidence}
    else:
        acted = act(run)
        evidence = {}
    try:
        with transaction.atomic():
            call = ToolCall.objects.create(
                run=run,
                organization_id=run.organization_id,
                tool=tool,
                idempotency_key=idempotency_key,
                arguments=arguments,
                outcome=acted.outcome,
                result=acted.result,
                evidence=evidence,
            )
    except IntegrityError:  # the same call acted concurrently (a duplicate run): its result stands
        stored = ToolCall.objects.get(idempotency_key=idempotency_key)
        return {**stored.result, "replayed": True}
    kind = "tool_call_suppressed" if acted.outcome == ToolCall.Outcome.SUPPRESSED else "tool_call"
    record_event(run.pk, kind, tool=tool, tool_call_id=call.pk, outcome=acted.outcome, **evidence)
    return acted.result
