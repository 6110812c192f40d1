"""The schedule form: the server's interval floor in the browser, and an edit page that previews."""

import pytest

from automation.services import schedules

pytestmark = pytest.mark.django_db


def test_the_interval_field_has_the_servers_minimum(client, roster, settings):
    client.force_login(roster.owner)
    page = client.get(f"/orgs/acme/agents/{roster.agent.pk}/schedules/new/").content.decode()
    assert f'name="interval_minutes" min="{settings.AUTOMATION_MIN_INTERVAL_MINUTES}"' in page


def test_the_edit_page_previews_the_existing_schedules_next_runs(client, roster):
    schedule = schedules.schedule_create(
        organization=roster.org,
        agent=roster.agent,
        run_as=roster.owner,
        name="Hourly",
        cadence="interval",
        interval_minutes=60,
        timezone="Europe/Berlin",
        instructions="!reply hourly",
    )
    client.force_login(roster.owner)
    page = client.get(f"/orgs/acme/agents/{roster.agent.pk}/schedules/{schedule.pk}/edit/").content.decode()
    assert "Fill in the cadence" not in page
    assert page.count("(Europe/Berlin; ") == 5
