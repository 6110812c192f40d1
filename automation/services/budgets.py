"""Daily budgets (runs, tokens, cost per organization and agent, counted from midnight in
``Organization.timezone``) and the per-run token ceiling (DESIGN §7a).

Usage is read from the runs' totals (``input_tokens``, ``output_tokens``, ``cost``), which
the model-call recording keeps; nothing here writes them.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db.models import Count, F, Sum
from django.db.models.functions import Coalesce

from agentpress.agents.models import Agent
from agentpress.orgs.models import Organization
from automation.models import AgentRun
from automation.states import RunStatus, WaitingKind


def _utc(at: datetime) -> str:
    return at.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%d %H:%M:%S UTC")


def day_window(tz_name: str, now: datetime) -> tuple[datetime, datetime, ZoneInfo]:
    """Local midnight today and tomorrow in ``tz_name``, as aware datetimes."""
    try:
        zone = ZoneInfo(tz_name or "UTC")
    except (KeyError, ValueError):
        zone = ZoneInfo("UTC")
    local = now.astimezone(zone)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    # Adding a day to the wall time and normalising keeps midnight across DST changes.
    tomorrow = (start.replace(tzinfo=None) + timedelta(days=1)).replace(tzinfo=zone)
    return start, tomorrow, zone


@dataclass(frozen=True)
class Usage:
    runs: int
    tokens: int
    cost: Decimal


def usage_since(since: datetime, *, organization_id=None, agent_id=None, run_as_id=None) -> Usage:
    """Runs started since ``since`` and their token and cost totals (``run_as_id``: only the
    runs of that user, what a member may see)."""
    qs = AgentRun.objects.filter(started_at__gte=since)
    if organization_id is not None:
        qs = qs.filter(organization_id=organization_id)
    if agent_id is not None:
        qs = qs.filter(agent_id=agent_id)
    if run_as_id is not None:
        qs = qs.filter(run_as_id=run_as_id)
    totals = qs.aggregate(
        runs=Count("*"),
        tokens=Coalesce(Sum(F("input_tokens") + F("output_tokens")), 0),
        cost=Coalesce(Sum("cost"), Decimal(0)),
    )
    return Usage(totals["runs"], totals["tokens"], Decimal(totals["cost"]))


def _over(usage: Usage, runs, tokens, cost) -> str | None:
    if runs is not None and usage.runs >= runs:
        return f"{usage.runs} / {runs} runs today"
    if tokens is not None and usage.tokens >= tokens:
        return f"{usage.tokens} / {tokens} tokens today"
    if cost is not None and usage.cost >= cost:
        return f"cost {usage.cost:.4f} / {Decimal(cost):.4f} today"
    return None


def _budget(owner) -> tuple:
    return owner.daily_run_limit, owner.daily_token_limit, owner.daily_cost_limit


def budgeted(owner) -> bool:
    return any(v is not None for v in _budget(owner))


def budget_exceeded(org: Organization, agent: Agent, now: datetime) -> tuple[str, bool] | None:
    """``(daily budget reached (…), resumes at <time>, whether the agent's)`` when the
    organization or the agent spent its day; ``None`` while both are within budget."""
    if not (budgeted(org) or budgeted(agent)):
        return None
    start, tomorrow, zone = day_window(org.timezone, now)
    spent, by_agent = None, False
    if budgeted(org):
        over = _over(usage_since(start, organization_id=org.pk), *_budget(org))
        spent = f"organization {org.slug}: {over}" if over else None
    if spent is None and budgeted(agent):
        over = _over(usage_since(start, agent_id=agent.pk), *_budget(agent))
        spent, by_agent = (f"agent {agent.name}: {over}", True) if over else (None, False)
    if spent is None:
        return None
    resumes = f"{tomorrow:%Y-%m-%d %H:%M} {zone.key} ({_utc(tomorrow)})"
    return f"{WaitingKind.PHRASES[WaitingKind.BUDGET]} ({spent}), resumes at {resumes}", by_agent


def runs_over_token_ceiling(*, limit: int = 500) -> list[tuple]:
    """Running runs whose agent's ``max_tokens_per_run`` their usage totals reached:
    ``(run id, lease token, used, ceiling)``."""
    return list(
        AgentRun.objects.filter(status=RunStatus.RUNNING, agent__max_tokens_per_run__isnull=False)
        .annotate(used=F("input_tokens") + F("output_tokens"))
        .filter(used__gt=F("agent__max_tokens_per_run"))
        .values_list("pk", "lease_token", "used", "agent__max_tokens_per_run")[:limit]
    )


def token_ceiling_error(used: int, ceiling: int) -> str:
    return (
        f"Token ceiling reached: the run used {used} tokens, more than the agent's max_tokens_per_run "
        f"of {ceiling}. The agent was stopped."
    )
