"""The large statements of a run's path are prepared once per connection (``queries.planned``):
PostgreSQL plans them a few times per connection instead of on every call, whatever the
transactions around them do, and a new connection prepares its own."""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

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


def test_a_runs_statements_are_prepared_once_and_planned_a_few_times_per_connection(roster):
    require_postgres()
    connection.close()  # a connection of its own, which has prepared nothing yet
    with CaptureQueriesContext(connection) as captured:
        for n in range(12):
            assert manual_run(roster, n) == "completed"
    sent = [q["sql"] for q in captured.captured_queries]
    for name in HOT:  # each call sends the name and the values, not the statement
        calls = [sql for sql in sent if f"/* {name} */" in sql]
        assert len(calls) == 12, name
        assert all("EXECUTE ap_" in sql for sql in calls)
    assert not any("WITH base AS" in sql or "UPDATE agent_runs" in sql for sql in sent)
    plans = prepared()
    assert len(plans) == len(HOT)  # one statement each, prepared once
    # PostgreSQL plans each of the first five calls, then keeps one plan (or replans only
    # when that plan is worse): fewer plans than calls for the claim and the completion
    assert sum(custom for _, custom in plans.values()) < 3 * 12
    assert any(generic for generic, _ in plans.values())


def test_a_new_connection_prepares_its_own(roster):
    require_postgres()
    assert manual_run(roster, 1) == "completed"
    first = set(prepared())
    assert len(first) == len(HOT)
    connection.close()  # back to the pool; the next may be another connection, or a new one
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")  # as if it were one that never saw these statements
    queries._PREPARED_ON.pop(connection.connection, None)
    assert manual_run(roster, 2) == "completed"
    assert set(prepared()) == first


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
