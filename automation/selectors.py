"""Read-side queries for the monitor and the API, with the permission scope applied once.

Owners and admins see the org; members with ``actions:manage`` see only rows whose
``run_as`` is themselves (DESIGN §8); the rule is ``scope.scoped`` (automation/scope.py).
"""

from django.db.models import Count, QuerySet, Value

from agentpress.orgs.permissions import Access
from automation.models import Action, AgentRun, FollowUp, FollowUpRefusal, ProviderEvent, Schedule
from automation.scope import scoped as _scoped
from automation.scope import threads_for as threads_for
from automation.states import FOLLOW_UP_ACTIVE, RunStatus


def runs_for(access: Access) -> QuerySet[AgentRun]:
    return _scoped(AgentRun.objects.all(), access)


def runs_list(access: Access) -> QuerySet[AgentRun]:
    """Runs with what a list shows. Only agent and user are joined: each extra join of this
    wide table costs more planning time than the small IN queries that prefetch the rest."""
    return (
        runs_for(access)
        .select_related("agent", "run_as")
        .prefetch_related("thread", "schedule", "action", "follow_up")
    )


def schedules_for(access: Access) -> QuerySet[Schedule]:
    return _scoped(Schedule.objects.all(), access)


def follow_ups_for(access: Access) -> QuerySet[FollowUp]:
    return _scoped(FollowUp.objects.all(), access)


def follow_up_refusals_for(access: Access) -> QuerySet[FollowUpRefusal]:
    return _scoped(FollowUpRefusal.objects.all(), access)


def actions_for(access: Access) -> QuerySet[Action]:
    return _scoped(Action.objects.all(), access)


def provider_events_for(access: Access) -> QuerySet[ProviderEvent]:
    return _scoped(ProviderEvent.objects.all(), access, run_as_field="action__run_as")


def runs_summary(access: Access) -> dict[str, int]:
    """Counts per status in the caller's scope, plus scheduled and active follow-ups.

    One statement (a ``UNION ALL`` of three grouped counts): the runs count is an index-only
    scan on (organization, status) or (organization, run_as, status), the others use their
    tables' (organization, …) indexes. ``Count("*")`` keeps the first one index-only.
    """
    counts = dict.fromkeys([*RunStatus.values, "scheduled", "active_follow_ups"], 0)
    by_status = runs_for(access).order_by().values("status").annotate(n=Count("*"))
    scheduled = _counted(schedules_for(access).filter(enabled=True, next_run_at__isnull=False), "scheduled")
    follow_ups = _counted(follow_ups_for(access).filter(status__in=FOLLOW_UP_ACTIVE), "active_follow_ups")
    for key, n in by_status.union(scheduled, follow_ups, all=True).values_list("status", "n"):
        counts[key] = n
    return counts


def _counted(qs: QuerySet, key: str) -> QuerySet:
    """``qs`` counted as one ``(key, n)`` row (no row when it is empty)."""
    return qs.order_by().annotate(key=Value(key)).values("key").annotate(n=Count("*")).values("key", "n")


def agents_for(access: Access):
    return access.organization.agents.all()
