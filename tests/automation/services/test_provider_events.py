import threading
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.utils import timezone

from agentpress.agents.models import MessageRole
from automation.models import AgentRun, ProviderEvent
from automation.providers.webhook import sign
from automation.services import provider_events, runs, settlement
from automation.services.provider_events import InboundEvent, drain_missed_contexts, ingest_event
from automation.states import ProviderEventStatus, RunStatus
from tests.factories import ActionFactory, AgentRunFactory
from tests.support.services import require_postgres

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    monkeypatch.setattr(runs, "dispatch_run", lambda *, run_id, **_: True)


@pytest.fixture
def action(roster):
    return ActionFactory(
        organization=roster.org, agent=roster.agent, run_as=roster.owner, signing_secret=SECRET
    )


def event(n, key="T-1") -> InboundEvent:
    payload = {"ticket": {"id": key}, "n": n}
    return InboundEvent(
        event_id=f"evt-{n}", context_type="ticket", context_key=key, payload=payload, content=f"event {n}"
    )


def finish(run, status=RunStatus.COMPLETED):
    lease = runs.claim_run(run_id=run.pk, worker="w1")
    assert lease is not None
    if status == RunStatus.COMPLETED:
        assert settlement.complete_run(
            run=lease.run, lease_token=lease.token, messages=[], tool_calls=[], worker="w1"
        )
    else:
        assert settlement.fail_run(run=lease.run, lease_token=lease.token, error="boom", worker="w1")


def statuses():
    return sorted(ProviderEvent.objects.values_list("status", flat=True))


@pytest.mark.sqlite
def test_events_on_a_busy_context_wait_and_then_start_one_run_together(action):
    first = ingest_event(action=action, event=event(1))
    assert first.outcome == ProviderEventStatus.STARTED
    run = first.event.run
    later = [ingest_event(action=action, event=event(n)) for n in (2, 3)]
    assert [r.outcome for r in later] == ["deferred", "deferred"]
    assert all(r.event.deferred_behind_id == run.pk for r in later)
    assert AgentRun.objects.count() == 1
    assert run.thread.messages.filter(role=MessageRole.EVENT).count() == 3  # nothing waits unseen

    finish(run, RunStatus.FAILED)  # any terminal status drains

    follow = AgentRun.objects.exclude(pk=run.pk).get()
    assert follow.status == RunStatus.PENDING and follow.thread_id == run.thread_id
    assert follow.previous_run_id == run.pk
    assert follow.input_snapshot["event_ids"] == ["evt-2", "evt-3"]
    assert statuses() == ["coalesced", "coalesced", "started"]
    assert set(follow.provider_events.values_list("event_id", flat=True)) == {"evt-2", "evt-3"}
    assert "deferred_events_drained" in run.events.values_list("kind", flat=True)


@pytest.mark.sqlite
def test_cancelling_the_active_run_also_drains(action, roster):
    run = ingest_event(action=action, event=event(1)).event.run
    ingest_event(action=action, event=event(2))
    settlement.cancel_run(run_id=run.pk, actor=roster.owner)
    follow = AgentRun.objects.get(status=RunStatus.PENDING)
    assert follow.input_snapshot["event_ids"] == ["evt-2"]


@pytest.mark.sqlite
def test_a_manual_run_on_the_context_also_defers_events(action, roster):
    manual = AgentRunFactory(
        agent=roster.agent, run_as=roster.owner, context_type="ticket", context_key="T-1"
    )
    result = ingest_event(action=action, event=event(1))
    assert result.outcome == "deferred" and result.event.deferred_behind == manual
    assert result.event.payload == {"ticket": {"id": "T-1"}, "n": 1}


@pytest.mark.sqlite
def test_events_without_a_context_each_start_a_run(action):
    for n in (1, 2):
        result = ingest_event(
            action=action,
            event=InboundEvent(event_id=f"e{n}", context_type="", context_key="", payload={}, content=""),
        )
        assert result.outcome == "started"
    assert AgentRun.objects.count() == 2


@pytest.mark.sqlite
@pytest.mark.parametrize(
    "switch_off, reason",
    [
        (
            lambda a: setattr(a.organization, "automations_enabled", False) or a.organization.save(),
            "organization",
        ),
        (lambda a: setattr(a, "enabled", False) or a.save(), "action is disabled"),
        (lambda a: setattr(a.agent, "enabled", False) or a.agent.save(), "agent is disabled"),
    ],
)
def test_gated_events_are_ignored_with_the_reason(action, switch_off, reason):
    switch_off(action)
    result = ingest_event(action=action, event=event(1))
    assert result.outcome == "ignored" and reason in result.event.reason
    assert not AgentRun.objects.exists()


@pytest.mark.sqlite
def test_debounced_events_join_the_run_until_the_maximum_delay(action, settings):
    settings.AUTOMATION_DEBOUNCE_MAX_DELAY_SECONDS = 100
    action.debounce_seconds = 30
    action.save()
    with time_machine.travel("2024-05-14 09:00:00Z", tick=False) as clock:
        start = timezone.now()
        run = ingest_event(action=action, event=event(1)).event.run
        assert run.not_before == start + timedelta(seconds=30)
        assert runs.claim_run(run_id=run.pk, worker="w1") is None  # not yet due
        outcomes = []
        for n in range(2, 6):  # one every 25 s: each pushes the start back, up to 100 s in all
            clock.shift(25)
            outcomes.append(ingest_event(action=action, event=event(n)).outcome)
        run.refresh_from_db()
        assert outcomes == ["coalesced", "coalesced", "coalesced", "deferred"]
        assert run.not_before == start + timedelta(seconds=100)
        assert run.input_snapshot["event_ids"] == ["evt-1", "evt-2", "evt-3", "evt-4"]
        assert "4 events arrived together" in run.input_snapshot["prompt"]
        clock.shift(1)
        finish(run)
    follow = AgentRun.objects.get(status=RunStatus.PENDING)
    assert follow.input_snapshot["event_ids"] == ["evt-5"] and follow.not_before is None


@pytest.mark.sqlite
def test_sweep_drains_events_whose_run_ended_without_draining(action, roster):
    ended = AgentRunFactory(
        agent=roster.agent,
        run_as=roster.owner,
        status=RunStatus.COMPLETED,
        context_type="ticket",
        context_key="T-9",
    )
    for n in (1, 2):
        ProviderEvent.objects.create(
            organization=roster.org, action=action, agent=roster.agent, event_id=f"lost-{n}",
            context_type="ticket", context_key="T-9", status="deferred", deferred_behind=ended,
        )  # fmt: skip
    assert drain_missed_contexts() == 1
    run = AgentRun.objects.get(status=RunStatus.PENDING)
    assert run.thread_id == ended.thread_id and run.input_snapshot["event_ids"] == ["lost-1", "lost-2"]
    assert statuses() == ["coalesced", "coalesced"]
    assert drain_missed_contexts() == 0


def concurrently(count, work):
    barrier = threading.Barrier(count)
    results, errors = [None] * count, []

    def worker(i):
        try:
            barrier.wait()
            results[i] = work(i)
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


@pytest.mark.django_db(transaction=True)
def test_the_same_event_delivered_20_times_concurrently_is_stored_and_started_once(action):
    require_postgres()
    body = b'{"ticket": {"id": "T-20"}}'
    now = int(timezone.now().timestamp())
    headers = {
        "webhook-id": "msg_same",
        "webhook-timestamp": str(now),
        "webhook-signature": sign(secret=SECRET, msg_id="msg_same", timestamp=now, body=body),
    }

    def post(_):
        response = Client().generic(
            "POST", f"/hooks/actions/{action.pk}/", body, content_type="application/json", headers=headers
        )
        return response.status_code, response.json()["status"]

    answers = concurrently(20, post)
    assert sorted(answers).count((200, "duplicate")) == 19
    assert sorted(answers).count((202, "started")) == 1
    event = ProviderEvent.objects.get()
    assert event.delivery_count == 20
    assert AgentRun.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_50_events_on_one_context_concurrently_keep_one_active_run_and_lose_nothing(action):
    require_postgres()
    outcomes = concurrently(50, lambda n: ingest_event(action=action, event=event(n, key="T-50")).outcome)
    assert sorted(outcomes).count("started") == 1 and sorted(outcomes).count("deferred") == 49
    first = AgentRun.objects.get(context_key="T-50")
    assert first.status == RunStatus.PENDING

    finish(first)

    second = AgentRun.objects.get(context_key="T-50", status=RunStatus.PENDING)
    assert len(second.input_snapshot["event_ids"]) == 49 and second.thread_id == first.thread_id
    assert AgentRun.objects.count() == 2
    assert statuses().count("coalesced") == 49 and statuses().count("started") == 1


@pytest.mark.django_db(transaction=True)
def test_the_partial_unique_index_is_the_guard(action, monkeypatch):
    """Two deliveries that both looked before either inserted (as concurrent ones do): with
    the index the second waits behind the first; without it a second conversation starts."""
    require_postgres()
    looked = provider_events.queries.context_state
    # The look before the insert sees no active run (the thread it finds is kept); the index
    # must refuse the second insert, after which the event waits behind the run that won.
    monkeypatch.setattr(provider_events.queries, "context_state", lambda **key: (None, looked(**key)[1]))
    assert [ingest_event(action=action, event=event(n)).outcome for n in (1, 2)] == ["started", "deferred"]
    assert AgentRun.objects.filter(status=RunStatus.PENDING).count() == 1
    first = AgentRun.objects.get(status=RunStatus.PENDING)
    assert ProviderEvent.objects.get(event_id="evt-2").deferred_behind_id == first.pk

    guard = next(c for c in AgentRun._meta.constraints if c.name == "agent_runs_one_active_per_context")
    with connection.schema_editor() as editor:
        editor.remove_constraint(AgentRun, guard)
    try:
        assert [ingest_event(action=action, event=event(n, key="T-2")).outcome for n in (3, 4)] == [
            "started",
            "started",
        ]
        assert AgentRun.objects.filter(status=RunStatus.PENDING, context_key="T-2").count() == 2
    finally:
        AgentRun.objects.filter(context_key="T-2").delete()
        with connection.schema_editor() as editor:
            editor.add_constraint(AgentRun, guard)
