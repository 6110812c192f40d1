import copy
import json

import pytest
from django.test import Client

from agentpress.agents.models import MessageRole
from automation.models import AgentRun, ProviderEvent
from automation.services import runs, settlement
from automation.states import ProviderEventStatus, RunStatus
from tests.factories import ActionFactory

from .conftest import fixture

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
CONVERSATION = "AAQkAGUwNjQ4ZjIxLTQ3Y2YtNDViMi1iZjc4LTMwZDliNjljOTk3YgAQAKz4x2k1xUhCr7n3c1dGQ4Q="


@pytest.fixture
def mailbox(roster):
    return ActionFactory(
        organization=roster.org,
        agent=roster.agent,
        run_as=roster.owner,
        provider="outlook",
        context_type="email_thread",
        context_key_pointer="",
        signing_secret=SECRET,
    )


def notify(action, body: dict):
    return Client().post(f"/hooks/actions/{action.pk}/", json.dumps(body), content_type="application/json")


def message_notification(notification_id: str, message_id: str) -> dict:
    body = copy.deepcopy(fixture("outlook_created_message.json"))
    body["value"][0]["id"] = notification_id
    body["value"][0]["resourceData"]["id"] = message_id
    return body


@pytest.mark.sqlite
def test_validation_handshake_echoes_the_token(mailbox):
    request = fixture("outlook_validation.json")
    token = request["query"]["validationToken"]
    response = Client().post(
        f"/hooks/actions/{mailbox.pk}/?validationToken={token}", "", content_type="text/plain; charset=utf-8"
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert response.content.decode() == token
    assert not ProviderEvent.objects.exists()


@pytest.mark.sqlite
def test_wrong_client_state_is_rejected_and_recorded(mailbox):
    body = fixture("outlook_created_message.json")
    body["value"][0]["clientState"] = "guessed-secret"
    response = notify(mailbox, body)
    assert response.status_code == 401
    event = ProviderEvent.objects.get()
    assert event.status == ProviderEventStatus.IGNORED and "clientState" in event.reason
    assert event.event_id.startswith("rejected:") and "clientState" not in event.payload
    assert not AgentRun.objects.exists()


@pytest.mark.sqlite
def test_notification_starts_a_run_in_its_conversation_thread(mailbox):
    response = notify(mailbox, fixture("outlook_created_message.json"))
    assert response.status_code == 202, response.content
    [result] = response.json()["results"]
    assert result["status"] == "started" and result["eventId"] == "lsgTZMr9KwAAA"
    run = AgentRun.objects.get(pk=result["runId"])
    assert (run.context_type, run.context_key, run.provider) == ("email_thread", CONVERSATION, "outlook")
    assert run.provider_context["subscriptionId"] == "7f105c7d-2dc5-4530-97cd-4e7ae6534c07"
    assert run.thread.context_key == CONVERSATION
    event_message = run.thread.messages.get(role=MessageRole.EVENT)
    assert "Subject: Refund for order 1042" in event_message.content
    assert "From: dana@example.com" in event_message.content


@pytest.mark.sqlite
def test_second_message_of_the_conversation_reuses_the_thread(mailbox):
    first = notify(mailbox, message_notification("n-1", "m-1")).json()["results"][0]
    run = AgentRun.objects.get(pk=first["runId"])
    lease = runs.claim_run(run_id=run.pk, worker="w1")
    settlement.complete_run(run=lease.run, lease_token=lease.token, messages=[], tool_calls=[], worker="w1")
    second = notify(mailbox, message_notification("n-2", "m-2")).json()["results"][0]
    assert second["status"] == "started"
    follow = AgentRun.objects.get(pk=second["runId"])
    assert follow.thread_id == run.thread_id and follow.status == RunStatus.PENDING
    assert follow.thread.messages.filter(role=MessageRole.EVENT).count() == 2


@pytest.mark.sqlite
def test_second_message_while_the_first_runs_waits_in_the_same_thread(mailbox):
    first = notify(mailbox, message_notification("n-1", "m-1")).json()["results"][0]
    second = notify(mailbox, message_notification("n-2", "m-2")).json()["results"][0]
    assert second["status"] == "deferred" and second["runId"] == first["runId"]
    assert AgentRun.objects.count() == 1


@pytest.mark.sqlite
def test_lifecycle_notification_is_recorded_and_starts_nothing(mailbox):
    response = notify(mailbox, fixture("outlook_lifecycle_reauthorization.json"))
    assert response.status_code == 202
    event = ProviderEvent.objects.get()
    assert event.status == ProviderEventStatus.IGNORED and "reauthorizationRequired" in event.reason
    assert not AgentRun.objects.exists()


@pytest.mark.sqlite
def test_not_a_notification_collection_is_400(mailbox):
    response = notify(mailbox, {"hello": "world"})
    assert response.status_code == 400 and "detail" in response.json()
