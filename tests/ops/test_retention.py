"""Retention deletes exactly the rows past each org's retention, in bounded batches."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client import REGISTRY

from agentpress.agents.models import Message
from agentpress.orgs.models import Organization
from automation.models import AgentRun, FollowUp, ProviderEvent, RunEvent
from automation.services import retention
from automation.states import FollowUpStatus, ProviderEventStatus, RunSource, RunStatus
from tests.factories import ActionFactory, FollowUpFactory, ThreadFactory

TERMINAL = [RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.INTERRUPTED]


def make_runs(agent, user, thread, n, *, status_cycle, age: timedelta, prompt: str) -> list:
    """``n`` runs created and finished ``age`` ago, each with one timeline event."""
    rows = AgentRun.objects.bulk_create(
        AgentRun(
            organization_id=agent.organization_id,
            agent=agent,
            run_as=user,
            thread=thread,
            source=RunSource.MANUAL,
            status=status_cycle[i % len(status_cycle)],
            input_snapshot={"prompt": prompt},
        )
        for i in range(n)
    )
    ids = [r.pk for r in rows]
    when = timezone.now() - age
    active = [s for s in status_cycle if s in (RunStatus.PENDING, RunStatus.RUNNING)]
    AgentRun.objects.filter(pk__in=ids).update(created_at=when, completed_at=None if active else when)
    RunEvent.objects.bulk_create(RunEvent(run_id=pk, kind="completed") for pk in ids)
    return ids


@pytest.mark.sqlite
def test_retention_deletes_exactly_the_old_rows_in_batches(roster, settings):
    settings.AUTOMATION_RETENTION_BATCH_SIZE = 1000
    settings.AUTOMATION_PROVIDER_PAYLOAD_RETENTION_DAYS = 30
    agent, owner = roster.agent, roster.owner
    thread = ThreadFactory(agent=agent)
    old = make_runs(agent, owner, thread, 10_000, status_cycle=TERMINAL, age=timedelta(days=91), prompt="old")
    recent = make_runs(
        agent, owner, thread, 10_000, status_cycle=TERMINAL, age=timedelta(days=89), prompt="recent"
    )
    old_active = make_runs(
        agent, owner, thread, 3, status_cycle=[RunStatus.PENDING], age=timedelta(days=200), prompt="waiting"
    )
    # A message of an expired run stays in its conversation.
    Message.objects.create(thread=thread, run_id=old[0], role="assistant", content="kept")
    # globex keeps a year: its 91-day-old run stays.
    roster.other_org.retention_days = 365
    roster.other_org.save()
    other_thread = ThreadFactory(agent=roster.other_agent)
    other = make_runs(
        roster.other_agent,
        roster.other_owner,
        other_thread,
        5,
        status_cycle=TERMINAL,
        age=timedelta(days=91),
        prompt="x",
    )

    ended_old = FollowUpFactory(agent=agent, run_as=owner, status=FollowUpStatus.COMPLETED)
    pending_old = FollowUpFactory(agent=agent, run_as=owner, status=FollowUpStatus.PENDING)
    ended_recent = FollowUpFactory(agent=agent, run_as=owner, status=FollowUpStatus.CANCELLED)
    FollowUp.objects.filter(pk__in=[ended_old.pk, pending_old.pk]).update(
        created_at=timezone.now() - timedelta(days=120), completed_at=timezone.now() - timedelta(days=100)
    )

    action = ActionFactory(agent=agent, run_as=owner)
    events = {
        name: action.events.create(
            organization=roster.org, agent=agent, event_id=name, status=status, payload={"body": name}
        )
        for name, status in [
            ("ancient", ProviderEventStatus.STARTED),
            ("month_old", ProviderEventStatus.COALESCED),
            ("deferred_old", ProviderEventStatus.DEFERRED),
            ("fresh", ProviderEventStatus.STARTED),
        ]
    }
    for name, days in [("ancient", 100), ("month_old", 40), ("deferred_old", 100)]:
        ProviderEvent.objects.filter(pk=events[name].pk).update(
            received_at=timezone.now() - timedelta(days=days)
        )

    with CaptureQueriesContext(connection) as queries:
        totals = retention.apply_retention()

    assert totals["runs"] == 10_000 and totals["run_events"] == 10_000
    assert set(AgentRun.objects.values_list("pk", flat=True)) == set(recent + old_active + other)
    assert RunEvent.objects.count() == 10_000 + 3 + 5
    assert Message.objects.get(content="kept").run_id is None

    assert set(FollowUp.objects.values_list("pk", flat=True)) == {pending_old.pk, ended_recent.pk}
    assert totals["follow_ups"] == 1

    remaining = {e.event_id: e.payload for e in ProviderEvent.objects.all()}
    assert remaining == {
        "month_old": {},
        "deferred_old": {"body": "deferred_old"},
        "fresh": {"body": "fresh"},
    }
    assert totals["provider_events"] == 1 and totals["provider_event_payloads"] == 2

    # Ten batches of a thousand ids for acme's runs (plus the empty read that ends the loop),
    # one empty read for globex: no statement ever selected more than a batch.
    batch_reads = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith('SELECT "agent_runs"."id" AS "pk" FROM "agent_runs"')
    ]
    assert len(batch_reads) == 10 + 1 + 1
    assert all(q.rstrip().endswith("LIMIT 1000") for q in batch_reads)


def test_a_second_pass_deletes_nothing(roster):
    thread = ThreadFactory(agent=roster.agent)
    make_runs(
        roster.agent, roster.owner, thread, 5, status_cycle=TERMINAL, age=timedelta(days=100), prompt="o"
    )
    assert retention.apply_retention()["runs"] == 5
    assert retention.apply_retention() == {}


def test_defect7_one_orgs_overflowing_retention_is_recorded_and_the_others_still_run(roster, caplog):
    """acme (processed first) holds a retention stored before the bound; globex is still cleaned."""
    Organization.objects.filter(pk=roster.org.pk).update(retention_days=1_000_000)
    assert roster.org.pk < roster.other_org.pk
    expired = make_runs(
        roster.other_agent, roster.other_owner, ThreadFactory(agent=roster.other_agent), 3,
        status_cycle=TERMINAL, age=timedelta(days=91), prompt="globex",
    )  # fmt: skip
    kept = make_runs(
        roster.agent, roster.owner, ThreadFactory(agent=roster.agent), 2,
        status_cycle=TERMINAL, age=timedelta(days=91), prompt="acme",
    )  # fmt: skip
    failures_before = REGISTRY.get_sample_value("automation_retention_failures_total") or 0.0

    totals = retention.apply_retention()

    assert totals["failed_organizations"] == 1 and totals["runs"] == 3
    assert not AgentRun.objects.filter(pk__in=expired).exists()
    assert AgentRun.objects.filter(pk__in=kept).count() == 2
    assert REGISTRY.get_sample_value("automation_retention_failures_total") == failures_before + 1
    failed = [r for r in caplog.records if r.getMessage().startswith("Retention failed for organization")]
    assert [r.getMessage() for r in failed] == [
        "Retention failed for organization acme (retention_days=1000000)"
    ]


@pytest.mark.parametrize(
    "days, accepted", [(0, False), (1, True), (36_500, True), (36_501, False), (1_000_000, False)]
)
def test_defect7_retention_days_is_bounded_in_the_model_and_the_admin(client, roster, days, accepted):
    org = Organization.objects.get(pk=roster.org.pk)
    org.retention_days = days
    if accepted:
        org.full_clean()
    else:
        with pytest.raises(ValidationError) as refused:
            org.full_clean()
        assert "retention_days" in refused.value.message_dict

    client.force_login(roster.owner)
    response = client.post(
        f"/admin/orgs/organization/{org.pk}/change/",
        {
            "slug": "acme", "name": "Acme", "automations_enabled": "on", "retention_days": str(days),
            "timezone": "UTC", "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0",
            "memberships-MIN_NUM_FORMS": "0", "memberships-MAX_NUM_FORMS": "1000",
        },
    )  # fmt: skip
    stored = Organization.objects.get(pk=org.pk).retention_days
    if accepted:
        assert response.status_code == 302 and stored == days
    else:
        assert response.status_code == 200 and stored == 90
        assert "Ensure this value is" in response.content.decode()
