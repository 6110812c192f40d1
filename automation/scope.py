"""Tenancy: whose work a row is, who may read it, and what may join it (docs/security.md).

**The invariant.** Nothing that belongs to user A (a thread, its messages, an inbound
event's content, a run's output) reaches a page, an API answer or a thread that member B
can read, unless B is an owner or admin of the organization.

This module states the rules once; everything else calls it:

- *Whose work.* Every piece of automation work runs as one user of the org (``run_as``):
  runs, schedules, actions, follow-ups, and the threads they write to. A thread's
  ``run_as`` is fixed when it is created (``runs.run_create``, provider events) and never
  changes.
- *Reading* (``scoped``, ``threads_for``). Owners and admins (and superusers) read the
  whole org. A member reads only rows that run as themselves: runs, schedules,
  follow-ups, actions and their events, and threads whose ``run_as`` is themselves.
  ``selectors`` builds every read of the monitor and the API on these two.
- *Joining a thread* (``check_thread``). Work joins a thread only when the thread runs
  as the same user; ``runs.run_create`` checks it for every source (manual, retry,
  schedule, provider event, follow-up), so an owner cannot pour their work into a
  member's thread either. Inputs that name a thread look it up with ``work_thread``.
- *A context is one user's work.* The identity of a context is (organization, agent,
  ``run_as``, context type, context key): the partial unique index
  ``agent_runs_one_active_per_context``, the active-run lookup, deferral behind a run,
  the drain that coalesces deferred events, the context lock and thread reuse all include
  the run-as user, so one user's run never blocks, absorbs or continues another's events.
- *System context types* (``SYSTEM_CONTEXT_TYPES``) belong to the engine: only the source
  that owns one may use it (``context_refusal``), so nobody can squat a schedule's context.
- *Who may be run as* (``run_as_refusal``). An active user who is a member of the org and
  holds ``actions:manage``. Schedules, actions, follow-ups and retries check it each time
  they would start work, so work of a removed or deactivated member stops firing with the
  reason recorded, nothing is deleted, and it fires again once they are re-admitted.
"""

from django.core.exceptions import ValidationError
from django.db.models import OuterRef, QuerySet, Subquery

from agentpress.agents.models import Thread
from agentpress.orgs.models import Membership
from agentpress.orgs.permissions import Access, access_for
from automation.states import RunSource

SCHEDULE_CONTEXT_TYPE = "schedule"
# context type → the only run source that may use it
SYSTEM_CONTEXT_TYPES = {SCHEDULE_CONTEXT_TYPE: RunSource.SCHEDULE}


class ThreadOutOfScope(ValidationError):
    """The thread runs as another user than the work that would join it."""

    def __init__(self, thread: Thread):
        self.thread = thread
        super().__init__(
            {"thread": [f"Thread {thread.pk} is another user's conversation; work joins only its own."]}
        )


def scoped(qs: QuerySet, access: Access, run_as_field: str = "run_as") -> QuerySet:
    """``qs`` limited to the caller's organization and, for a member, to their own work."""
    qs = qs.filter(organization=access.organization)
    if not access.org_wide:
        qs = qs.filter(**{run_as_field: access.user})
    return qs


def threads_for(access: Access) -> QuerySet[Thread]:
    """The conversations the caller may read."""
    return scoped(Thread.objects.all(), access)


def work_thread(*, agent, run_as, thread_id) -> Thread | None:
    """The thread ``thread_id`` of ``agent`` that work running as ``run_as`` may join, or ``None``
    (no such thread, or another user's: the two answers are the same on purpose)."""
    return Thread.objects.filter(
        organization_id=agent.organization_id, agent=agent, run_as=run_as, pk=thread_id
    ).first()


def check_thread(thread: Thread, run_as) -> None:
    """Raise ``ThreadOutOfScope`` unless work running as ``run_as`` may join ``thread``."""
    if thread.run_as_id is None or thread.run_as_id != getattr(run_as, "pk", run_as):
        raise ThreadOutOfScope(thread)


def context_refusal(*, source: str, context_type: str) -> str:
    """Why ``source`` may not use ``context_type``, or an empty string."""
    owner = SYSTEM_CONTEXT_TYPES.get(context_type)
    if owner is None or owner == source:
        return ""
    return f"The context type {context_type!r} is reserved for {RunSource(owner).label.lower()} runs."


def run_as_refusal(*, organization, user) -> str:
    """Why work may no longer run as ``user`` in ``organization``, or an empty string."""
    return _refusal(access_for(user, organization))


def with_run_as_membership(work: QuerySet) -> QuerySet:
    """``work`` (rows with an ``organization`` and a ``run_as``) with each row's run-as
    membership read in the same statement, so ``work_refusal`` asks nothing more."""
    membership = Membership.objects.filter(
        organization_id=OuterRef("organization_id"), user_id=OuterRef("run_as_id")
    )
    return work.annotate(
        run_as_role=Subquery(membership.values("role")[:1]),
        run_as_permissions=Subquery(membership.values("permissions")[:1]),
    )


def work_refusal(row) -> str:
    """``run_as_refusal`` for one work row; a row from ``with_run_as_membership`` brings the
    membership along, any other row looks it up."""
    if not hasattr(row, "run_as_role"):
        return run_as_refusal(organization=row.organization, user=row.run_as)
    membership = None
    if row.run_as_role is not None:
        membership = Membership(
            organization_id=row.organization_id,
            user_id=row.run_as_id,
            role=row.run_as_role,
            permissions=row.run_as_permissions,
        )
    return _refusal(Access(organization=row.organization, user=row.run_as, membership=membership))


def run_as_refusals(work) -> dict[tuple[int, int], str]:
    """``run_as_refusal`` for each row of ``work`` (schedules, actions: anything with an
    ``organization`` and a ``run_as``), keyed by (organization id, user id), in one query."""
    work = list(work)
    memberships = {
        (m.organization_id, m.user_id): m
        for m in Membership.objects.filter(
            organization_id__in={row.organization_id for row in work},
            user_id__in={row.run_as_id for row in work},
        )
    }
    return {
        (row.organization_id, row.run_as_id): _refusal(
            Access(
                organization=row.organization,
                user=row.run_as,
                membership=memberships.get((row.organization_id, row.run_as_id)),
            )
        )
        for row in work
    }


def _refusal(access: Access) -> str:
    user = access.user
    if not user.is_active:
        return f"{user.username}'s account is deactivated."
    if access.membership is None:
        return f"{user.username} is no longer a member of the organization."
    if not access.can_manage_actions:
        return f"{user.username} no longer holds the actions:manage permission."
    return ""
