"""Answers that schemathesis found breaking their documented schema."""

import re
from datetime import time

import pytest
import yaml
from django.conf import settings

from automation.services import schedules


@pytest.mark.sqlite
def test_time_of_day_is_documented_and_answered_as_hours_and_minutes(roster, client):
    """``format: time`` promised ``HH:MM:SS`` while the API answers (and accepts) ``"HH:MM"``."""
    schedules.schedule_create(
        organization=roster.org,
        agent=roster.agent,
        run_as=roster.owner,
        name="Daily digest",
        cadence="daily",
        time_of_day=time(22, 59),
        timezone="Europe/Berlin",
        instructions="!reply digest",
    )
    client.force_login(roster.owner)
    body = client.get("/api/orgs/acme/agent-run-schedules").json()
    documented = yaml.safe_load((settings.BASE_DIR / "docs" / "openapi.yaml").read_text())
    field = documented["components"]["schemas"]["Schedule"]["properties"]["timeOfDay"]
    assert "format" not in field
    assert body["results"][0]["timeOfDay"] == "22:59"
    assert re.fullmatch(field["pattern"], body["results"][0]["timeOfDay"])
