import pytest
from rest_framework.test import APIClient

from automation.models import Action
from automation.services import runs, settlement
from automation.services.provider_events import InboundEvent, ingest_event
from tests.factories import ActionFactory


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    monkeypatch.setattr(runs, "dispatch_run", lambda *, run_id, **_: True)


def api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def deliver(action, n, key="T-1"):
    return ingest_event(
        action=action,
        event=InboundEvent(
            event_id=f"e{n}", context_type="ticket", context_key=key, payload={"n": n}, content=""
        ),
    )


@pytest.mark.sqlite
def test_provider_events_list_filters_and_scope(roster):
    mine = ActionFactory(organization=roster.org, agent=roster.agent, run_as=roster.member)
    theirs = ActionFactory(organization=roster.org, agent=roster.agent, run_as=roster.owner)
    deliver(mine, 1)
    deliver(mine, 2)
    deliver(theirs, 3, key="T-3")
    url = "/api/orgs/acme/provider-events"

    body = api(roster.owner).get(url).json()
    assert [e["eventId"] for e in body["results"]] == ["e3", "e2", "e1"]
    assert body["results"][1]["status"] == "deferred" and body["results"][1]["deferredBehindId"]
    assert [e["eventId"] for e in api(roster.owner).get(url, {"status": "started"}).json()["results"]] == [
        "e3",
        "e1",
    ]
    assert [e["eventId"] for e in api(roster.owner).get(url, {"contextKey": "T-3"}).json()["results"]] == [
        "e3"
    ]
    assert len(api(roster.owner).get(url, {"actionId": str(mine.pk)}).json()["results"]) == 2
    assert len(api(roster.owner).get(url, {"agentId": roster.agent.pk}).json()["results"]) == 3
    assert api(roster.owner).get(url, {"actionId": "nope"}).status_code == 400
    # a member sees the deliveries of actions that run as themselves
    assert [e["eventId"] for e in api(roster.member).get(url).json()["results"]] == ["e2", "e1"]
    assert api(roster.viewer).get(url).status_code == 403
    assert api(roster.outsider).get(url).status_code == 404


@pytest.mark.sqlite
def test_creating_an_action_shows_hook_url_and_secret_once(roster):
    client = api(roster.admin)
    created = client.post(
        "/api/orgs/acme/actions",
        {"agentId": roster.agent.pk, "name": "Tickets", "provider": "webhook", "contextType": "ticket",
         "contextKeyPointer": "/ticket/id", "debounceSeconds": 10},
        format="json",
    )  # fmt: skip
    assert created.status_code == 201, created.content
    body = created.json()
    action = Action.objects.get(pk=body["id"])
    assert body["signingSecret"] == action.signing_secret and action.signing_secret.startswith("whsec_")
    assert body["hookUrl"] == f"http://testserver/hooks/actions/{action.pk}/"
    assert action.run_as == roster.admin and action.debounce_seconds == 10
    listed = client.get("/api/orgs/acme/actions").json()["results"]
    assert listed[0]["hookUrl"] == body["hookUrl"] and "signingSecret" not in listed[0]


@pytest.mark.sqlite
def test_action_creation_checks_its_input(roster):
    client = api(roster.member)
    bad = client.post(
        "/api/orgs/acme/actions",
        {"agentId": roster.agent.pk, "name": "x", "contextKeyPointer": "ticket.id"},
        format="json",
    )
    assert bad.status_code == 400 and "contextKeyPointer" in bad.json()
    other = client.post(
        "/api/orgs/acme/actions",
        {"agentId": roster.agent.pk, "name": "x", "runAsId": roster.owner.pk},
        format="json",
    )
    assert other.status_code == 403
    outlook = client.post(
        "/api/orgs/acme/actions",
        {"agentId": roster.agent.pk, "name": "Mailbox", "provider": "outlook"},
        format="json",
    )
    assert outlook.status_code == 201 and outlook.json()["contextType"] == "email_thread"


@pytest.mark.sqlite
def test_run_detail_lists_the_events_that_started_it_or_were_coalesced_into_it(roster):
    action = ActionFactory(organization=roster.org, agent=roster.agent, run_as=roster.owner)
    first = deliver(action, 1)
    waiting = [deliver(action, n) for n in (2, 3)]
    run = first.event.run
    assert api(roster.owner).get(f"/api/orgs/acme/agent-runs/{run.pk}").json()["providerEventIds"] == [
        first.event.pk
    ]
    settlement.cancel_run(run_id=run.pk, actor=roster.owner)
    waiting[0].event.refresh_from_db()
    follow = waiting[0].event.run
    detail = api(roster.owner).get(f"/api/orgs/acme/agent-runs/{follow.pk}").json()
    assert sorted(detail["providerEventIds"]) == sorted(w.event.pk for w in waiting)
    assert "events_coalesced" in [e["kind"] for e in detail["events"]]
