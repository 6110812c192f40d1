"""Statement budgets of the hot path (issue 16), counted on PostgreSQL with Django's
``CaptureQueriesContext``: every round trip counts, ``BEGIN`` and ``COMMIT`` included.

The budgets are written here so that they cannot regress unnoticed. Each test runs in
autocommit (``transaction=True``), as the web and worker processes do.
"""

import json
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from automation import queries
from automation.models import AgentRun, ModelCall, ProviderEvent, Schedule
from automation.providers import webhook
from automation.services import execution, runs, schedules
from automation.states import ProviderEventStatus, RunSource, RunStatus
from tests.factories import ActionFactory
from tests.support.services import require_postgres

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def statements(fn, *args, **kwargs):
    with CaptureQueriesContext(connection) as captured:
        value = fn(*args, **kwargs)
    return value, len(captured)


def test_a_manual_run_from_create_to_completed(roster):
    require_postgres()
    run, create = statements(
        runs.run_create,
        agent=roster.agent,
        run_as=roster.owner,
        source=RunSource.MANUAL,
        prompt="!reply done",
    )
    claimed, claim = statements(runs.claim_run, run_id=runs.run_create(
        agent=roster.agent, run_as=roster.owner, source=RunSource.MANUAL, prompt="!reply other"
    ).pk, worker="measure")  # fmt: skip
    assert claimed is not None
    outcome, execute = statements(execution.execute_run, run_id=run.pk, worker="budget")
    assert outcome == "completed"
    assert AgentRun.objects.get(pk=run.pk).status == RunStatus.COMPLETED
    # thread + run + event + prompt: one statement; the broker send costs none
    assert create == 1
    # the claim (claim_run with admission): BEGIN; the lock timeout, the lock on the row and
    # the next fair run (three statements in one round trip); the update with its event,
    # returning the run with its agent, thread and organization and the thread's history;
    # COMMIT. No limit or budget applies here, so admission neither loads the agent nor counts.
    assert claim <= 4
    # besides the claim: completion with its event, messages, the model call's row and the
    # run's usage totals (one statement; the row goes with the run's end, issue 17). No limit
    # applies to the run's organization or agent, so no claim was held back by one and the
    # ended run asks nothing about waiting work (issue 15).
    assert execute - claim <= 1
    # the goal is 6 outside the agent (issue 16): create, the claim's 4, completion
    assert create + execute <= 2 + claim <= 6
    assert ModelCall.objects.filter(run_id=run.pk).count() == 1  # the scripted runtime's usage
    stored = AgentRun.objects.get(pk=run.pk)
    assert stored.input_tokens > 0 and stored.output_tokens > 0


def test_whether_work_waits_after_a_run_ends_is_read_by_the_statement_that_ends_it(roster):
    """``execute_runs`` asks, after each run, whether anything is claimable: the completion
    statement reads it, so the wake-up costs what a single execution does."""
    require_postgres()

    def manual(prompt):
        return runs.run_create(
            agent=roster.agent, run_as=roster.owner, source=RunSource.MANUAL, prompt=prompt
        )

    outcome, single = statements(execution.execute_run, run_id=manual("!reply one").pk, worker="budget")
    assert outcome == "completed"
    outcome, chained = statements(execution.execute_runs, run_id=manual("!reply two").pk, worker="budget")
    assert outcome == "completed"
    # (that the answer read is the database's, and a waiting run is then chained, is
    # test_admission's test_a_run_that_ends_with_nothing_claimable_does_not_ask_the_broker)
    assert chained == single


def test_the_claimed_run_comes_back_as_select_related_would_load_it(roster):
    """The claim returns the run, its agent, thread and organization from its UPDATE's
    RETURNING, and its thread's history; every field reads as it does through the ORM (JSON,
    decimals, time zones)."""
    require_postgres()
    roster.agent.runtime_config = {"endpoint": "stub", "nested": {"n": [1, 2]}}
    roster.agent.save()
    run = runs.run_create(
        agent=roster.agent, run_as=roster.owner, source=RunSource.MANUAL, prompt="!reply hi",
        context_type="ticket", context_key="T-1", metadata={"k": "v"},
    )  # fmt: skip
    assert execution.execute_run(run_id=run.pk, worker="w") == "completed"
    run = runs.run_create(
        agent=roster.agent, run_as=roster.owner, source=RunSource.MANUAL, prompt="!reply again",
        thread=AgentRun.objects.get(pk=run.pk).thread, context_type="ticket", context_key="T-1",
    )  # fmt: skip
    lease = runs.claim_run(run_id=run.pk, worker="w")
    stored = AgentRun.objects.select_related(*queries.CLAIM_LOADS).get(pk=run.pk)
    # the conversation so far: the first run's prompt and reply, not this run's own prompt
    history = queries.thread_history(thread_id=run.thread_id, run_id=run.pk)
    assert lease.history == history
    assert [m["content"] for m in history] == ["!reply hi", "hi"]
    for claimed, loaded in [(lease.run, stored)] + [
        (getattr(lease.run, name), getattr(stored, name)) for name in queries.CLAIM_LOADS
    ]:
        fields = type(loaded)._meta.concrete_fields
        assert {f.attname: getattr(claimed, f.attname) for f in fields} == {
            f.attname: getattr(loaded, f.attname) for f in fields
        }
        assert claimed._state.adding is False and claimed._state.db == "default"
    assert lease.run.status == RunStatus.RUNNING and lease.run.lease_token == lease.token
    assert lease.run.agent.runtime_config["nested"] == {"n": [1, 2]}


def due_schedules(roster, count):
    slot = timezone.now().replace(microsecond=0) - timedelta(seconds=30)
    Schedule.objects.all().delete()
    AgentRun.objects.all().delete()
    Schedule.objects.bulk_create(
        Schedule(
            organization=roster.org, agent=roster.agent, run_as=roster.owner, name=f"s{n}",
            cadence="interval", interval_minutes=60, run_at=slot, timezone="UTC",
            instructions="!reply tick", next_run_at=slot,
        )
        for n in range(count)
    )  # fmt: skip


def test_firing_due_slots_costs_the_same_for_ten_or_a_hundred(roster):
    require_postgres()
    cost = {}
    for count in (10, 100):
        due_schedules(roster, count)
        started, cost[count] = statements(schedules.fire_due_schedules)
        assert started == count == AgentRun.objects.filter(source=RunSource.SCHEDULE).count()
    # BEGIN, claim the batch, the run-as members still in the org (issue 13, one query per
    # batch), their active runs, thread ids, the runs (with threads, events, prompts), the
    # schedules' next slots, COMMIT
    assert cost[10] == cost[100] <= 8


def test_a_batch_of_due_slots_is_written_with_one_parameter_per_column_whatever_its_size(roster):
    """The runs (with their threads, events and prompts) and the schedules' next slots go to
    PostgreSQL as one array per column (``unnest``): the statement's text and its number of
    parameters do not grow with the batch (a ``VALUES`` row per run had 13,000 placeholders
    for 200 runs, which psycopg parsed on every call)."""
    require_postgres()
    written = {}
    for count in (10, 100):
        due_schedules(roster, count)
        sent = []

        def record(execute, sql, params, many, context, sent=sent):
            if sql.startswith(("WITH run AS (INSERT", "UPDATE")):
                sent.append((sql, len(params or ())))
            return execute(sql, params, many, context)

        with connection.execute_wrapper(record):
            assert schedules.fire_due_schedules() == count
        written[count] = sent
    assert [kind for kind, _ in written[10]] == [kind for kind, _ in written[100]]
    assert written[10] == written[100]
    assert len(written[100]) == 2 and all(n < 200 for _, n in written[100])


def test_one_webhook_delivery_and_its_repeat(roster):
    require_postgres()
    action = ActionFactory(
        organization=roster.org,
        agent=roster.agent,
        run_as=roster.owner,
        signing_secret=SECRET,
        context_type="ticket",
        context_key_pointer="/ticket/id",
    )
    client = Client()
    body = json.dumps({"ticket": {"id": "T-1"}}).encode()
    now = int(time.time())
    headers = {
        "webhook-id": "msg_budget",
        "webhook-timestamp": str(now),
        "webhook-signature": webhook.sign(secret=SECRET, msg_id="msg_budget", timestamp=now, body=body),
    }

    def deliver():
        return client.generic(
            "POST", f"/hooks/actions/{action.pk}/", body, content_type="application/json", headers=headers
        )

    first, delivery = statements(deliver)
    assert first.status_code == 202 and first.json()["status"] == "started"
    again, repeat = statements(deliver)
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert ProviderEvent.objects.get().status == ProviderEventStatus.STARTED
    assert AgentRun.objects.count() == 1
    # the action with its run-as membership (issue 13); the repeat probe; BEGIN; the event;
    # the context (active run, thread); a thread id; the run with its thread, event,
    # messages; the event's outcome; COMMIT
    assert delivery <= 9
    # the action, then one statement counts the repeat
    assert repeat == 2
