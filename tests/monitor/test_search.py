"""The console's search box and short-id URLs: what an operator types finds the row, in scope only."""

import uuid

import pytest

from automation.models import ProviderEvent
from automation.states import ProviderEventStatus
from tests.factories import ActionFactory, AgentRunFactory, ThreadFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def search_url(roster):
    return f"/orgs/{roster.org.slug}/agents/monitor/automation-runs/search/"


@pytest.fixture
def rows(roster):
    thread = ThreadFactory(agent=roster.agent, title="Ticket T-42")
    run = AgentRunFactory(
        agent=roster.agent, run_as=roster.member, thread=thread, context_type="ticket", context_key="T-42"
    )
    action = ActionFactory(agent=roster.agent, run_as=roster.member)
    event = ProviderEvent.objects.create(
        organization=roster.org,
        action=action,
        agent=roster.agent,
        event_id="evt_abc123",
        context_type="ticket",
        context_key="T-42",
        status=ProviderEventStatus.STARTED,
        run=run,
    )
    return {"thread": thread, "run": run, "event": event}


def test_a_short_or_full_run_id_opens_the_run(client, roster, rows, search_url, runs_url):
    client.force_login(roster.owner)
    run = rows["run"]
    for q in (str(run.pk), str(run.pk)[:8], str(run.pk)[:8].upper()):
        response = client.get(search_url, {"q": q})
        assert response.status_code == 302 and response["Location"] == f"{runs_url}{run.pk}/"
    response = client.get(f"{runs_url}{str(run.pk)[:8]}/?status=pending")
    assert response["Location"] == f"{runs_url}{run.pk}/?status=pending"


def test_thread_id_context_key_and_event_id_are_found(client, roster, rows, search_url, runs_url):
    client.force_login(roster.owner)
    response = client.get(search_url, {"q": str(rows["thread"].pk)})
    assert response["Location"] == f"/orgs/acme/threads/{rows['thread'].pk}/"
    response = client.get(search_url, {"q": "T-42"})
    assert response["Location"] == f"{runs_url}{rows['run'].pk}/"
    response = client.get(search_url, {"q": "evt_abc123"})
    assert (
        response["Location"]
        == "/orgs/acme/agents/monitor/automation-runs/provider-events/?event_id=evt_abc123"
    )
    page = client.get(response["Location"]).content.decode()
    assert "evt_abc123" in page and str(rows["run"].pk)[:8] in page


def test_nothing_outside_the_scope_is_found(client, roster, rows, search_url, runs_url):
    client.force_login(roster.member2)
    for q in (str(rows["run"].pk)[:8], str(rows["thread"].pk), "T-42", "evt_abc123"):
        page = client.get(search_url, {"q": q})
        assert page.status_code == 200
        assert "Nothing in your scope matches" in page.content.decode()
    assert client.get(f"{runs_url}{str(rows['run'].pk)[:8]}/").status_code == 404
    client.force_login(roster.other_owner)
    page = client.get("/orgs/globex/agents/monitor/automation-runs/search/", {"q": "T-42"})
    assert "Nothing in your scope matches" in page.content.decode()


def test_an_ambiguous_short_id_lists_the_candidates(client, roster, search_url, runs_url):
    a = AgentRunFactory(
        agent=roster.agent, run_as=roster.member, id=uuid.UUID("abcdef01-0000-4000-8000-000000000001")
    )
    b = AgentRunFactory(
        agent=roster.agent, run_as=roster.member, id=uuid.UUID("abcdef01-0000-4000-8000-000000000002")
    )
    client.force_login(roster.owner)
    response = client.get(f"{runs_url}abcdef01/")
    assert response["Location"] == f"{search_url}?q=abcdef01"
    page = client.get(search_url, {"q": "abcdef01"}).content.decode()
    assert str(a.pk) in page and str(b.pk) in page


def test_every_console_tab_has_the_search_box(client, roster, runs_url):
    client.force_login(roster.member)
    for url in (runs_url, f"{runs_url}follow-ups/", f"{runs_url}schedules/"):
        assert 'id="console-search"' in client.get(url).content.decode()
