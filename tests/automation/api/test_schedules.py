from datetime import UTC, datetime, time, timedelta

import pytest
import time_machine
from rest_framework.test import APIClient

from automation.models import AgentRun, Schedule
from automation.services import schedules
from tests.factories import AgentFactory

URL = "/api/orgs/acme/agent-run-schedules"
T0 = datetime(2030, 1, 1, 8, 30, tzinfo=UTC)


@pytest.fixture
def clock():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.fixture
def api():
    return APIClient()


def as_user(api, user):
    api.force_authenticate(user)
    return api


def body(roster, **changes):
    base = {
        "agentId": roster.agent.pk, "name": "Morning digest", "cadence": "daily", "timezone": "Europe/London",
        "instructions": "!reply digest", "timeOfDay": "09:00",
    }  # fmt: skip
    return {k: v for k, v in {**base, **changes}.items() if v is not None}


def make(roster, run_as, **fields):
    defaults = dict(
        name="Hourly", cadence="interval", interval_minutes=60, timezone="UTC", instructions="!reply x"
    )
    return schedules.schedule_create(
        organization=roster.org, agent=roster.agent, run_as=run_as, **{**defaults, **fields}
    )


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({}, ["2030-01-01T09:00:00Z", "2030-01-02T09:00:00Z", "2030-01-03T09:00:00Z"]),
        (
            {
                "cadence": "weekly",
                "weekdays": ["mon", "fri"],
                "timeOfDay": "07:30",
                "timezone": "America/New_York",
            },
            ["2030-01-04T12:30:00Z", "2030-01-07T12:30:00Z", "2030-01-11T12:30:00Z"],
        ),
        (
            {"cadence": "interval", "intervalMinutes": 90, "timeOfDay": None},
            ["2030-01-01T10:00:00Z", "2030-01-01T11:30:00Z", "2030-01-01T13:00:00Z"],
        ),
        ({"cadence": "once", "runAt": "2030-02-01T10:00:00Z", "timeOfDay": None}, ["2030-02-01T10:00:00Z"]),
        (
            {"cadence": "cron", "cronExpression": "0 9 * * 1-5", "timeOfDay": None},
            ["2030-01-01T09:00:00Z", "2030-01-02T09:00:00Z", "2030-01-03T09:00:00Z"],
        ),
    ],
)
def test_create_each_cadence_shows_the_next_run_times(roster, api, clock, changes, expected):
    response = as_user(api, roster.admin).post(URL, body(roster, **changes), format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["nextRunAt"] == expected[0]
    assert data["nextRunTimes"][: len(expected)] == expected
    assert len(data["nextRunTimes"]) == (1 if data["cadence"] == "once" else 5)
    assert data["runAsId"] == roster.admin.pk and data["enabled"] is True
    assert data["missedCount"] == 0 and data["blockedReason"] == ""
    assert data["overlapPolicy"] == "skip" and data["catchupWindowSeconds"] == 3600
    assert data["description"]
    if data["cadence"] == "cron":
        assert data["cronDescription"] == "At 09:00, Monday through Friday"
    else:
        assert data["cronDescription"] is None


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"timeOfDay": "25:00"}, "timeOfDay"),
        ({"timeOfDay": "nine"}, "timeOfDay"),
        ({"timeOfDay": None}, "timeOfDay"),
        ({"cadence": "weekly", "weekdays": []}, "weekdays"),
        ({"cadence": "weekly"}, "weekdays"),
        ({"cadence": "weekly", "weekdays": ["funday"]}, "weekdays"),
        ({"cadence": "interval", "intervalMinutes": 4}, "intervalMinutes"),
        ({"cadence": "interval", "intervalMinutes": "often"}, "intervalMinutes"),
        ({"cadence": "cron", "cronExpression": "every day at nine"}, "cronExpression"),
        ({"cadence": "cron", "cronExpression": "*/2 * * * *"}, "cronExpression"),
        ({"cadence": "once", "runAt": "2029-12-31T23:00:00Z"}, "runAt"),
        ({"cadence": "once"}, "runAt"),
        ({"cadence": "hourly"}, "cadence"),
        ({"overlapPolicy": "sometimes"}, "overlapPolicy"),
        ({"catchupWindowSeconds": 5}, "catchupWindowSeconds"),
        ({"agentId": 10**30}, "agentId"),
        ({"name": None}, "name"),
    ],
)
def test_invalid_schedules_answer_400_with_a_field_error(roster, api, clock, changes, field):
    response = as_user(api, roster.owner).post(URL, body(roster, **changes), format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json() and response.json()["detail"]
    assert not Schedule.objects.exists()


def test_run_as_must_be_a_member_and_agents_must_be_the_orgs(roster, api, clock):
    client = as_user(api, roster.owner)
    response = client.post(URL, body(roster, runAsId=roster.outsider.pk), format="json")
    assert response.status_code == 400 and "runAsId" in response.json()
    response = client.post(URL, body(roster, agentId=roster.other_agent.pk), format="json")
    assert response.status_code == 400 and "agentId" in response.json()
    response = client.post(URL, body(roster, runAsId=roster.member.pk), format="json")
    assert response.status_code == 201 and response.json()["runAsId"] == roster.member.pk


def test_a_member_may_only_schedule_as_themselves(roster, api, clock):
    client = as_user(api, roster.member)
    response = client.post(URL, body(roster, runAsId=roster.owner.pk), format="json")
    assert response.status_code == 403
    response = client.post(URL, body(roster), format="json")
    assert response.status_code == 201 and response.json()["runAsId"] == roster.member.pk


def test_members_see_and_change_only_their_own_schedules(roster, api, clock):
    mine = make(roster, roster.member, name="mine")
    theirs = make(roster, roster.member2, name="theirs")
    foreign = schedules.schedule_create(
        organization=roster.other_org, agent=roster.other_agent, run_as=roster.other_owner, name="foreign",
        cadence="interval", interval_minutes=60, timezone="UTC", instructions="x",
    )  # fmt: skip
    client = as_user(api, roster.member)
    assert [s["name"] for s in client.get(URL).json()["results"]] == ["mine"]
    assert client.get(f"{URL}/{mine.pk}").status_code == 200
    for schedule in (theirs, foreign):
        assert client.get(f"{URL}/{schedule.pk}").status_code == 404
        assert client.patch(f"{URL}/{schedule.pk}", {"name": "x"}, format="json").status_code == 404
        assert client.delete(f"{URL}/{schedule.pk}").status_code == 404
        assert client.post(f"{URL}/{schedule.pk}/run").status_code == 404
    assert client.patch(f"{URL}/{mine.pk}", {"runAsId": roster.owner.pk}, format="json").status_code == 403
    assert sorted(s["name"] for s in as_user(api, roster.admin).get(URL).json()["results"]) == [
        "mine",
        "theirs",
    ]
    assert as_user(api, roster.viewer).get(URL).status_code == 403
    assert as_user(api, roster.outsider).get(URL).status_code == 404


def test_list_filters_by_agent(roster, api, clock):
    second = AgentFactory(organization=roster.org, name="Second")
    make(roster, roster.owner, name="first agent's")
    schedules.schedule_create(
        organization=roster.org, agent=second, run_as=roster.owner, name="second agent's",
        cadence="interval", interval_minutes=60, timezone="UTC", instructions="x",
    )  # fmt: skip
    client = as_user(api, roster.owner)
    names = [s["name"] for s in client.get(URL, {"agentId": second.pk}).json()["results"]]
    assert names == ["second agent's"]
    assert client.get(URL, {"agentId": roster.other_agent.pk}).status_code == 400
    assert client.get(URL, {"agentId": "x"}).status_code == 400


def test_patch_updates_and_recomputes_the_next_run(roster, api, clock):
    schedule = make(roster, roster.owner, cadence="daily", time_of_day=time(9, 0), timezone="UTC")
    client = as_user(api, roster.owner)
    response = client.patch(
        f"{URL}/{schedule.pk}", {"timeOfDay": "07:15", "timezone": "Asia/Tokyo"}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["nextRunAt"] == "2030-01-01T22:15:00Z"
    assert response.json()["timeOfDay"] == "07:15"
    response = client.patch(
        f"{URL}/{schedule.pk}", {"intervalMinutes": 1, "cadence": "interval"}, format="json"
    )
    assert response.status_code == 400 and "intervalMinutes" in response.json()
    response = client.patch(f"{URL}/{schedule.pk}", {"enabled": False}, format="json")
    assert response.json()["enabled"] is False and response.json()["nextRunAt"] is None
    clock.move_to(T0 + timedelta(days=3))
    response = client.patch(f"{URL}/{schedule.pk}", {"enabled": True}, format="json")
    assert response.json()["nextRunAt"] == "2030-01-04T22:15:00Z"


def test_delete_disables_and_keeps_the_row_and_its_runs(roster, api, clock):
    schedule = make(roster, roster.owner)
    schedules.schedule_run_now(schedule=schedule, actor=roster.owner)
    response = as_user(api, roster.owner).delete(f"{URL}/{schedule.pk}")
    assert response.status_code == 200
    assert response.json()["enabled"] is False and response.json()["nextRunAt"] is None
    assert Schedule.objects.filter(pk=schedule.pk, enabled=False).exists()
    assert AgentRun.objects.filter(schedule=schedule).count() == 1


def test_run_now_starts_then_respects_the_overlap_policy(roster, api, clock):
    schedule = make(roster, roster.owner)
    client = as_user(api, roster.owner)
    response = client.post(f"{URL}/{schedule.pk}/run")
    assert response.status_code == 201
    run_id = response.json()["run"]["id"]
    assert (
        response.json()["run"]["source"] == "schedule" and response.json()["run"]["scheduleId"] == schedule.pk
    )
    response = client.post(f"{URL}/{schedule.pk}/run")
    assert response.status_code == 409
    assert response.json()["outcome"] == "skipped" and response.json()["activeRunId"] == run_id
    assert response.json()["schedule"]["skippedCount"] == 1
    client.patch(f"{URL}/{schedule.pk}", {"overlapPolicy": "buffer_one"}, format="json")
    response = client.post(f"{URL}/{schedule.pk}/run")
    assert response.status_code == 202 and response.json()["schedule"]["bufferedSlot"] is not None
    roster.org.automations_enabled = False
    roster.org.save()
    response = client.post(f"{URL}/{schedule.pk}/run")
    assert response.status_code == 409 and "turned off" in response.json()["detail"]


def test_runs_summary_counts_enabled_schedules_with_a_next_run_in_scope(roster, api, clock):
    make(roster, roster.owner)
    make(roster, roster.member)
    schedules.schedule_set_enabled(schedule=make(roster, roster.owner, name="off"), enabled=False)
    fired_once = make(roster, roster.owner, cadence="once", run_at=T0 + timedelta(minutes=5))
    assert as_user(api, roster.owner).get("/api/orgs/acme/agent-runs").json()["summary"]["scheduled"] == 3
    assert as_user(api, roster.member).get("/api/orgs/acme/agent-runs").json()["summary"]["scheduled"] == 1
    clock.move_to(T0 + timedelta(minutes=6))
    schedules.fire_due_schedules()
    assert Schedule.objects.get(pk=fired_once.pk).next_run_at is None
    assert as_user(api, roster.owner).get("/api/orgs/acme/agent-runs").json()["summary"]["scheduled"] == 2
