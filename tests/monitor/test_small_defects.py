"""The smaller console defects of issue 19, each as an operator would notice it."""

import json

import pytest

from automation.states import RunStatus
from tests.factories import MessageFactory, ScheduleFactory, ThreadFactory

pytestmark = pytest.mark.django_db


def test_favicon_is_served(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response["Location"].endswith("favicon.svg")


def test_bulk_confirm_never_offers_zero(client, roster, runs_url, make_run):
    done = make_run(status=RunStatus.COMPLETED)
    client.force_login(roster.owner)
    page = client.post(f"{runs_url}bulk/", {"action": "cancel", "run": [str(done.pk)]}).content.decode()
    assert "Yes, cancel 0" not in page and "nothing to confirm" in page


def test_event_json_keeps_its_indentation_on_the_thread_page(client, roster, make_run):
    thread = ThreadFactory(agent=roster.agent)
    make_run(thread=thread)
    body = json.dumps({"ticket": {"id": "T-1"}}, indent=2)
    MessageFactory(thread=thread, role="event", content=body)
    client.force_login(roster.owner)
    page = client.get(f"/orgs/acme/threads/{thread.pk}/").content.decode()
    assert '<pre class="message-body event-body">{\n  &quot;ticket&quot;: {\n    &quot;id&quot;' in page


def test_a_member_is_told_the_agents_schedules_are_not_theirs(client, roster):
    for _ in range(2):
        ScheduleFactory(agent=roster.agent, run_as=roster.admin)
    client.force_login(roster.member)
    page = client.get(f"/orgs/acme/agents/{roster.agent.pk}/capabilities/").content.decode()
    assert "schedules run as you." in page and "No schedules yet" not in page


def test_seed_demo_prints_the_curl_for_the_port_it_serves_on(monkeypatch):
    import importlib

    from automation.management.demo import provider_events

    monkeypatch.setenv("PORT", "8123")
    assert importlib.reload(provider_events).HOOK_BASE == "http://127.0.0.1:8123/hooks/actions"
    monkeypatch.delenv("PORT")
    importlib.reload(provider_events)
