"""Admission: limits under racing claimers, slots given back by recovery, fair order, waiting
reasons set and cleared at their transitions, daily budgets and the per-run token ceiling."""

import threading
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection, transaction
from django.utils import timezone

from automation.models import AgentRun, RunEvent
from automation.services import admission, budgets, execution, runs, settlement
from automation.services.recovery import recover_stale_leases, redispatch_pending_runs
from automation.states import RunSource, RunStatus, WaitingKind, waiting_kind
from tests.factories import AgentFactory, AgentRunFactory, OrganizationFactory
from tests.support.concurrency import run_concurrently
from tests.support.services import require_postgres


@pytest.fixture
def sent(monkeypatch):
    """What would have gone to the broker: run messages and bare wake-ups."""
    out = {"runs": [], "wakeups": 0}

    def dispatch(*, run_id):
        AgentRun.objects.filter(pk=run_id).update(dispatched_at=timezone.now())
        out["runs"].append(run_id)
        return True

    def wake():
        out["wakeups"] += 1
        return True

    monkeypatch.setattr(runs, "dispatch_run", dispatch)
    monkeypatch.setattr("automation.services.recovery.dispatch_run", dispatch)
    monkeypatch.setattr("automation.broker.waiting_messages", lambda: 0)  # an empty queue
    monkeypatch.setattr(runs, "wake_worker", wake)
    return out


FAIR_READ_MARKS = ("heads AS", "org_load AS", "admission.claim_candidate")


def pending(agent, n=1):
    return [AgentRunFactory(agent=agent) for _ in range(n)]


def reason(run) -> str:
    run.refresh_from_db()
    return run.waiting_reason


def finish(lease) -> None:
    settlement.complete_run(run=lease.run, lease_token=lease.token, messages=[], tool_calls=[], worker="w")


@pytest.mark.django_db(transaction=True)
def test_a_limit_of_one_never_runs_two_under_eight_racing_claimers(roster, sent):
    require_postgres()
    roster.org.max_concurrent_runs = 1
    roster.org.save()
    second = AgentFactory(organization=roster.org)  # two agents: the org's limit binds, not the agent's
    pool = pending(roster.agent, 4) + pending(second, 4)
    for _ in range(200):
        ids = [r.pk for r in pool]
        leases = run_concurrently(lambda ids=ids: runs.claim_run(run_id=ids.pop(), worker="w"), copies=8)
        won = [lease for lease in leases if lease is not None]
        assert len(won) == 1
        assert AgentRun.objects.filter(organization=roster.org, status=RunStatus.RUNNING).count() == 1
        finish(won[0])
        pool = [r for r in pool if r.pk != won[0].run.pk] + pending(won[0].run.agent)
    assert AgentRun.objects.filter(organization=roster.org, status=RunStatus.COMPLETED).count() == 200


@pytest.mark.django_db(transaction=True)
def test_an_agent_limit_holds_under_racing_claimers(roster, sent):
    require_postgres()
    roster.agent.max_concurrent_runs = 2
    roster.agent.save()
    pending(roster.agent, 8)
    for _ in range(20):
        run_concurrently(lambda: runs.claim_run(worker="w"), copies=8)
        running = list(AgentRun.objects.filter(agent=roster.agent, status=RunStatus.RUNNING))
        assert len(running) == 2
        for run in running:
            settlement.complete_run(
                run=run, lease_token=run.lease_token, messages=[], tool_calls=[], worker="w"
            )
        pending(roster.agent, 2)


@pytest.mark.sqlite
def test_recovering_a_crashed_workers_runs_gives_their_slots_back(roster):
    roster.org.max_concurrent_runs = 2
    roster.org.save()
    a, b, c = pending(roster.agent, 3)
    assert runs.claim_run(run_id=a.pk, worker="crashed") is not None
    assert runs.claim_run(run_id=b.pk, worker="crashed") is not None
    assert runs.claim_run(run_id=c.pk, worker="w2") is None
    assert reason(c) == "organization at its limit (2 / 2)"
    AgentRun.objects.filter(pk__in=[a.pk, b.pk]).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert recover_stale_leases() == 2
    lease = runs.claim_run(run_id=c.pk, worker="w2")
    assert lease is not None and lease.run.pk == c.pk
    assert reason(c) == ""


@pytest.mark.sqlite
@pytest.mark.parametrize("heads", [admission.HEADS_PER_AGENT, 2])  # 2: each agent offers fewer than it has
def test_fair_order_across_three_organizations_with_unequal_backlogs(roster, heads, monkeypatch):
    monkeypatch.setattr(admission, "HEADS_PER_AGENT", heads)
    orgs = {name: OrganizationFactory(slug=name) for name in "ABC"}
    agents = {name: AgentFactory(organization=org) for name, org in orgs.items()}
    label = {}
    for name, count in (("A", 6), ("B", 3), ("C", 1)):
        for n, run in enumerate(pending(agents[name], count), start=1):
            label[run.pk] = f"{name}{n}"
    a_runs = [pk for pk, name in label.items() if name.startswith("A")]
    # Every wake-up carries one of A's messages (A queued first): fairness still wins.
    order = [label[runs.claim_run(run_id=a_runs[-1], worker="w").run.pk] for _ in range(10)]
    assert order == ["A6", "B1", "C1", "A1", "B2", "A2", "B3", "A3", "A4", "A5"]
    assert runs.claim_run(worker="w") is None


@pytest.mark.sqlite
def test_inside_an_organization_the_agent_with_least_in_flight_goes_first(roster):
    x, y = roster.agent, AgentFactory(organization=roster.org)
    x_runs, y_runs = pending(x, 3), pending(y, 1)
    claimed = [runs.claim_run(worker="w").run.pk for _ in range(4)]
    assert claimed == [x_runs[0].pk, y_runs[0].pk, x_runs[1].pk, x_runs[2].pk]


@pytest.mark.sqlite
def test_the_messages_run_wins_a_tie_and_an_other_org_only_when_fairer(roster):
    first, second = pending(roster.agent, 2)
    assert runs.claim_run(run_id=second.pk, worker="w").run.pk == second.pk  # tie: the message's run
    other = pending(roster.other_agent)[0]
    assert runs.claim_run(run_id=first.pk, worker="w").run.pk == other.pk  # globex has nothing in flight


def test_the_messages_run_is_a_candidate_even_behind_more_than_an_agents_heads(roster, monkeypatch):
    monkeypatch.setattr(admission, "HEADS_PER_AGENT", 2)
    backlog = pending(roster.agent, 5)
    assert runs.claim_run(run_id=backlog[-1].pk, worker="w").run.pk == backlog[-1].pk
    assert runs.claim_run(worker="w").run.pk == backlog[0].pk  # no message: the oldest


@pytest.mark.sqlite
def test_admission_off_claims_only_the_messages_run(roster, settings):
    settings.AUTOMATION_ADMISSION_ENABLED = False
    roster.org.max_concurrent_runs = 1
    roster.org.save()
    first, second = pending(roster.agent, 2)
    assert runs.claim_run(run_id=second.pk, worker="w").run.pk == second.pk
    assert runs.claim_run(run_id=first.pk, worker="w").run.pk == first.pk  # no limit either
    assert runs.claim_run(worker="w") is None


@pytest.mark.django_db(transaction=True)
def test_a_run_whose_message_arrives_while_we_briefly_lock_it_is_claimed_then(roster):
    """Issue 14 item 5: the creating side's ``UPDATE … dispatched_at`` held the row while the
    message was already at a worker, whose ``SKIP LOCKED`` claim skipped it."""
    require_postgres()
    run = pending(roster.agent)[0]
    locked, release = threading.Event(), threading.Event()

    def dispatcher_holding_the_row():
        try:
            with transaction.atomic():
                AgentRun.objects.filter(pk=run.pk).update(dispatched_at=timezone.now())
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    holder = threading.Thread(target=dispatcher_holding_the_row)
    holder.start()
    assert locked.wait(10)
    threading.Timer(0.5, release.set).start()
    lease = runs.claim_run(run_id=run.pk, worker="w")
    holder.join()
    assert lease is not None and lease.run.pk == run.pk
    assert reason(run) == ""


@pytest.mark.sqlite
def test_dispatch_writes_dispatched_at_before_the_message_goes_out(roster, monkeypatch):
    run = pending(roster.agent)[0]
    seen = []

    class Message:
        def __init__(self, name, args):
            self.args = args

        def apply_async(self, retry):
            seen.append(AgentRun.objects.get(pk=self.args[0]).dispatched_at)

    monkeypatch.setattr(runs, "signature", Message)
    assert runs.dispatch_run(run_id=run.pk)
    assert seen[0] is not None


# A freed slot takes the next fair run itself ---------------------------------------------


def claims_in_order(run_ids) -> list:
    events = RunEvent.objects.filter(run_id__in=run_ids, kind="claimed").order_by("at", "id")
    return list(events.values_list("run_id", flat=True))


@pytest.mark.sqlite
def test_a_wake_up_runs_the_next_fair_runs_in_the_slot_each_one_frees(roster, sent):
    """One message, three runs, no other message waiting: the thread claims the next eligible
    run as soon as its run ends instead of leaving the slot idle until a wake-up arrives."""
    mine = pending(roster.agent, 2)
    theirs = pending(roster.other_agent)[0]
    assert execution.execute_runs(run_id=mine[1].pk, worker="w") == "completed"
    ids = [r.pk for r in (*mine, theirs)]
    assert set(AgentRun.objects.filter(pk__in=ids).values_list("status", flat=True)) == {RunStatus.COMPLETED}
    assert claims_in_order(ids) == [mine[1].pk, mine[0].pk, theirs.pk]  # nothing in flight: the oldest
    # the other runs' messages arrive afterwards and find nothing to do
    assert execution.execute_runs(run_id=theirs.pk, worker="w") == "not-claimed"


@pytest.mark.sqlite
def test_the_slot_a_run_frees_under_a_limit_goes_to_the_run_it_held(roster, sent):
    roster.org.max_concurrent_runs = 1
    roster.org.save()
    first, held = pending(roster.agent, 2)
    assert runs.claim_run(run_id=held.pk, worker="other") is not None  # the org's one slot is taken
    finish_later = AgentRun.objects.get(pk=held.pk)
    assert runs.claim_run(run_id=first.pk, worker="w") is None
    assert reason(first) == "organization at its limit (1 / 1)"
    settlement.complete_run(
        run=finish_later, lease_token=finish_later.lease_token, messages=[], tool_calls=[], worker="other"
    )
    assert execution.execute_runs(run_id=None, worker="w") == "completed"
    assert AgentRun.objects.get(pk=first.pk).status == RunStatus.COMPLETED and reason(first) == ""


@pytest.mark.sqlite
def test_a_wake_up_goes_back_for_the_messages_waiting_in_the_broker(roster, sent, monkeypatch):
    """Beat's ticks and sweeps queue with the wake-ups: a chain must not hold the slot from them."""
    monkeypatch.setattr("automation.broker.waiting_messages", lambda: 1)
    first, second = pending(roster.agent, 2)
    assert execution.execute_runs(run_id=first.pk, worker="w") == "completed"
    assert AgentRun.objects.get(pk=second.pk).status == RunStatus.PENDING


@pytest.mark.sqlite
def test_with_admission_off_a_message_runs_only_its_own_run(roster, settings, sent):
    settings.AUTOMATION_ADMISSION_ENABLED = False
    first, second = pending(roster.agent, 2)
    assert execution.execute_runs(run_id=second.pk, worker="w") == "completed"
    assert AgentRun.objects.get(pk=first.pk).status == RunStatus.PENDING


# Waiting reasons, each set and cleared at its transition ----------------------------------


@pytest.mark.sqlite
def test_not_yet_due_is_set_at_creation_and_cleared_when_the_run_is_sent(roster, sent):
    at = timezone.now() + timedelta(minutes=5)
    run = runs.run_create(
        agent=roster.agent, run_as=roster.owner, source=RunSource.MANUAL, prompt="x", not_before=at
    )
    assert reason(run) == f"not yet due (starts at {at.astimezone(ZoneInfo('UTC')):%Y-%m-%d %H:%M:%S} UTC)"
    with time_machine.travel(at + timedelta(seconds=1)):
        assert redispatch_pending_runs() == 1
    assert run.pk in sent["runs"] and reason(run) == ""


@pytest.mark.sqlite
def test_limits_are_set_when_a_claim_is_held_and_cleared_when_it_is_claimed(
    roster, sent, django_capture_on_commit_callbacks
):
    roster.agent.max_concurrent_runs = 1
    roster.agent.save()
    first, second = pending(roster.agent, 2)
    lease = runs.claim_run(run_id=first.pk, worker="w")
    assert runs.claim_run(run_id=second.pk, worker="w") is None
    assert reason(second) == "agent at its limit (1 / 1)"
    with django_capture_on_commit_callbacks(execute=True):
        finish(lease)
    assert sent["wakeups"] == 1  # the freed slot wakes a worker for the held run
    assert runs.claim_run(worker="w").run.pk == second.pk
    assert reason(second) == ""


@pytest.mark.sqlite
def test_a_message_whose_run_is_held_says_why_when_its_claim_takes_another_run(roster):
    roster.agent.max_concurrent_runs = 1
    roster.agent.save()
    runs.claim_run(run_id=pending(roster.agent)[0].pk, worker="w")
    held = pending(roster.agent)[0]
    other = pending(AgentFactory(organization=roster.org))[0]
    assert runs.claim_run(run_id=held.pk, worker="w").run.pk == other.pk
    assert reason(held) == "agent at its limit (1 / 1)"


@pytest.mark.sqlite
def test_the_sweep_marks_every_held_run_and_releases_them_when_the_limit_is_raised(roster, sent):
    roster.org.max_concurrent_runs = 1
    roster.org.save()
    runs.claim_run(run_id=pending(roster.agent)[0].pk, worker="w")
    backlog = pending(roster.agent, 3)
    assert redispatch_pending_runs() == 0
    assert {reason(r) for r in backlog} == {"organization at its limit (1 / 1)"}
    roster.org.max_concurrent_runs = 3
    roster.org.save()
    assert redispatch_pending_runs() == 2  # as many as there are free slots
    assert [reason(r) for r in backlog] == ["", "", ""]


@pytest.mark.sqlite
def test_waiting_for_a_worker_is_set_when_a_message_goes_unclaimed_and_cleared_by_the_claim(roster, sent):
    run = pending(roster.agent)[0]
    AgentRun.objects.filter(pk=run.pk).update(dispatched_at=timezone.now())
    with time_machine.travel(timezone.now() + timedelta(seconds=45)):
        assert redispatch_pending_runs() == 1
        assert reason(run).startswith("waiting for a worker (unclaimed for 4")
        assert waiting_kind(reason(run)) == WaitingKind.WORKER
        runs.claim_run(run_id=run.pk, worker="w")
    assert reason(run) == ""


@pytest.mark.sqlite
def test_cancelling_a_waiting_run_clears_its_reason(roster, sent):
    run = runs.run_create(
        agent=roster.agent,
        run_as=roster.owner,
        source=RunSource.MANUAL,
        prompt="x",
        not_before=timezone.now() + timedelta(hours=1),
    )
    assert reason(run)
    settlement.cancel_run(run_id=run.pk)
    assert reason(run) == ""


# Daily budgets ----------------------------------------------------------------------------


@pytest.mark.sqlite
def test_a_daily_run_budget_holds_work_until_the_day_turns_in_the_orgs_time_zone(roster, sent):
    roster.org.timezone = "Europe/Paris"
    roster.org.daily_run_limit = 1
    roster.org.save()
    paris = ZoneInfo("Europe/Paris")
    with time_machine.travel(datetime(2026, 12, 1, 22, 30, tzinfo=paris), tick=False):
        finish(runs.claim_run(run_id=pending(roster.agent)[0].pk, worker="w"))
        held = pending(roster.agent)[0]
        assert runs.claim_run(run_id=held.pk, worker="w") is None
        assert reason(held) == (
            "daily budget reached (organization acme: 1 / 1 runs today), "
            "resumes at 2026-12-02 00:00 Europe/Paris (2026-12-01 23:00:00 UTC)"
        )
        assert runs.claim_run(worker="w") is None  # held runs are skipped, not retried
        assert redispatch_pending_runs() == 0
    with time_machine.travel(datetime(2026, 12, 2, 0, 0, 30, tzinfo=paris), tick=False):
        assert redispatch_pending_runs() == 1
        assert reason(held) == ""
        assert runs.claim_run(run_id=held.pk, worker="w").run.pk == held.pk


@pytest.mark.sqlite
def test_a_token_budget_of_an_agent_holds_its_runs_until_an_owner_raises_it(roster, sent):
    roster.agent.daily_token_limit = 1000
    roster.agent.save()
    lease = runs.claim_run(run_id=pending(roster.agent)[0].pk, worker="w")
    AgentRun.objects.filter(pk=lease.run.pk).update(input_tokens=700, output_tokens=400)
    finish(lease)
    held, other_agent_run = pending(roster.agent)[0], pending(AgentFactory(organization=roster.org))[0]
    assert runs.claim_run(run_id=held.pk, worker="w").run.pk == other_agent_run.pk
    assert reason(held).startswith(
        f"daily budget reached (agent {roster.agent.name}: 1100 / 1000 tokens today)"
    )
    roster.agent.daily_token_limit = 5000
    roster.agent.save()
    assert redispatch_pending_runs() == 1
    assert runs.claim_run(run_id=held.pk, worker="w").run.pk == held.pk


@pytest.mark.sqlite
def test_a_cost_budget_counts_the_runs_cost(roster, sent):
    roster.org.daily_cost_limit = Decimal("0.5")
    roster.org.save()
    lease = runs.claim_run(run_id=pending(roster.agent)[0].pk, worker="w")
    AgentRun.objects.filter(pk=lease.run.pk).update(cost=Decimal("0.75"))
    held = pending(roster.agent)[0]
    assert runs.claim_run(run_id=held.pk, worker="w") is None
    assert "cost 0.7500 / 0.5000 today" in reason(held)


@pytest.mark.sqlite
def test_max_tokens_per_run_fails_a_running_run_with_a_clear_error(roster):
    roster.agent.max_tokens_per_run = 500
    roster.agent.save()
    over, under = pending(roster.agent, 2)
    lease_over = runs.claim_run(run_id=over.pk, worker="w")
    lease_under = runs.claim_run(run_id=under.pk, worker="w")
    AgentRun.objects.filter(pk=over.pk).update(input_tokens=450, output_tokens=100)
    AgentRun.objects.filter(pk=under.pk).update(input_tokens=100, output_tokens=100)
    assert settlement.fail_runs_over_token_ceiling() == 1
    over.refresh_from_db()
    assert over.status == RunStatus.FAILED
    assert over.last_error.startswith("Token ceiling reached: the run used 550 tokens")

    # The batched heartbeat renews only running rows with their token: the agent over it stops.
    def renewable(lease):
        return AgentRun.objects.filter(
            pk=lease.run.pk, status=RunStatus.RUNNING, lease_token=lease.token
        ).exists()

    assert not renewable(lease_over) and renewable(lease_under)


def test_a_day_window_spans_a_daylight_saving_change():
    utc = ZoneInfo("UTC")
    start, tomorrow, _ = budgets.day_window("Europe/Paris", datetime(2026, 3, 29, 12, tzinfo=utc))
    assert tomorrow.astimezone(utc) - start.astimezone(utc) == timedelta(hours=23)
    assert tomorrow.astimezone(ZoneInfo("Europe/Paris")).hour == 0


@pytest.mark.sqlite
def test_a_debounced_provider_run_says_until_when_and_a_deferred_event_names_its_run(roster, sent):
    from automation.models import ProviderEvent
    from automation.services.provider_events import InboundEvent, ingest_event
    from tests.factories import ActionFactory

    action = ActionFactory(
        organization=roster.org, agent=roster.agent, run_as=roster.owner, debounce_seconds=30
    )

    def deliver(n):
        payload = {"ticket": {"id": "T-1"}, "n": n}
        event = InboundEvent(
            event_id=f"e{n}", context_type="ticket", context_key="T-1", payload=payload, content=f"event {n}"
        )
        return ingest_event(action=action, event=event)

    deliver(1)
    run = AgentRun.objects.get(action=action)
    assert (
        reason(run) == f"debounced until {run.not_before.astimezone(ZoneInfo('UTC')):%Y-%m-%d %H:%M:%S} UTC"
    )
    first = run.not_before
    with time_machine.travel(timezone.now() + timedelta(seconds=10)):
        deliver(2)  # joins the debounced run and pushes it back
    run.refresh_from_db()
    assert run.not_before > first and reason(run).endswith(f"{run.not_before:%H:%M:%S} UTC")
    with time_machine.travel(run.not_before + timedelta(seconds=1)):
        runs.claim_run(run_id=run.pk, worker="w")
        deliver(3)  # the run is active: the event waits behind it
    assert reason(run) == ""
    deferred = ProviderEvent.objects.get(event_id="e3")
    assert deferred.status == "deferred" and deferred.reason == f"deferred behind run {run.pk}"


def _walk(node: dict):
    """A plan node and the nodes below it, depth first."""
    yield node
    for child in node.get("Plans", []):
        yield from _walk(child)


def _claim_plan(preferred) -> dict:
    """The claim's read as PostgreSQL ran it (``EXPLAIN ANALYZE``): its top plan node."""
    import json

    sql, args = admission.candidate_query(
        preferred=preferred, now=timezone.now(), exclude=admission.Exclusions()
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, args)
        plan = cursor.fetchone()[0]
    return (json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]


def _count_loops(preferred) -> int:
    """How many times the claim's read counted runs in flight (its in-flight count scans)."""
    return sum(
        node.get("Actual Loops", 0)
        for node in _walk(_claim_plan(preferred))
        if node.get("Index Name") in ("agent_runs_org_status_count", "agent_runs_running_per_agent")
        or (
            node.get("Relation Name") == "agent_runs"
            and "'running'" in node.get("Filter", "") + node.get("Index Cond", "")
        )
    )


def test_a_burst_of_one_agent_is_claimed_without_counting_its_runs_in_flight(roster):
    require_postgres()
    in_flight = pending(roster.agent, 3)
    AgentRun.objects.filter(pk__in=[r.pk for r in in_flight]).update(status=RunStatus.RUNNING)
    burst = pending(roster.agent, 2)
    assert _count_loops(burst[-1].pk) == 0  # one agent offers runs, no limit: nothing decides by count
    assert runs.claim_run(run_id=burst[-1].pk, worker="w").run.pk == burst[-1].pk

    roster.agent.max_concurrent_runs = 10  # a limit: its count decides
    roster.agent.save()
    assert _count_loops(burst[0].pk) > 0
    roster.agent.max_concurrent_runs = None
    roster.agent.save()
    other = pending(roster.other_agent)[0]  # another organization offers one: the order needs counts
    assert _count_loops(burst[0].pk) > 0
    assert runs.claim_run(run_id=burst[0].pk, worker="w").run.pk == other.pk  # nothing in flight: fairer


@pytest.mark.sqlite
def test_a_run_that_ends_with_nothing_claimable_tries_no_further_claim(roster, sent):
    from django.test.utils import CaptureQueriesContext

    only = pending(roster.agent)[0]
    held_by_budget = pending(roster.other_agent)[0]
    AgentRun.objects.filter(pk=held_by_budget.pk).update(
        waiting_reason=WaitingKind.PHRASES[WaitingKind.BUDGET] + " (runs 1 / 1), resumes at 00:00 UTC"
    )
    with CaptureQueriesContext(connection) as captured:
        assert execution.execute_runs(run_id=only.pk, worker="w") == "completed"
    fair_reads = [  # the statement as text (SQLite), or the prepared one by its name (PostgreSQL)
        q for q in captured.captured_queries if any(k in q["sql"] for k in FAIR_READ_MARKS)
    ]
    assert len(fair_reads) == 1  # the message's claim; after it, nothing due outside a budget
    assert AgentRun.objects.get(pk=held_by_budget.pk).status == RunStatus.PENDING


@pytest.mark.sqlite
def test_a_run_that_ends_with_nothing_claimable_does_not_ask_the_broker(roster, sent, monkeypatch):
    """At the end of a burst every ending run would ask Redis for its queue depth: the
    database is asked first (one read of a partial index) and, with nothing claimable, the
    broker is not asked at all."""
    from automation import broker

    asked = []
    monkeypatch.setattr(broker, "waiting_messages", lambda: asked.append(1) or 0)
    only = pending(roster.agent)[0]
    assert execution.execute_runs(run_id=only.pk, worker="w") == "completed"
    assert asked == []
    other = pending(roster.other_agent)[0]  # claimable once the first run has ended
    first = pending(roster.agent)[0]
    assert execution.execute_runs(run_id=first.pk, worker="w") == "completed"
    assert asked == [1]  # work waited: whether a message waits decided the chain
    assert AgentRun.objects.get(pk=other.pk).status == RunStatus.COMPLETED


@pytest.mark.django_db(transaction=True)
def test_the_claim_reads_its_candidates_by_primary_key_after_a_drained_burst(roster):
    """A drained burst leaves an entry per claimed run in the partial indexes of pending runs
    until a vacuum, and the statistics of a quiet moment say that little is pending: the
    claim must still read its few candidates by primary key, not every pending entry ever
    written (which made each claim of a 1,000-run backlog read ~300 heap pages and ~10,000
    index entries)."""
    require_postgres()

    seed = pending(roster.agent, 1)[0].pk
    columns = ", ".join(f'"{f.column}"' for f in AgentRun._meta.concrete_fields if f.column != "id")
    clone = (
        f"INSERT INTO agent_runs (id, {columns}) SELECT gen_random_uuid(), {columns}"
        " FROM agent_runs, generate_series(1, %s) WHERE id = %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(clone, [20_000, seed])  # history, all ended, analyzed at a quiet moment
        cursor.execute("UPDATE agent_runs SET status = 'completed' WHERE id <> %s", [seed])
        cursor.execute("VACUUM ANALYZE agent_runs")
        cursor.execute(clone, [1_000, seed])  # then a burst, of which 200 are claimed
    for _ in range(200):
        runs.claim_run(run_id=None, worker="w")
    burst = list(AgentRun.objects.filter(status=RunStatus.PENDING))
    scans = [node for node in _walk(_claim_plan(burst[-1].pk)) if node.get("Alias") == "r"]
    assert scans, "the candidates' scan is in the plan"
    indexes = {node.get("Index Name") for scan in scans for node in _walk(scan)} - {None}
    assert indexes == {"agent_runs_pkey"}, indexes
    assert all(scan.get("Rows Removed by Filter", 0) <= 4 for scan in scans)
