"""The large statements of a run's path are prepared once per connection (``queries.planned``):
PostgreSQL plans them a few times per connection instead of on every call, whatever the
transactions around them do, and a new connection prepares its own."""

import re

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from automation import queries
from automation.services import execution, runs
from automation.states import RunSource
from tests.support.services import require_postgres

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def one_connection(monkeypatch):
    """A worker gives its connection back to the pool while the agent waits; here each run
    keeps this thread's connection, so that what it prepared can be read from it."""
    monkeypatch.setattr(execution, "release_connection", lambda: None)


PENDING_INDEXES = ("agent_runs_pending_due", "agent_runs_pending_per_agent")
HOT = ("admission.claim_candidate", "queries.start_run", "queries.finish_run_and_ask")


def manual_run(roster, n: int) -> str:
    run = runs.run_create(
        agent=roster.agent, run_as=roster.owner, source=RunSource.MANUAL, prompt=f"!reply {n}"
    )
    return execution.execute_runs(run_id=run.pk, worker="prepared")


def prepared() -> dict[str, tuple[int, int]]:
    """This connection's prepared statements: name → (generic plans, custom plans)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, generic_plans, custom_plans FROM pg_prepared_statements")
        return {name: (generic, custom) for name, generic, custom in cursor.fetchall()}


def executed(captured) -> dict[str, set[str]]:
    """The prepared statements each hot statement ran as: its name → the ``ap_…`` names."""
    out: dict[str, set[str]] = {name: set() for name in HOT}
    for query in captured.captured_queries:
        for name in HOT:
            if f"/* {name} */" in query["sql"]:
                out[name] |= set(re.findall(r"EXECUTE (ap_[0-9a-f]+)\(", query["sql"]))
    return out


def test_a_runs_statements_are_prepared_once_and_planned_a_few_times_per_connection(roster):
    require_postgres()
    before = prepared()
    with CaptureQueriesContext(connection) as captured:
        for n in range(12):
            assert manual_run(roster, n) == "completed"
    sent = [q["sql"] for q in captured.captured_queries]
    for name in HOT:  # each call sends the name and the values, not the statement
        calls = [sql for sql in sent if f"/* {name} */" in sql]
        assert len(calls) == 12, name
        assert all("EXECUTE ap_" in sql for sql in calls)
    assert not any("WITH base AS" in sql or "UPDATE agent_runs" in sql for sql in sent)
    after = prepared()
    for name, keys in executed(captured).items():
        (key,) = keys  # one prepared statement for each, whatever the values
        generic, custom = (a - b for a, b in zip(after[key], before.get(key, (0, 0)), strict=True))
        # PostgreSQL plans at most the first five calls, then keeps one plan for the rest
        assert custom <= 5 and generic >= 12 - 5, (name, generic, custom)


def test_a_new_connection_prepares_its_own(roster):
    require_postgres()
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")  # as if it were one that never saw these statements
    queries._PREPARED_ON.pop(connection.connection, None)
    with CaptureQueriesContext(connection) as captured:
        assert manual_run(roster, 2) == "completed"
    used = set().union(*executed(captured).values())
    assert len(used) == len(HOT)
    assert set(prepared()) == used  # prepared again, each once


def test_a_statement_prepared_in_a_transaction_that_rolls_back_stays_prepared(roster):
    require_postgres()
    sql = "SELECT count(*) FROM agent_runs WHERE agent_id = %s"
    before = set(prepared())
    with pytest.raises(RuntimeError), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(*queries.planned(sql, [roster.agent.pk], name="test.count"))
        raise RuntimeError
    (added,) = set(prepared()) - before  # the rollback left it prepared
    with connection.cursor() as cursor:  # no second PREPARE (it would fail: the name exists)
        text, params = queries.planned(sql, [roster.agent.pk], name="test.count")
        assert text.startswith(f"EXECUTE {added}(")
        cursor.execute(text, params)
        assert cursor.fetchone() == (0,)


def test_named_values_used_twice_are_one_parameter(roster):
    require_postgres()
    sql = "SELECT %(a)s::int + %(b)s::int + %(a)s::int, '100%%'"
    text, params = queries.planned(sql, {"a": 1, "b": 10}, name="test.named")
    assert text.startswith("EXECUTE ap_") and text.count("%(") == 2
    with connection.cursor() as cursor:
        cursor.execute(text, params)
        assert cursor.fetchone() == (12, "100%")


def test_off_sends_the_statement_itself(roster, settings):
    require_postgres()
    settings.AUTOMATION_PREPARED_STATEMENTS = False
    before = prepared()
    with CaptureQueriesContext(connection) as captured:
        assert manual_run(roster, 1) == "completed"
    assert not any("EXECUTE" in q["sql"] for q in captured.captured_queries)
    assert any("WITH base AS" in q["sql"] for q in captured.captured_queries)
    assert prepared() == before


def test_the_prepared_read_of_waiting_work_keeps_to_the_index_of_pending_runs(roster):
    """Once PostgreSQL keeps one plan for a prepared statement, that plan must serve any
    values: a status passed as a value would leave it no partial index of pending runs to
    use, so every run's completion (which reads this with its end) would scan the table."""
    require_postgres()
    sql, params = queries._claimable_sql(now=timezone.now(), budget_phrase="daily budget reached")
    text, params = queries.planned(sql, params, name="test.claimable")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        cursor.execute("EXPLAIN " + text.split(" /*")[0], params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    # a partial index holding only pending runs (not a scan of every run, or of an index of all)
    assert any(f"using {index} on" in plan for index in PENDING_INDEXES), plan
