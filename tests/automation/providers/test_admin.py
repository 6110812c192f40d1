import pytest
from django.test import Client

from automation.models import Action, ProviderEvent
from automation.services.provider_events import InboundEvent, ingest_event
from tests.factories import ActionFactory


def signed_in(user):
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.sqlite
def test_owner_creates_an_action_and_sees_its_secret_once(roster):
    client = signed_in(roster.owner)
    response = client.post(
        "/admin/automation/action/add/",
        {"organization": roster.org.pk, "agent": roster.agent.pk, "name": "Tickets", "provider": "webhook",
         "enabled": "on", "run_as": roster.owner.pk, "context_type": "ticket", "context_key_pointer": "/ticket/id"},
        follow=True,
    )  # fmt: skip
    action = Action.objects.get(name="Tickets")
    assert action.signing_secret in response.content.decode()
    assert f"/hooks/actions/{action.pk}/" in response.content.decode()
    change_page = client.get(f"/admin/automation/action/{action.pk}/change/").content.decode()
    assert action.signing_secret not in change_page


@pytest.mark.sqlite
def test_owners_see_only_their_orgs_events(roster):
    action = ActionFactory(organization=roster.org, agent=roster.agent, run_as=roster.owner)
    ingest_event(
        action=action,
        event=InboundEvent(event_id="evt-admin", context_type="", context_key="", payload={}, content=""),
    )
    event = ProviderEvent.objects.get()
    assert "evt-admin" in signed_in(roster.owner).get("/admin/automation/providerevent/").content.decode()
    other = signed_in(roster.other_owner)
    assert "evt-admin" not in other.get("/admin/automation/providerevent/").content.decode()
    assert other.get(f"/admin/automation/providerevent/{event.pk}/change/").status_code in (302, 403, 404)
