"""The audit trail: who created, changed, enabled, disabled, ran, cancelled and retried what, and when."""

from datetime import UTC, datetime

import pytest
import time_machine
from rest_framework.test import APIClient

from agentpress.orgs.admin import owner_admin_site
from automation.models import AuditEntry, Schedule
from automation.services import follow_ups, runs, schedules, settlement
from automation.services.audit import audit_record
from automation.states import RunStatus
from tests.factories import AgentRunFactory, FollowUpFactory

T0 = datetime(2030, 1, 1, 8, 30, tzinfo=UTC)

pytestmark = pytest.mark.sqlite


@pytest.fixture
def clock():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def trail(target):
    return list(
        AuditEntry.objects.filter(target_type=target._meta.model_name, target_id=str(target.pk))
        .order_by("at", "id")
        .values_list("actor__username", "verb")
    )


def make_schedule(roster, **fields):
    return schedules.schedule_create(
        organization=roster.org,
        agent=roster.agent,
        run_as=roster.owner,
        actor=roster.admin,
        name="Hourly digest",
        cadence="interval",
        interval_minutes=60,
        timezone="UTC",
        instructions="!reply digest",
        **fields,
    )


def test_a_schedule_records_each_change_with_who_and_when(roster, clock):
    schedule = make_schedule(roster)
    schedules.schedule_update(schedule=schedule, actor=roster.owner, name="Daily digest", interval_minutes=90)
    schedules.schedule_set_enabled(schedule=schedule, enabled=False, actor=roster.admin)
    schedules.schedule_set_enabled(schedule=schedule, enabled=True, actor=roster.owner)
    schedules.schedule_run_now(schedule=schedule, actor=roster.owner)

    assert trail(schedule) == [
        ("admin", "created"),
        ("owner", "updated"),
        ("admin", "disabled"),
        ("owner", "enabled"),
        ("owner", "ran_now"),
    ]
    entries = AuditEntry.objects.filter(target_id=str(schedule.pk)).order_by("id")
    assert {e.at for e in entries} == {T0}
    assert {e.organization_id for e in entries} == {roster.org.pk}
    assert entries[1].detail == {"changed": ["name", "interval_minutes"]}
    started = entries[4].detail
    assert started["outcome"] == "started"
    assert started["run_id"] == str(Schedule.objects.get(pk=schedule.pk).runs.get().pk)


def test_a_refused_run_now_is_audited_with_its_outcome(roster, clock):
    schedule = make_schedule(roster, enabled=False)
    outcome = schedules.schedule_run_now(schedule=schedule, actor=roster.member)
    assert outcome.outcome == "blocked"
    entry = AuditEntry.objects.get(verb="ran_now")
    assert (entry.actor, entry.detail) == (roster.member, {"outcome": "blocked", "run_id": None})


def test_a_failed_update_leaves_no_entry(roster, clock):
    schedule = make_schedule(roster)
    with pytest.raises(Exception):  # noqa: B017 - the service's ValidationError
        schedules.schedule_update(schedule=schedule, actor=roster.owner, timezone="Mars/Olympus")
    assert trail(schedule) == [("admin", "created")]


def test_cancelling_and_retrying_a_run_are_audited(roster, clock):
    run = AgentRunFactory(agent=roster.agent, run_as=roster.member, status=RunStatus.PENDING)
    settlement.cancel_run(run_id=run.pk, actor=roster.member, reason="not needed")
    retry = runs.retry_run(run_id=run.pk, actor=roster.admin)

    assert trail(run) == [("member", "cancelled"), ("admin", "retried")]
    cancelled, retried = AuditEntry.objects.filter(target_id=str(run.pk)).order_by("id")
    assert cancelled.detail == {"reason": "not needed"}
    assert retried.detail == {"retry_run_id": str(retry.pk)}
    # the run's own timeline says the same
    assert list(run.events.filter(kind__in=["cancelled", "retried"]).values_list("kind", "detail__by")) == [
        ("cancelled", "member"),
        ("retried", "admin"),
    ]


def test_a_refused_cancel_leaves_no_entry(roster, clock):
    run = AgentRunFactory(agent=roster.agent, run_as=roster.member, status=RunStatus.COMPLETED)
    with pytest.raises(Exception):  # noqa: B017 - InvalidTransition
        settlement.cancel_run(run_id=run.pk, actor=roster.member)
    assert trail(run) == []


def test_cancelling_a_follow_up_is_audited(roster, clock):
    follow_up = FollowUpFactory(agent=roster.agent, run_as=roster.member)
    follow_ups.cancel_follow_up(follow_up_id=follow_up.pk, actor=roster.owner, reason="duplicate")
    entry = AuditEntry.objects.get(target_type="followup", target_id=str(follow_up.pk))
    assert (entry.actor, entry.verb, entry.detail, entry.at) == (
        roster.owner,
        "cancelled",
        {"reason": "duplicate"},
        T0,
    )


def test_system_changes_have_no_actor(roster, clock):
    schedule = make_schedule(roster)
    entry = audit_record(actor=None, organization=roster.org, verb="disabled", target=schedule)
    assert entry.actor is None
    assert str(entry) == f"system disabled schedule {schedule.pk}"


def test_api_calls_are_audited_under_the_caller(roster, clock):
    client = APIClient()
    client.force_authenticate(roster.member)
    body = {
        "agentId": roster.agent.pk,
        "name": "Mine",
        "cadence": "daily",
        "timeOfDay": "09:00",
        "timezone": "UTC",
        "instructions": "!reply hi",
    }
    created = client.post("/api/orgs/acme/agent-run-schedules", body, format="json")
    assert created.status_code == 201, created.content
    schedule_id = created.json()["id"]
    url = f"/api/orgs/acme/agent-run-schedules/{schedule_id}"
    assert client.patch(url, {"name": "Renamed"}, format="json").status_code == 200
    assert client.delete(url).status_code == 200
    assert client.post(f"{url}/run").status_code == 409
    assert trail(Schedule.objects.get(pk=schedule_id)) == [
        ("member", "created"),
        ("member", "updated"),
        ("member", "disabled"),
        ("member", "ran_now"),
    ]


def test_the_admin_shows_the_trail_read_only_and_scoped(roster, clock, client):
    mine = make_schedule(roster)
    theirs = schedules.schedule_create(
        organization=roster.other_org,
        agent=roster.other_agent,
        run_as=roster.other_owner,
        actor=roster.other_owner,
        name="Globex secret digest",
        cadence="interval",
        interval_minutes=60,
        timezone="UTC",
        instructions="!reply digest",
    )
    assert owner_admin_site.is_registered(AuditEntry)
    roster.owner.is_staff = True
    roster.owner.save()
    client.force_login(roster.owner)
    page = client.get("/admin/automation/auditentry/")
    assert page.status_code == 200
    text = page.content.decode()
    assert f">{mine.pk}<" in text or str(mine.pk) in text
    assert "globex-owner" not in text
    entry = AuditEntry.objects.get(target_id=str(theirs.pk))
    assert client.get(f"/admin/automation/auditentry/{entry.pk}/change/").status_code in (302, 403, 404)
    own_entry = AuditEntry.objects.get(target_id=str(mine.pk))
    detail = client.get(f"/admin/automation/auditentry/{own_entry.pk}/change/")
    assert detail.status_code == 200
    assert 'name="verb"' not in detail.content.decode()  # read-only: no inputs
    assert client.get("/admin/automation/auditentry/add/").status_code == 403
