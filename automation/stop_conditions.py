"""Stop conditions of a follow-up (DESIGN §6): their types, validation, and the check at fire time.

An agent asks for them in ``schedule_follow_up``; they are stored normalized as
``{"type", "description"[, "at"]}``. When the follow-up comes due, the first condition
that holds cancels it, and the reason names the condition and its evidence.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

from django.db.models import Q, QuerySet

from agentpress.agents.models import INBOUND_ROLES, Message
from automation.models import AgentRun, FollowUp

MAX_CONDITIONS = 10
MAX_DESCRIPTION = 500

DEFAULT_DESCRIPTIONS = {
    "reply_received": "An inbound reply (a user message or a provider event) arrived on the thread.",
    "context_active": "Another run on the same context started after this follow-up was scheduled.",
    "deadline": "The follow-up is pointless after its deadline.",
}
TYPES = tuple(DEFAULT_DESCRIPTIONS)

# what the agent is told about the arguments (the tool's JSON schema)
SCHEMA = {
    "type": "array",
    "description": "Conditions under which the follow-up should not run; each has a 'type' and an "
    "optional human 'description'. A 'deadline' needs 'at' (an ISO 8601 instant).",
    "items": {
        "type": "object",
        "properties": {
            "type": {"type": "string", "enum": list(TYPES)},
            "at": {"type": "string", "description": "ISO 8601 instant, for 'deadline' only."},
            "description": {"type": "string"},
        },
        "required": ["type"],
    },
}


class InvalidStopCondition(ValueError):
    """The agent asked for a condition that does not exist or is malformed; the message says which."""


def parse_instant(value, what: str) -> datetime:
    """An ISO 8601 instant; one without an offset is taken as UTC (stored times are UTC)."""
    if not isinstance(value, str):
        raise InvalidStopCondition(f"{what} must be an ISO 8601 string, got {value!r}.")
    shown = value[:60]
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise InvalidStopCondition(f"{what} {shown!r} is not an ISO 8601 instant.") from exc
    try:
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00+05:00 is before the first UTC instant
        raise InvalidStopCondition(f"{what} {shown!r} is outside the calendar's range in UTC.") from exc


def validate(raw, *, scheduled_for: datetime) -> list[dict]:
    """The normalized list, or ``InvalidStopCondition`` naming the first bad entry."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidStopCondition("stop_conditions must be a list of objects.")
    if len(raw) > MAX_CONDITIONS:
        raise InvalidStopCondition(f"At most {MAX_CONDITIONS} stop conditions are allowed.")
    return [_validate_one(item, n, scheduled_for) for n, item in enumerate(raw, start=1)]


def _validate_one(item, n: int, scheduled_for: datetime) -> dict:
    where = f"Stop condition {n}"
    if not isinstance(item, dict):
        raise InvalidStopCondition(f"{where} must be an object with a 'type', got {item!r}.")
    kind = item.get("type")
    if kind not in DEFAULT_DESCRIPTIONS:
        raise InvalidStopCondition(f"{where} has unknown type {kind!r}; known types: {', '.join(TYPES)}.")
    allowed = {"type", "description"} | ({"at"} if kind == "deadline" else set())
    extra = sorted(set(item) - allowed)
    if extra:
        raise InvalidStopCondition(f"{where} ({kind}) does not take {', '.join(extra)}.")
    description = item.get("description") or DEFAULT_DESCRIPTIONS[kind]
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        raise InvalidStopCondition(
            f"{where} needs a text description of at most {MAX_DESCRIPTION} characters."
        )
    condition = {"type": kind, "description": description.strip()}
    if kind == "deadline":
        if "at" not in item:
            raise InvalidStopCondition(f"{where} (deadline) needs 'at', an ISO 8601 instant.")
        at = parse_instant(item["at"], f"{where} (deadline) 'at'")
        if at <= scheduled_for:
            raise InvalidStopCondition(
                f"{where}: the deadline {at.isoformat()} is not after the follow-up's time "
                f"{scheduled_for.isoformat()}, so the follow-up could never run."
            )
        condition["at"] = at.isoformat()
    return condition


def context_runs(follow_up: FollowUp) -> QuerySet[AgentRun]:
    """Runs of the follow-up's conversation: its context (one run-as user's, see
    ``automation.scope``) when it has a key, else its thread."""
    if follow_up.context_key:
        return AgentRun.objects.filter(
            organization_id=follow_up.organization_id,
            agent_id=follow_up.agent_id,
            run_as_id=follow_up.run_as_id,
            context_type=follow_up.context_type,
            context_key=follow_up.context_key,
        )
    if follow_up.thread_id:
        return AgentRun.objects.filter(thread_id=follow_up.thread_id)
    return AgentRun.objects.none()


@dataclass(frozen=True)
class MetCondition:
    type: str
    reason: str
    evidence: dict


def first_met(follow_up: FollowUp, *, now: datetime) -> MetCondition | None:
    """The first of the follow-up's stop conditions that holds now, with its evidence."""
    for condition in follow_up.stop_conditions or []:
        met = _CHECKS[condition["type"]](follow_up, condition, now)
        if met is not None:
            return met
    return None


def _reply_received(follow_up, condition, now):
    if not follow_up.thread_id:
        return None
    message = (
        Message.objects.filter(
            thread_id=follow_up.thread_id, role__in=INBOUND_ROLES, created_at__gt=follow_up.created_at
        )
        .order_by("created_at", "id")
        .first()
    )
    if message is None:
        return None
    return MetCondition(
        "reply_received",
        f"Stop condition reply_received met: {message.role} message {message.pk} arrived on thread "
        f"{follow_up.thread_id} at {message.created_at:%Y-%m-%d %H:%M:%S} UTC "
        f"({condition['description']})",
        {"message_id": message.pk},
    )


def _context_active(follow_up, condition, now):
    since = follow_up.created_at
    run = (
        context_runs(follow_up)
        .filter(Q(created_at__gt=since) | Q(started_at__gt=since))
        .exclude(pk=follow_up.previous_run_id)
        .exclude(follow_up=follow_up)
        .order_by("created_at")
        .first()
    )
    if run is None:
        return None
    return MetCondition(
        "context_active",
        f"Stop condition context_active met: run {run.pk} ({run.source}, {run.status}) on the same context "
        f"started after this follow-up was scheduled ({condition['description']})",
        {"run_id": str(run.pk)},
    )


def _deadline(follow_up, condition, now):
    at = datetime.fromisoformat(condition["at"])
    if now < at:
        return None
    return MetCondition(
        "deadline",
        f"Stop condition deadline met: the deadline {at:%Y-%m-%d %H:%M:%S} UTC passed before the "
        f"follow-up could run ({condition['description']})",
        {"deadline": condition["at"]},
    )


_CHECKS = {"reply_received": _reply_received, "context_active": _context_active, "deadline": _deadline}


def describe(conditions: list[dict]) -> list[str]:
    """One line per condition, for the continuation prompt."""
    lines = []
    for c in conditions:
        when = f" (deadline {c['at']})" if c["type"] == "deadline" else ""
        lines.append(f"- {c['type']}{when}: {c['description']}")
    return lines
