import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from agentpress.agents.runtime import OutMessage
from automation.models import AgentRun
from automation.services import runs, settlement
from automation.services.recovery import recover_stale_leases
from automation.states import InvalidTransition, RunSource, RunStatus
from tests.factories import AgentRunFactory
from tests.support.services import require_postgres


def kinds(run):
    return list(run.events.values_list("kind", flat=True))


@pytest.mark.sqlite
def test_create_claim_complete_writes_messages_and_timeline(roster, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        run = runs.run_create(
            agent=roster.agent, run_as=roster.owner, source=RunSource.MANUAL, prompt="hello"
        )
    assert len(callbacks) == 1  # dispatch is sent on commit
    lease = runs.claim_run(run_id=run.pk, worker="w1")
    assert lease is not None and lease.run.status == RunStatus.RUNNING and lease.run.attempt == 1
    assert runs.claim_run(run_id=run.pk, worker="w2") is None
    assert settlement.complete_run(
        run=lease.run,
        lease_token=lease.token,
        messages=[OutMessage("assistant", "hi!")],
        tool_calls=[],
        worker="w1",
    )
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED and run.completed_at is not None
    assert list(run.thread.messages.values_list("role", "content")) == [
        ("system", "hello"),
        ("assistant", "hi!"),
    ]
    assert kinds(run) == ["created", "claimed", "completed"]


@pytest.mark.sqlite
def test_late_result_after_recovery_is_discarded_and_recorded(roster):
    run = AgentRunFactory(agent=roster.agent, run_as=roster.owner)
    lease = runs.claim_run(run_id=run.pk, worker="w1")
    AgentRun.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert recover_stale_leases() == 1
    run.refresh_from_db()
    assert run.status == RunStatus.INTERRUPTED
    assert "w1" in run.last_error and "last heartbeat" in run.last_error
    assert not settlement.complete_run(
        run=lease.run,
        lease_token=lease.token,
        messages=[OutMessage("assistant", "late")],
        tool_calls=[],
        worker="w1",
    )
    run.refresh_from_db()
    assert run.status == RunStatus.INTERRUPTED
    assert not run.thread.messages.filter(content="late").exists()
    assert kinds(run)[-1] == "late_result_discarded"


@pytest.mark.sqlite
def test_a_cancelled_run_cannot_be_cancelled_again(roster):
    run = AgentRunFactory(agent=roster.agent, run_as=roster.owner)
    runs.claim_run(run_id=run.pk, worker="w1")
    settlement.cancel_run(run_id=run.pk, actor=roster.owner)
    with pytest.raises(InvalidTransition):
        settlement.cancel_run(run_id=run.pk)


def test_not_before_in_future_is_not_claimable(roster):
    run = AgentRunFactory(
        agent=roster.agent, run_as=roster.owner, not_before=timezone.now() + timedelta(minutes=5)
    )
    assert runs.claim_run(run_id=run.pk, worker="w1") is None


def test_one_active_run_per_context_is_a_database_guarantee(roster):
    kwargs = dict(
        agent=roster.agent,
        run_as=roster.owner,
        source=RunSource.MANUAL,
        prompt="x",
        context_type="ticket",
        context_key="T-1",
    )
    first = runs.run_create(**kwargs)
    with pytest.raises(runs.ContextBusy) as busy:
        runs.run_create(**kwargs)
    assert busy.value.active_run == first
    assert AgentRun.objects.filter(context_key="T-1").count() == 1


def test_retry_creates_a_linked_run(roster):
    run = AgentRunFactory(agent=roster.agent, run_as=roster.owner, status=RunStatus.FAILED, last_error="boom")
    retry = runs.retry_run(run_id=run.pk, actor=roster.owner)
    assert retry.retry_of == run and retry.status == RunStatus.PENDING and retry.thread == run.thread
    assert kinds(run)[-1] == "retried"
    with pytest.raises(InvalidTransition):
        runs.retry_run(run_id=retry.pk)


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_have_exactly_one_winner(roster):
    require_postgres()
    rounds, claimers = 200, 4
    run_ids = [AgentRunFactory(agent=roster.agent, run_as=roster.owner).pk for _ in range(rounds)]
    wins = {run_id: [] for run_id in run_ids}
    barrier = threading.Barrier(claimers)

    def claimer(n):
        try:
            for run_id in run_ids:
                barrier.wait()
                lease = runs.claim_run(run_id=run_id, worker=f"w{n}")
                if lease is not None:  # a wake-up takes the next fair run if its own is taken
                    wins[lease.run.pk].append(n)
        finally:
            connection.close()

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(claimers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(len(w) == 1 for w in wins.values()), {k: v for k, v in wins.items() if len(v) != 1}
    assert AgentRun.objects.filter(pk__in=run_ids, status=RunStatus.RUNNING, attempt=1).count() == rounds
