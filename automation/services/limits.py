"""Owners change an agent's or organization's admission limits and daily budgets."""

from django.db import transaction

from automation.services.audit import audit_record
from automation.services.runs import send_admitted_runs

LIMIT_FIELDS = ("max_concurrent_runs", "daily_run_limit", "daily_token_limit", "daily_cost_limit")
AGENT_LIMIT_FIELDS = (*LIMIT_FIELDS, "max_tokens_per_run")


def limits_update(*, owner, actor, **values):
    """Store the limits of ``owner`` (an ``Agent`` or ``Organization``; ``None`` clears one),
    record who changed what, and send the work a raised limit admits once this commits."""
    allowed = AGENT_LIMIT_FIELDS if hasattr(owner, "organization_id") else LIMIT_FIELDS
    unknown = set(values) - set(allowed)
    if unknown:
        raise TypeError(f"Not a limit: {', '.join(sorted(unknown))}")
    organization = getattr(owner, "organization", owner)
    before = {name: getattr(owner, name) for name in values}
    with transaction.atomic():
        for name, value in values.items():
            setattr(owner, name, value)
        owner.save(update_fields=list(values))
        changed = {
            name: {"from": _json(before[name]), "to": _json(value)}
            for name, value in values.items()
            if before[name] != value
        }
        if changed:
            audit_record(
                actor=actor, organization=organization, verb="limits_changed", target=owner, **changed
            )
            transaction.on_commit(lambda: send_admitted_runs(organization_id=organization.pk))
    return owner


def _json(value):
    return None if value is None else str(value) if not isinstance(value, int) else value
