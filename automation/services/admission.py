"""Admission: which pending run a free worker slot takes next, and why the others wait (DESIGN §7a).

- Limits. ``Organization.max_concurrent_runs`` and ``Agent.max_concurrent_runs`` (empty: the
  ``AUTOMATION_MAX_CONCURRENT_RUNS_PER_ORG`` / ``…_PER_AGENT`` defaults; 0 means no limit) are
  checked inside the claim's transaction while it holds the organization's and then the agent's
  admission lock (``pg_advisory_xact_lock``; SQLite's ``IMMEDIATE`` transactions hold the whole
  database anyway). Every claim of the same organization or agent counts the running runs
  after taking the lock, so two workers can never both take the last slot; a recovered run is
  no longer ``running`` and its slot is free again.
- Fair order. A broker message only wakes a worker: the claim takes the next eligible run
  from the database, the organization with the fewest runs in flight first, then inside it the
  agent with the fewest, then the oldest run. Every organization has an equal share of the
  slots; its limit caps it. The run whose message woke the worker wins every tie.
- Daily budgets (runs, tokens, cost per organization and agent, counted from midnight in
  ``Organization.timezone``) hold work ``pending``: a run over budget is marked with its
  waiting reason and skipped by claims until ``review_waiting_runs`` finds the budget free
  again (the day turned, or an owner raised the limit).
- ``waiting_reason`` says in words why a pending run has not started; each reason starts with
  a fixed phrase (``WaitingKind``) so the API, the console and ``/metrics`` can group by it.
"""

import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Q
from django.utils import timezone

from agentpress.agents.models import Agent
from agentpress.orgs.models import Organization
from automation import queries
from automation.models import AgentRun
from automation.services import budgets
from automation.states import RunStatus, WaitingKind, effective_limit

MAX_CANDIDATES = 4  # held candidates one claim steps over before it gives up
CLAIM_LOCK_TIMEOUT_MS = 5000
ORG_LOCK_SPACE = 15_001  # advisory lock keys: (space << 32) | id
AGENT_LOCK_SPACE = 15_002


def waiting_filter(kind: str) -> Q:
    """Runs waiting for this kind of reason (``kind`` from ``WaitingKind``)."""
    return Q(status=RunStatus.PENDING, waiting_reason__startswith=WaitingKind.PHRASES[kind])


def _utc(at: datetime) -> str:
    return at.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%d %H:%M:%S UTC")


def not_due_reason(not_before: datetime) -> str:
    return f"{WaitingKind.PHRASES[WaitingKind.NOT_DUE]} (starts at {_utc(not_before)})"


def debounced_reason(until: datetime) -> str:
    return f"{WaitingKind.PHRASES[WaitingKind.DEBOUNCED]} {_utc(until)}"


def deferred_reason(run_id) -> str:
    """Why a provider event waits (``ProviderEvent.reason``): the run it is deferred behind."""
    return f"deferred behind run {run_id}"


def worker_reason(seconds: float) -> str:
    return f"{WaitingKind.PHRASES[WaitingKind.WORKER]} (unclaimed for {seconds:.0f} s)"


def reason_for_not_before(not_before: datetime | None, *, now: datetime) -> str:
    """The reason a new run starts with: not yet due, or none."""
    return not_due_reason(not_before) if not_before and not_before > now else ""


# Limits -----------------------------------------------------------------------------------


def org_limit(value: int | None) -> int | None:
    """The effective concurrency limit of an organization (``None``: no limit)."""
    return effective_limit(value, settings.AUTOMATION_MAX_CONCURRENT_RUNS_PER_ORG)


def agent_limit(value: int | None) -> int | None:
    return effective_limit(value, settings.AUTOMATION_MAX_CONCURRENT_RUNS_PER_AGENT)


def in_flight(*, organization_id=None, agent_id=None) -> int:
    qs = AgentRun.objects.filter(status=RunStatus.RUNNING)
    if organization_id is not None:
        qs = qs.filter(organization_id=organization_id)
    if agent_id is not None:
        qs = qs.filter(agent_id=agent_id)
    return qs.count()


@dataclass(frozen=True)
class Hold:
    """A candidate that may not start now, and what holds it: its organization or its agent."""

    kind: str
    reason: str
    organization_id: int
    agent_id: int
    by_agent: bool

    def scope(self) -> Q:
        return Q(agent_id=self.agent_id) if self.by_agent else Q(organization_id=self.organization_id)


# The claim's statements -------------------------------------------------------------------

# How many runs each organization and each agent has in flight (the fair order's key, in
# SQLite's form).
LOADS = """WITH org_load AS (
    SELECT organization_id, COUNT(*) AS n FROM agent_runs WHERE status = 'running'
    GROUP BY organization_id
), agent_load AS (
    SELECT agent_id, COUNT(*) AS n FROM agent_runs WHERE status = 'running' GROUP BY agent_id
)"""

# The next eligible run in fair order: fewest in flight for its organization, then for its
# agent, then the message's own run, then the oldest. ``{exclude}`` and ``{lock}`` are filled
# per call: the organizations/agents this claim already found held, and the lock (none on
# SQLite, whose IMMEDIATE transaction already holds the database). This form sorts every
# pending run: SQLite's (it has no LATERAL); PostgreSQL takes ``NEXT_FAIR_RUN_PG``.
NEXT_FAIR_RUN = """
{loads}
SELECT r.id, r.attempt, r.organization_id, r.agent_id, {guarded} AS guarded
FROM agent_runs r
JOIN {orgs} o ON o.id = r.organization_id
JOIN {agents} a ON a.id = r.agent_id
LEFT JOIN org_load ol ON ol.organization_id = r.organization_id
LEFT JOIN agent_load al ON al.agent_id = r.agent_id
WHERE r.status = 'pending'
  AND (r.not_before IS NULL OR r.not_before <= %(now)s)
  AND r.waiting_reason NOT LIKE %(budget_held)s
  AND (COALESCE(o.max_concurrent_runs, %(org_default)s) = 0
       OR COALESCE(ol.n, 0) < COALESCE(o.max_concurrent_runs, %(org_default)s))
  AND (COALESCE(a.max_concurrent_runs, %(agent_default)s) = 0
       OR COALESCE(al.n, 0) < COALESCE(a.max_concurrent_runs, %(agent_default)s))
  {exclude}
ORDER BY COALESCE(ol.n, 0), COALESCE(al.n, 0),
         CASE WHEN r.id = %(preferred)s THEN 0 ELSE 1 END, r.created_at, r.id
LIMIT 1
{lock}
"""

# The same order on PostgreSQL, without sorting every pending run on every claim: the fair
# order only ever picks an agent's oldest pending runs (or the message's own run), so each
# agent offers its ``HEADS_PER_AGENT`` oldest, read from the partial index
# ``agent_runs_pending_per_agent``, and only those are sorted and locked. Concurrent claimers
# step over each other's locked rows (``SKIP LOCKED``); the message's own run is always among
# the candidates, so a wake-up for a run never misses it because others hold the heads.
#
# Runs in flight are counted only where a count decides something, and only for the
# agents that offer a run (``agent_runs_org_status_count``, ``agent_runs_running_per_agent``):
# an organization's when it has a concurrency limit or another organization offers a run
# too, an agent's when it has a limit or another agent offers one. A burst of one agent's
# runs is then claimed without counting the thousand it already has in flight.
#
# The candidates are read back by primary key: their status test is written so that no
# partial index of pending runs can answer it (``(r.status || '')``). Those indexes keep an
# entry for every run that was pending since the last vacuum, and after a drained burst the
# statistics of a quiet moment make them look nearly empty: the planner then read all of
# them (and the heap pages behind) on every claim, ~10,000 entries and ~300 pages per claim
# in a 1,000-run backlog, where the candidates are 65 primary-key probes. The status is
# still tested on the locked row (a concurrent claim's commit is seen by the re-check).
NEXT_FAIR_RUN_PG = """
WITH base AS (
    SELECT a.id AS agent_id, a.organization_id AS org_id,
           COALESCE(o.max_concurrent_runs, %(org_default)s) AS org_cap,
           COALESCE(a.max_concurrent_runs, %(agent_default)s) AS agent_cap,
           {guarded} AS guarded
    FROM {agents} a
    JOIN {orgs} o ON o.id = a.organization_id
    WHERE TRUE {exclude}
), heads AS (
    SELECT b.agent_id, h.id FROM base b
    CROSS JOIN LATERAL (
        SELECT p.id FROM agent_runs p
        WHERE p.agent_id = b.agent_id AND p.status = 'pending'
          AND (p.not_before IS NULL OR p.not_before <= %(now)s)
          AND p.waiting_reason NOT LIKE %(budget_held)s
        ORDER BY p.created_at, p.id
        LIMIT %(heads)s
    ) h
), offering AS (
    SELECT * FROM base WHERE agent_id IN (SELECT agent_id FROM heads)
), spread AS (
    SELECT COUNT(DISTINCT org_id) > 1 AS orgs, COUNT(*) > 1 AS agents FROM offering
), eligible AS (
    SELECT c.agent_id, c.guarded, n.org_n, n.agent_n
    FROM offering c CROSS JOIN spread s
    CROSS JOIN LATERAL (
        SELECT CASE WHEN s.orgs OR c.org_cap > 0 THEN (
                   SELECT COUNT(*) FROM agent_runs x WHERE x.organization_id = c.org_id AND x.status = 'running'
               ) ELSE 0 END AS org_n,
               CASE WHEN s.agents OR c.agent_cap > 0 THEN (
                   SELECT COUNT(*) FROM agent_runs x WHERE x.agent_id = c.agent_id AND x.status = 'running'
               ) ELSE 0 END AS agent_n
    ) n
    WHERE (c.org_cap = 0 OR n.org_n < c.org_cap) AND (c.agent_cap = 0 OR n.agent_n < c.agent_cap)
)
SELECT r.id, r.attempt, r.organization_id, r.agent_id, e.guarded
FROM agent_runs r JOIN eligible e ON e.agent_id = r.agent_id
WHERE r.id = ANY(ARRAY(SELECT id FROM heads UNION ALL SELECT CAST(%(preferred)s AS uuid)))
  AND (r.status || '') = 'pending'
  AND (r.not_before IS NULL OR r.not_before <= %(now)s)
  AND r.waiting_reason NOT LIKE %(budget_held)s
ORDER BY e.org_n, e.agent_n, CASE WHEN r.id = %(preferred)s THEN 0 ELSE 1 END, r.created_at, r.id
LIMIT 1
FOR NO KEY UPDATE OF r SKIP LOCKED
"""
HEADS_PER_AGENT = 64

# Whether a limit or a daily budget applies to the candidate's organization or agent: only
# then does ``admit`` load them, take the admission locks and count.
GUARDED = """(COALESCE(o.max_concurrent_runs, %(org_default)s) > 0
    OR COALESCE(a.max_concurrent_runs, %(agent_default)s) > 0
    OR o.daily_run_limit IS NOT NULL OR o.daily_token_limit IS NOT NULL OR o.daily_cost_limit IS NOT NULL
    OR a.daily_run_limit IS NOT NULL OR a.daily_token_limit IS NOT NULL OR a.daily_cost_limit IS NOT NULL)"""

# The message's own run, only by id (admission off: the broker's order is the order).
THE_RUN = """
SELECT r.id, r.attempt, r.organization_id, r.agent_id FROM agent_runs r
WHERE r.id = %(preferred)s AND r.status = 'pending'
  AND (r.not_before IS NULL OR r.not_before <= %(now)s)
{lock}
"""


@dataclass(frozen=True)
class Candidate:
    id: uuid.UUID
    attempt: int
    organization_id: int
    agent_id: int
    guarded: bool = True  # a limit or budget applies: ``admit`` must count


@dataclass
class Exclusions:
    """What one claim call already found held, so that it steps over it."""

    organizations: set = field(default_factory=set)
    agents: set = field(default_factory=set)

    def add(self, hold: Hold) -> None:
        if hold.by_agent:
            self.agents.add(hold.agent_id)
        else:
            self.organizations.add(hold.organization_id)

    def sql(self, *, organization: str = "r.organization_id", agent: str = "r.agent_id") -> tuple[str, dict]:
        """``AND … NOT IN (…)`` over the given columns (a run's by default, an agent's in
        ``NEXT_FAIR_RUN_PG``), with its parameters."""
        parts, params = [], {}
        for key, column, ids in (
            ("organization_id", organization, self.organizations),
            ("agent_id", agent, self.agents),
        ):
            names = []
            for n, pk in enumerate(sorted(ids)):
                names.append(f"%(x_{key}_{n})s")
                params[f"x_{key}_{n}"] = pk
            if names:
                parts.append(f"AND {column} NOT IN ({', '.join(names)})")
        return " ".join(parts), params


def enabled() -> bool:
    return settings.AUTOMATION_ADMISSION_ENABLED


def _postgres() -> bool:
    return connection.vendor == "postgresql"


# Wait for a lock someone else holds on the message's own run, before the fair-order read.
#
# Other holders of a pending row are short transactions (another claim, a cancel, a
# debounce, a sweep): waiting for them instead of skipping the row means a run whose message
# arrives is claimed then, not left for the redispatch sweep. Taking the lock first also
# keeps the row in this claim's reach: ``SKIP LOCKED`` never skips our own lock. The claim's
# locks wait at most ``CLAIM_LOCK_TIMEOUT_MS``: past it the claim fails and the sweep sends
# the run again. It goes in the same round trip as the fair-order read (``lock_candidate``):
# separate statements of one transaction, so the read's snapshot is taken after the wait and
# sees what the lock's holder committed.
LOCK_PREFERRED_PG = (
    f"SET LOCAL lock_timeout = {CLAIM_LOCK_TIMEOUT_MS}; "
    "SELECT 1 FROM agent_runs WHERE id = %(preferred)s AND status = 'pending' FOR NO KEY UPDATE; "
)


def candidate_query(*, preferred, now: datetime, exclude: Exclusions) -> tuple[str, dict] | None:
    """The statement that reads (and on PostgreSQL locks) the claim's candidate, with its
    parameters; ``None`` when nothing can be a candidate (admission off and no message's run)."""
    lock = "FOR NO KEY UPDATE OF r SKIP LOCKED" if _postgres() else ""
    params = {
        "now": connection.ops.adapt_datetimefield_value(now),
        "preferred": preferred,
        "budget_held": WaitingKind.PHRASES[WaitingKind.BUDGET] + "%",
        "org_default": settings.AUTOMATION_MAX_CONCURRENT_RUNS_PER_ORG,
        "agent_default": settings.AUTOMATION_MAX_CONCURRENT_RUNS_PER_AGENT,
    }
    if not enabled():
        if preferred is None:
            return None
        return THE_RUN.format(lock=lock), params
    if _postgres():
        excluded, excluded_params = exclude.sql(organization="a.organization_id", agent="a.id")
        sql = NEXT_FAIR_RUN_PG.format(
            orgs=Organization._meta.db_table, agents=Agent._meta.db_table, exclude=excluded, guarded=GUARDED
        )
        return sql, params | excluded_params | {"heads": HEADS_PER_AGENT}
    excluded, excluded_params = exclude.sql()
    sql = NEXT_FAIR_RUN.format(
        orgs=Organization._meta.db_table,
        agents=Agent._meta.db_table,
        exclude=excluded,
        lock=lock,
        guarded=GUARDED,
        loads=LOADS,
    )
    return sql, params | excluded_params


def lock_candidate(*, preferred, now: datetime, exclude: Exclusions) -> Candidate | None:
    """Lock and return the run this claim should take, inside the caller's transaction."""
    pk = AgentRun._meta.pk
    preferred = pk.get_db_prep_value(as_run_id(preferred), connection) if preferred else None
    query = candidate_query(preferred=preferred, now=now, exclude=exclude)
    if query is None:
        return None
    sql, args = queries.planned(*query, name="admission.claim_candidate")
    locked_first = preferred is not None and _postgres()
    with connection.cursor() as cursor:  # Django's client-side binding cursor sends them all at once
        cursor.execute(LOCK_PREFERRED_PG + sql if locked_first else sql, args)
        if locked_first:
            cursor.nextset()  # past SET
            cursor.nextset()  # past the lock's row
        row = cursor.fetchone()
    if row is None:
        return None
    return Candidate(
        id=as_run_id(row[0]),
        attempt=row[1],
        organization_id=row[2],
        agent_id=row[3],
        guarded=bool(row[4]) if len(row) > 4 else True,
    )


def _lock_admission(candidate: Candidate) -> None:
    """Serialise claims per organization, then per agent (always in that order: no deadlock)."""
    if not _postgres():
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s), pg_advisory_xact_lock(%s)",
            [
                (ORG_LOCK_SPACE << 32) | candidate.organization_id,
                (AGENT_LOCK_SPACE << 32) | candidate.agent_id,
            ],
        )


def admit(candidate: Candidate, *, now: datetime) -> Hold | None:
    """Under the admission locks: ``None`` when the candidate may start now, else its hold."""
    if not enabled() or not candidate.guarded:
        return None  # no limit, no budget: nothing to count, no lock needed
    agent = Agent.objects.select_related("organization").get(pk=candidate.agent_id)
    org = agent.organization
    limited = org_limit(org.max_concurrent_runs) or agent_limit(agent.max_concurrent_runs)
    if not limited and not budgets.budgeted(org) and not budgets.budgeted(agent):
        return None  # nothing to count: no lock needed
    _lock_admission(candidate)
    return hold_for(org, agent, now=now)


def budget_hold(org: Organization, agent: Agent, now: datetime) -> Hold | None:
    exceeded = budgets.budget_exceeded(org, agent, now)
    if exceeded is None:
        return None
    reason, by_agent = exceeded
    return Hold(WaitingKind.BUDGET, reason, org.pk, agent.pk, by_agent)


def limit_hold(org: Organization, agent: Agent) -> Hold | None:
    """The organization's or agent's concurrency limit, if either is reached."""
    org_cap, agent_cap = org_limit(org.max_concurrent_runs), agent_limit(agent.max_concurrent_runs)
    if not (org_cap or agent_cap):
        return None
    counts = AgentRun.objects.filter(
        Q(organization_id=org.pk) | Q(agent_id=agent.pk), status=RunStatus.RUNNING
    ).aggregate(
        org=Count("id", filter=Q(organization_id=org.pk)), agent=Count("id", filter=Q(agent_id=agent.pk))
    )
    if org_cap and counts["org"] >= org_cap:
        reason = f"{WaitingKind.PHRASES[WaitingKind.ORG_LIMIT]} ({counts['org']} / {org_cap})"
        return Hold(WaitingKind.ORG_LIMIT, reason, org.pk, agent.pk, by_agent=False)
    if agent_cap and counts["agent"] >= agent_cap:
        reason = f"{WaitingKind.PHRASES[WaitingKind.AGENT_LIMIT]} ({counts['agent']} / {agent_cap})"
        return Hold(WaitingKind.AGENT_LIMIT, reason, org.pk, agent.pk, by_agent=True)
    return None


def hold_for(org: Organization, agent: Agent, *, now: datetime) -> Hold | None:
    """What holds due work of this agent now (limits, then budgets), without locking."""
    return limit_hold(org, agent) or budget_hold(org, agent, now)


def _due(now: datetime) -> Q:
    return Q(status=RunStatus.PENDING) & (Q(not_before__isnull=True) | Q(not_before__lte=now))


def mark_held(hold: Hold, *, now: datetime) -> int:
    """Write the hold's reason on the due pending runs it holds (rows being claimed are skipped)."""
    with transaction.atomic():
        ids = list(
            AgentRun.objects.select_for_update(skip_locked=True, no_key=True, of=("self",))
            .filter(_due(now) & hold.scope())
            .exclude(waiting_reason=hold.reason)
            .values_list("pk", flat=True)
        )
        return AgentRun.objects.filter(pk__in=ids, status=RunStatus.PENDING).update(
            waiting_reason=hold.reason
        )


def as_run_id(value) -> uuid.UUID:
    return AgentRun._meta.pk.to_python(value)


def explain_waiting(run_id) -> None:
    """The message's run was not taken: if a limit or budget holds it, its runs say so."""
    if not enabled():
        return
    now = timezone.now()
    run = AgentRun.objects.filter(_due(now), pk=run_id).select_related("organization", "agent").first()
    if run is not None and (hold := hold_for(run.organization, run.agent, now=now)) is not None:
        mark_held(hold, now=now)


def slot_frees_held_work(run: AgentRun) -> bool:
    """A run that held a slot ended: does its organization have due work a limit held back?

    Wake-ups are conserved (each message claims one run while eligible work exists), except
    where a limit made a claim give up, and that claim marked the runs it held: only then
    does an ended run need to wake a worker.
    """
    if not enabled() or run.started_at is None or _unlimited_when_claimed(run):
        return False
    held = Q(waiting_reason__startswith=WaitingKind.PHRASES[WaitingKind.ORG_LIMIT]) | Q(
        waiting_reason__startswith=WaitingKind.PHRASES[WaitingKind.AGENT_LIMIT]
    )
    return AgentRun.objects.filter(_due(timezone.now()), held, organization_id=run.organization_id).exists()


def claimable_work_waits() -> bool:
    """Whether any run is due and pending outside a daily budget: only then can a claim find
    something. One read of the partial index ``agent_runs_pending_due``, instead of a claim's
    transaction and fair-order read, when a burst's last runs end with nothing left to take.
    When the statement that ended this thread's run read it already
    (``queries.finish_run_and_ask``, then ``remember_claimable``), that answer is used, once,
    and nothing is asked."""
    answer, _ended_answer.claimable = getattr(_ended_answer, "claimable", None), None
    if answer is not None:
        return answer
    return queries.claimable_work_waits(**claimable_question())


def claimable_question() -> dict:
    """The arguments of ``queries.claimable_work_waits`` now (also read by the statement that
    ends a run, ``queries.finish_run_and_ask``)."""
    return {"now": timezone.now(), "budget_phrase": WaitingKind.PHRASES[WaitingKind.BUDGET]}


#: what the statement that ended this thread's run read of ``claimable_work_waits``
_ended_answer = threading.local()


def remember_claimable(answer: bool | None) -> None:
    """Keep the answer the ending statement read for this thread's next question (``None``:
    not read, ask the database)."""
    _ended_answer.claimable = answer


def _unlimited_when_claimed(run: AgentRun) -> bool:
    """Whether the run's organization and agent, as loaded with it (the worker's claim loads
    both), have no concurrency limit: then no claim was held back by one. A limit set while
    the run was in flight is found by the worker's next claim in the freed slot
    (``execution.execute_runs``) or by the review sweep."""
    loaded = [
        AgentRun._meta.get_field(name).get_cached_value(run, None) for name in ("organization", "agent")
    ]
    if None in loaded:
        return False  # not loaded with the run: ask the database
    org, agent = loaded
    return org_limit(org.max_concurrent_runs) is None and agent_limit(agent.max_concurrent_runs) is None


def review_waiting_runs(*, resend_after: timedelta, batch: int, organization_id=None) -> list:
    """Refresh why each due pending run waits, and return the ids to send to a worker now.

    Per (organization, agent) with due work: held by a limit or budget → its runs say so and
    none is sent; otherwise held reasons are cleared and the runs that were never sent, or
    whose message went unclaimed for ``resend_after`` (those now say "waiting for a worker"),
    are returned, at most as many as the organization and agent have free slots.
    """
    now = timezone.now()
    due = AgentRun.objects.filter(_due(now))
    if organization_id is not None:
        due = due.filter(organization_id=organization_id)
    groups = list(due.order_by().values_list("organization_id", "agent_id").distinct()[:batch])
    orgs = Organization.objects.in_bulk({g[0] for g in groups})
    agents = Agent.objects.in_bulk({g[1] for g in groups})
    to_send: list = []
    for org_id, agent_id in groups:
        if len(to_send) >= batch:
            break
        org, agent = orgs[org_id], agents[agent_id]
        hold = hold_for(org, agent, now=now) if enabled() else None
        if hold is not None:
            mark_held(hold, now=now)
            continue
        to_send.extend(
            _release(due.filter(agent_id=agent_id), org, agent, now, resend_after, batch - len(to_send))
        )
    return to_send


def _release(
    runs, org: Organization, agent: Agent, now: datetime, resend_after: timedelta, room: int
) -> list:
    held_phrases = Q()
    for kind in WaitingKind.HELD:
        held_phrases |= Q(waiting_reason__startswith=WaitingKind.PHRASES[kind])
    runs.filter(held_phrases).update(waiting_reason="")  # ``runs`` are pending: a claimed row is not matched
    free = [room]
    if enabled():
        for cap, n in (
            (org_limit(org.max_concurrent_runs), lambda: in_flight(organization_id=org.pk)),
            (agent_limit(agent.max_concurrent_runs), lambda: in_flight(agent_id=agent.pk)),
        ):
            if cap:
                free.append(max(0, cap - n()))
    stale = now - resend_after
    rows = list(
        runs.filter(Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=stale))
        .order_by("created_at", "id")
        .values_list("pk", "dispatched_at", "created_at", "not_before")[: min(free)]
    )
    for pk, sent, created, not_before in rows:
        if sent is not None:  # a message went out and no worker claimed the run (guarded: it may be now)
            waited = (now - max(filter(None, (created, not_before)))).total_seconds()
            AgentRun.objects.filter(pk=pk, status=RunStatus.PENDING).update(
                waiting_reason=worker_reason(waited)
            )
    never_sent = [pk for pk, sent, *_ in rows if sent is None]
    AgentRun.objects.filter(pk__in=never_sent, status=RunStatus.PENDING).exclude(waiting_reason="").update(
        waiting_reason=""
    )
    return [row[0] for row in rows]
