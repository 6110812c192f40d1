"""Issue 13 defect 6: no schedule can break the schedule pages of its organization.

Every time and number a person enters is bounded, with a field error in the API and the
console form; a row stored before the bounds (whose times cannot be computed) shows its
error on its own row while the rest of each page works.
"""

from datetime import UTC, datetime, timedelta

import pytest
from rest_framework.test import APIClient

from automation.models import Schedule
from automation.services import schedules
from tests.factories import ScheduleFactory

pytestmark = pytest.mark.django_db

API = "/api/orgs/acme/agent-run-schedules"
TAB = "/orgs/acme/agents/monitor/automation-runs/schedules/"


def api_as(user) -> APIClient:
    api = APIClient()
    api.force_authenticate(user)
    return api


def api_body(roster, **changes) -> dict:
    base = {"agentId": roster.agent.pk, "name": "Far", "timezone": "UTC", "instructions": "!reply x"}
    return {**base, **changes}


def form_body(roster, **changes) -> dict:
    base = {
        "name": "Far", "cadence": "interval", "interval_minutes": "60", "timezone": "UTC",
        "instructions": "x", "run_as": roster.owner.pk, "enabled": "on", "catchup_window": "60",
        "overlap_policy": "skip",
    }  # fmt: skip
    return {**base, **changes}


def pages(roster) -> list[str]:
    return [
        TAB,
        f"/orgs/acme/agents/{roster.agent.pk}/capabilities/",
        "/admin/automation/schedule/",
    ]


@pytest.mark.parametrize(
    "changes",
    [
        {"cadence": "once", "runAt": "9999-12-31T23:59:00Z"},
        {"cadence": "once", "runAt": "9999-12-31T23:00:00", "timezone": "Pacific/Kiritimati"},
        {"cadence": "once", "runAt": "9999-12-31T10:00:00+14:00", "timezone": "Pacific/Kiritimati"},
        {"cadence": "interval", "intervalMinutes": 60, "runAt": "9999-12-31T23:00:00Z"},
        {
            "cadence": "interval",
            "intervalMinutes": 60,
            "runAt": "0001-01-01T00:00:00Z",
            "timezone": "Etc/GMT-14",
        },
    ],
)
def test_defect6_api_refuses_a_run_at_out_of_range_and_the_list_still_answers(roster, changes):
    api = api_as(roster.owner)
    response = api.post(API, api_body(roster, **changes), format="json")
    assert response.status_code == 400, response.content
    assert "runAt" in response.json()
    assert not Schedule.objects.exists()
    assert api.get(API).status_code == 200


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"cadence": "interval", "intervalMinutes": 2**31 - 1}, "intervalMinutes"),
        ({"cadence": "interval", "intervalMinutes": 10**30}, "intervalMinutes"),
        ({"cadence": "daily", "timeOfDay": "09:00", "catchupWindowSeconds": 10**12}, "catchupWindowSeconds"),
    ],
)
def test_defect6_api_bounds_interval_and_catchup_window(roster, changes, field):
    response = api_as(roster.owner).post(API, api_body(roster, **changes), format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not Schedule.objects.exists()


def test_defect6_console_form_refuses_an_interval_start_past_year_9999_in_etc_gmt_plus_12(client, roster):
    client.force_login(roster.owner)
    url = f"/orgs/acme/agents/{roster.agent.pk}/schedules/new/"
    response = client.post(url, form_body(roster, timezone="Etc/GMT+12", run_at="9999-12-31T23:00"))
    assert response.status_code == 200
    assert "Must be between 1970-01-01 and 3000-01-01 (UTC)." in response.content.decode()
    assert not Schedule.objects.exists()
    for page in pages(roster):
        assert client.get(page).status_code == 200, page


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"interval_minutes": "99999999999999"}, "Ensure this value is less than or equal to 527040."),
        ({"interval_minutes": str(10**30)}, "Ensure this value is less than or equal to 527040."),
        ({"catchup_window": "99999999999999999"}, "Ensure this value is less than or equal to 525600."),
        (
            {"cadence": "once", "run_at": "9999-12-31T23:00", "timezone": "Pacific/Kiritimati"},
            "Must be between",
        ),
    ],
)
def test_defect6_console_form_bounds_numbers_with_field_errors(client, roster, changes, message):
    client.force_login(roster.owner)
    url = f"/orgs/acme/agents/{roster.agent.pk}/schedules/new/"
    for extra in ({}, {"preview": "1"}):
        response = client.post(url, form_body(roster, **changes, **extra))
        assert response.status_code == 200
        assert message in response.content.decode()
    preview = client.get(
        f"/orgs/acme/agents/{roster.agent.pk}/schedules/preview/", form_body(roster, **changes)
    )
    assert preview.status_code == 200 and message in preview.content.decode()
    assert not Schedule.objects.exists()


def test_defect6_every_schedule_page_survives_a_row_whose_times_cannot_be_computed(client, roster):
    """Rows stored before the bounds: each shows its error; the good row and the pages work."""
    good = schedules.schedule_create(
        organization=roster.org, agent=roster.agent, run_as=roster.owner, name="Good hourly",
        cadence="interval", interval_minutes=60, timezone="UTC", instructions="!reply x",
    )  # fmt: skip
    once = ScheduleFactory(agent=roster.agent, run_as=roster.owner, name="Broken once")
    interval = ScheduleFactory(agent=roster.agent, run_as=roster.owner, name="Broken interval")
    far = datetime(9999, 12, 31, 20, tzinfo=UTC)
    Schedule.objects.filter(pk=once.pk).update(
        cadence="once", interval_minutes=None, run_at=far, timezone="Pacific/Kiritimati", next_run_at=far
    )
    Schedule.objects.filter(pk=interval.pk).update(
        interval_minutes=500_000, run_at=far, next_run_at=far - timedelta(hours=1)
    )
    client.force_login(roster.owner)
    for page in pages(roster):
        response = client.get(page)
        assert response.status_code == 200, page
        assert "Good hourly" in response.content.decode()
    tab = client.get(TAB).content.decode()
    assert "Every 60 minutes (UTC)" in tab and "Broken interval" in tab
    assert tab.count("cannot be computed") == 1  # the one-off: no zone can show its moment

    listed = api_as(roster.owner).get(API)
    assert listed.status_code == 200
    rows = {row["name"]: row for row in listed.json()["results"]}
    assert rows["Good hourly"]["cadenceError"] is None and len(rows["Good hourly"]["nextRunTimes"]) == 5
    for name in ("Broken once", "Broken interval"):
        assert "cannot be computed" in rows[name]["cadenceError"]
        assert rows[name]["nextRunTimes"] == []
    assert api_as(roster.owner).get(f"{API}/{once.pk}").status_code == 200

    for broken in (once, interval):
        edit = client.get(f"/orgs/acme/agents/{roster.agent.pk}/schedules/{broken.pk}/edit/")
        assert edit.status_code == 200
        assert client.get(f"/admin/automation/schedule/{broken.pk}/change/").status_code == 200
    # The edit form is the way out: a moment in range repairs the row.
    fixed = client.post(
        f"/orgs/acme/agents/{roster.agent.pk}/schedules/{interval.pk}/edit/",
        form_body(roster, name="Broken interval", run_at="2030-01-01T00:00"),
    )
    assert fixed.status_code == 302
    assert Schedule.objects.get(pk=interval.pk).run_at == datetime(2030, 1, 1, tzinfo=UTC)
    assert good.pk in {row["id"] for row in api_as(roster.owner).get(API).json()["results"]}
