"""What an agent may ask of ``schedule_follow_up``, and why a request is refused (DESIGN §6).

Pure checks, no writes: the service stores what passes them. Every refusal carries a
reason the agent can act on.
"""

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings

from automation import stop_conditions

MAX_PROMPT = 20000

TOOL_NAME = "schedule_follow_up"
TOOL_DESCRIPTION = (
    "Schedule a follow-up: continue this conversation later with a new run in the same thread. "
    "Give either delay_seconds or at, the continuation prompt (what to do then), and stop conditions "
    "under which the follow-up should not run."
)
TOOL_PARAMETERS = {
    "type": "object",
    "properties": {
        "delay_seconds": {"type": "number", "description": "How long from now, in seconds."},
        "at": {"type": "string", "description": "When, as an ISO 8601 instant (instead of delay_seconds)."},
        "continuation_prompt": {"type": "string", "description": "The instruction for the later run."},
        "stop_conditions": stop_conditions.SCHEMA,
    },
    "required": ["continuation_prompt"],
}


class Refused(Exception):
    """A request the agent is told about; nothing is stored."""


@dataclass(frozen=True)
class FollowUpRequest:
    scheduled_for: datetime
    continuation_prompt: str
    stop_conditions: list[dict]


def capability_refusal(organization, agent) -> str:
    """Why the org or the agent does not allow follow-ups now; empty when they do."""
    if not organization.automations_enabled:
        return f"Agent Run Automations are turned off for the organization {organization.slug}."
    if not agent.self_reschedule_enabled:
        return f"The Self-reschedule capability of agent {agent.name!r} is turned off."
    if not agent.enabled:
        return f"Agent {agent.name!r} is disabled."
    return ""


def parse_request(arguments, *, now: datetime) -> FollowUpRequest:
    """The validated request, or ``Refused`` with the first problem found."""
    if not isinstance(arguments, dict):
        raise Refused("The arguments must be an object.")
    scheduled_for = _requested_time(arguments, now)
    prompt = arguments.get("continuation_prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise Refused("continuation_prompt is required: say what the follow-up run should do.")
    if len(prompt) > MAX_PROMPT:
        raise Refused(f"continuation_prompt is longer than {MAX_PROMPT} characters.")
    try:
        conditions = stop_conditions.validate(arguments.get("stop_conditions"), scheduled_for=scheduled_for)
    except stop_conditions.InvalidStopCondition as exc:
        raise Refused(str(exc)) from exc
    return FollowUpRequest(scheduled_for, prompt.strip(), conditions)


def _requested_time(arguments: dict, now: datetime) -> datetime:
    has_delay, has_at = arguments.get("delay_seconds") is not None, arguments.get("at") is not None
    if has_delay == has_at:
        raise Refused("Give exactly one of delay_seconds (a number of seconds) or at (an ISO 8601 instant).")
    if has_at:
        try:
            scheduled_for = stop_conditions.parse_instant(arguments["at"], "at")
        except stop_conditions.InvalidStopCondition as exc:
            raise Refused(str(exc)) from exc
        delay = (scheduled_for - now).total_seconds()
    else:
        raw = arguments["delay_seconds"]
        try:
            delay = math.nan if isinstance(raw, bool) else float(raw)
        except (TypeError, ValueError, OverflowError):  # OverflowError: an integer past a float's range
            delay = math.nan
        if not math.isfinite(delay):
            raise Refused(f"delay_seconds must be a number of seconds, got {str(raw)[:40]!r}.")
    low = settings.AUTOMATION_FOLLOW_UP_MIN_DELAY_SECONDS
    high = settings.AUTOMATION_FOLLOW_UP_MAX_DELAY_SECONDS
    # Checked before any date arithmetic: a delay beyond the horizon may be beyond the calendar too.
    if delay < low:
        raise Refused(f"The follow-up must be at least {low} seconds away; {delay:.0f} seconds is too soon.")
    if delay > high:
        raise Refused(
            f"The follow-up must be at most {high} seconds ({high / 86400:g} days) away; "
            f"{delay:.0f} seconds is beyond that horizon."
        )
    return scheduled_for if has_at else now + timedelta(seconds=delay)
