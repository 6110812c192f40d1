import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from automation.models import Action, OutlookSubscription, ProviderEvent
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


def test_enabling_an_outlook_action_in_the_admin_creates_its_subscription(
    roster, graph_stub, eager_tasks, django_capture_on_commit_callbacks
):
    action = ActionFactory(
        organization=roster.org, agent=roster.agent, run_as=roster.owner, provider="outlook", enabled=False
    )
    OutlookSubscription.objects.create(action=action, organization=roster.org, mailbox="support@acme.example")
    form = {
        "organization": roster.org.pk, "agent": roster.agent.pk, "name": action.name, "provider": "outlook",
        "enabled": "on", "run_as": roster.owner.pk, "context_type": "email_thread", "context_key_pointer": "",
    }  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_in(roster.owner).post(f"/admin/automation/action/{action.pk}/change/", form)
    assert response.status_code == 302
    subscription = OutlookSubscription.objects.get(action=action)
    assert subscription.status == OutlookSubscription.Status.ACTIVE
    assert list(graph_stub.subscriptions) == [subscription.graph_id]
    page = signed_in(roster.owner).get(f"/admin/automation/action/{action.pk}/change/").content.decode()
    assert "Active, expires in 70 h" in page
    with django_capture_on_commit_callbacks(execute=True):
        deleted = signed_in(roster.owner).post(
            f"/admin/automation/action/{action.pk}/delete/", {"post": "yes"}
        )
    assert deleted.status_code == 302, deleted.content.decode()[-3000:]
    assert not Action.objects.filter(pk=action.pk).exists()
    assert graph_stub.subscriptions == {}


def test_only_operators_choose_the_mailbox(roster, graph_stub):
    action = ActionFactory(
        organization=roster.org, agent=roster.agent, run_as=roster.owner, provider="outlook"
    )
    subscription = OutlookSubscription.objects.create(action=action, organization=roster.org)
    url = f"/admin/automation/outlooksubscription/{subscription.pk}/change/"
    signed_in(roster.owner).post(url, {"mailbox": "ceo@acme.example", "folder": "inbox"})
    subscription.refresh_from_db()
    assert subscription.mailbox == ""  # read-only for an org owner
    refused = signed_in(roster.superuser).post(url, {"mailbox": "x/../../users/ceo", "folder": "inbox"})
    assert refused.status_code == 200 and "e-mail address or a user id" in refused.content.decode()
    signed_in(roster.superuser).post(url, {"mailbox": "support@acme.example", "folder": "inbox"})
    subscription.refresh_from_db()
    assert subscription.mailbox == "support@acme.example"


def test_creating_an_outlook_action_through_the_api_creates_its_subscription(
    roster, graph_stub, eager_tasks, django_capture_on_commit_callbacks
):
    token, _ = Token.objects.get_or_create(user=roster.owner)
    client = Client(headers={"Authorization": f"Token {token.key}"})
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/api/orgs/acme/actions",
            {"agentId": roster.agent.pk, "name": "Mailbox", "provider": "outlook"},
            content_type="application/json",
        )
    assert response.status_code == 201, response.content
    subscription = OutlookSubscription.objects.get(action_id=response.json()["id"])
    # no mailbox granted yet: nothing is created at Graph, and the row says why
    assert subscription.status == OutlookSubscription.Status.UNCONFIGURED and graph_stub.subscriptions == {}
