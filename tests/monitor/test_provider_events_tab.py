"""The provider-events tab: each delivery's outcome, filters, refusals; a member sees only their actions'."""

import pytest

from automation.models import ProviderEvent, RefusedDelivery
from automation.states import ProviderEventStatus
from tests.factories import ActionFactory, AgentRunFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def events_url(runs_url):
    return f"{runs_url}provider-events/"


@pytest.fixture
def deliveries(roster):
    mine = ActionFactory(agent=roster.agent, run_as=roster.member, name="Member hook")
    theirs = ActionFactory(agent=roster.agent, run_as=roster.member2, name="Member2 hook")
    blocking = AgentRunFactory(agent=roster.agent, run_as=roster.member, status="running")

    def event(action, event_id, status, **extra):
        return ProviderEvent.objects.create(
            organization=roster.org,
            action=action,
            agent=roster.agent,
            event_id=event_id,
            status=status,
            **extra,
        )

    rows = {
        "started": event(mine, "evt_started", ProviderEventStatus.STARTED, run=blocking, context_key="T-1"),
        "deferred": event(mine, "evt_deferred", ProviderEventStatus.DEFERRED, deferred_behind=blocking),
        "duplicate": event(mine, "evt_dup", ProviderEventStatus.STARTED, delivery_count=3),
        "ignored": event(
            mine, "evt_ignored", ProviderEventStatus.IGNORED, reason="No context key at /ticket/id"
        ),
        "theirs": event(theirs, "evt_theirs", ProviderEventStatus.STARTED),
    }
    RefusedDelivery.objects.create(
        organization=roster.org, action=mine, reason="signature", source_address="198.51.100.4", body_size=512
    )
    RefusedDelivery.objects.create(organization=roster.org, action=theirs, reason="timestamp", body_size=7)
    return rows | {"blocking": blocking, "mine": mine}


def test_every_outcome_is_shown_with_its_run(client, roster, deliveries, events_url):
    client.force_login(roster.owner)
    page = client.get(events_url).content.decode()
    short = str(deliveries["blocking"].pk)[:8]
    assert "Deferred behind active work behind" in page and short in page
    assert "(delivered ×3)" in page
    assert "No context key at /ticket/id" in page
    assert "evt_theirs" in page


def test_filters_narrow_the_deliveries(client, roster, deliveries, events_url):
    client.force_login(roster.owner)
    page = client.get(events_url, {"outcome": "ignored"}).content.decode()
    assert "evt_ignored" in page and "evt_started" not in page
    page = client.get(events_url, {"event_id": "evt_dup"}).content.decode()
    assert "evt_dup" in page and "evt_ignored" not in page
    page = client.get(events_url, {"context_key": "T-1"}).content.decode()
    assert "evt_started" in page and "evt_dup" not in page
    page = client.get(events_url, {"action": deliveries["mine"].pk}).content.decode()
    assert "evt_theirs" not in page and "evt_started" in page


def test_refused_deliveries_show_reason_source_and_size(client, roster, deliveries, events_url):
    client.force_login(roster.owner)
    page = client.get(events_url, {"view": "refused"}).content.decode()
    assert "198.51.100.4" in page and "512\xa0bytes" in page and 'status-failed">timestamp<' in page


def test_a_member_sees_only_deliveries_to_their_actions(client, roster, deliveries, events_url):
    client.force_login(roster.member)
    page = client.get(events_url).content.decode()
    assert "evt_started" in page and "evt_theirs" not in page
    refused = client.get(events_url, {"view": "refused"}).content.decode()
    assert "198.51.100.4" in refused and 'status-failed">timestamp<' not in refused
    # another user's action id in the filter is not a choice: reported, nothing of theirs shown
    theirs = ProviderEvent.objects.get(event_id="evt_theirs").action_id
    page = client.get(events_url, {"action": theirs}).content.decode()
    assert "evt_theirs" not in page
