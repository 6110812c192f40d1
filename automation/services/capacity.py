"""What operators read: runs in flight against the limits, today's usage against the
budgets, and why pending runs wait, for the console and the API."""

from dataclasses import dataclass

from django.db.models import Case, Count, Value, When
from django.utils import timezone

from agentpress.orgs.models import Organization
from automation.models import AgentRun
from automation.services.admission import agent_limit, in_flight, org_limit
from automation.services.budgets import Usage, day_window, usage_since
from automation.states import RunStatus, WaitingKind


@dataclass(frozen=True)
class Capacity:
    """In flight / limit of one organization or agent, for the console, API and metrics."""

    in_flight: int
    limit: int | None

    def __str__(self):
        return f"{self.in_flight} / {self.limit if self.limit else '∞'}"


def org_capacity(org: Organization) -> Capacity:
    return Capacity(in_flight(organization_id=org.pk), org_limit(org.max_concurrent_runs))


def agent_capacities(agents) -> dict[int, Capacity]:
    """Capacity of each agent in ``agents``, in one grouped count."""
    agents = list(agents)
    counts = dict(
        AgentRun.objects.filter(status=RunStatus.RUNNING, agent__in=agents)
        .order_by()
        .values_list("agent_id")
        .annotate(n=Count("*"))
    )
    return {a.pk: Capacity(counts.get(a.pk, 0), agent_limit(a.max_concurrent_runs)) for a in agents}


def waiting_counts(runs) -> dict[str, int]:
    """Pending runs of ``runs`` by waiting kind (``none`` for pending runs without a reason)."""
    kind = Case(
        *(
            When(waiting_reason__startswith=phrase, then=Value(k))
            for k, phrase in WaitingKind.PHRASES.items()
        ),
        default=Value("none"),
    )
    counts = dict.fromkeys([*WaitingKind.PHRASES, "none"], 0)
    rows = (
        runs.filter(status=RunStatus.PENDING)
        .order_by()
        .annotate(kind=kind)
        .values("kind")
        .annotate(n=Count("*"))
    )
    for row in rows:
        counts[row["kind"]] = row["n"]
    return counts


def _usage_dict(usage: Usage) -> dict:
    return {"runs": usage.runs, "tokens": usage.tokens, "cost": str(usage.cost)}


def _limits_dict(owner) -> dict:
    return {
        "daily_run_limit": owner.daily_run_limit,
        "daily_token_limit": owner.daily_token_limit,
        "daily_cost_limit": None if owner.daily_cost_limit is None else str(owner.daily_cost_limit),
    }


def capacity_report(org: Organization) -> dict:
    """In flight / limit, today's usage against the budgets and the waiting counts of an
    organization and each of its agents."""
    now = timezone.now()
    start, tomorrow, zone = day_window(org.timezone, now)
    agents = list(org.agents.order_by("name", "pk"))
    capacities = agent_capacities(agents)
    cap = org_capacity(org)
    return {
        "in_flight": cap.in_flight,
        "max_concurrent_runs": org.max_concurrent_runs,
        "effective_limit": cap.limit,
        "timezone": zone.key,
        "day_started_at": start,
        "day_ends_at": tomorrow,
        **_limits_dict(org),
        "usage_today": _usage_dict(usage_since(start, organization_id=org.pk)),
        "waiting": [
            {"reason": kind, "count": n}
            for kind, n in waiting_counts(AgentRun.objects.filter(organization=org)).items()
        ],
        "agents": [
            {
                "id": agent.pk,
                "name": agent.name,
                "in_flight": capacities[agent.pk].in_flight,
                "max_concurrent_runs": agent.max_concurrent_runs,
                "effective_limit": capacities[agent.pk].limit,
                "max_tokens_per_run": agent.max_tokens_per_run,
                **_limits_dict(agent),
                "usage_today": _usage_dict(usage_since(start, agent_id=agent.pk)),
            }
            for agent in agents
        ],
    }
