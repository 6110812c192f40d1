"""The Outlook hook: Graph's handshake, authentication before anything is stored or counted,
bounded batches, and clear 400s for authenticated notifications of the wrong shape."""

import copy
import json

import pytest
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from agentpress.agents.models import MessageRole
from automation import tasks
from automation.models import AgentRun, OutlookSubscription, ProviderEvent
from automation.providers import outlook as outlook_provider
from automation.services import outlook_mail, runs, settlement
from automation.states import ProviderEventStatus, RunStatus
from tests.factories import ActionFactory

from .conftest import fixture

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def mailbox(roster):
    action = ActionFactory(
        organization=roster.org,
        agent=roster.agent,
        run_as=roster.owner,
        provider="outlook",
        context_type="email_thread",
        context_key_pointer="",
        signing_secret=SECRET,
    )
    OutlookSubscription.objects.create(action=action, organization=roster.org, mailbox="support@acme.example")
    return action


@pytest.fixture
def queued(monkeypatch):
    """What the hook sent to workers, instead of a broker."""
    sent = []
    for task in (tasks.outlook_ingest_message, tasks.outlook_lifecycle):
        monkeypatch.setattr(task, "delay", lambda *args, _name=task.name: sent.append((_name, *args)))
    return sent


def notify(action, body):
    raw = body if isinstance(body, bytes) else json.dumps(body)
    return Client().post(f"/hooks/actions/{action.pk}/", raw, content_type="application/json")


def message_notification(notification_id: str, message_id: str) -> dict:
    body = copy.deepcopy(fixture("outlook_created_message.json"))
    body["value"][0]["id"] = notification_id
    body["value"][0]["resourceData"]["id"] = message_id
    return body


def forged(count: int) -> dict:
    notification = fixture("outlook_created_message.json")["value"][0]
    return {"value": [{**notification, "clientState": f"guess-{n}"} for n in range(count)]}


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
def test_a_forged_post_is_answered_once_and_stores_nothing(mailbox, queued):
    response = notify(mailbox, forged(150))
    assert response.status_code == 401 and "clientState" in response.json()["detail"]
    assert "results" not in response.json()
    assert not ProviderEvent.objects.exists() and not AgentRun.objects.exists() and queued == []


@pytest.mark.sqlite
def test_forged_posts_never_starve_genuine_notifications(mailbox, queued, settings):
    settings.AUTOMATION_WEBHOOK_RATE_LIMIT = 2
    for _ in range(5):
        assert notify(mailbox, forged(3)).status_code == 401
    response = notify(mailbox, message_notification("n-1", "m-1"))
    assert response.status_code == 202
    assert queued == [("automation.outlook_ingest_message", str(mailbox.pk), "m-1")]


@pytest.mark.sqlite
def test_forged_notifications_in_a_genuine_batch_are_dropped(mailbox, queued):
    body = message_notification("n-1", "m-1")
    body["value"].append({**body["value"][0], "clientState": "guess", "resourceData": {"id": "m-forged"}})
    response = notify(mailbox, body)
    assert response.status_code == 202 and response.json()["rejected"] == 1
    assert [item[2] for item in queued] == ["m-1"]


@pytest.mark.sqlite
def test_an_oversized_batch_is_refused_before_anything_else(mailbox, queued, settings):
    settings.AUTOMATION_OUTLOOK_MAX_BATCH = 10
    body = message_notification("n-1", "m-1")
    body["value"] = body["value"] * 11
    response = notify(mailbox, body)
    assert response.status_code == 413 and "at most 10" in response.json()["detail"]
    assert queued == [] and not ProviderEvent.objects.exists()


@pytest.mark.sqlite
@pytest.mark.parametrize(
    "field, value",
    [
        ("resourceData", "AAMkAG"),
        ("resourceData", ["AAMkAG"]),
        ("resourceData", None),
        ("resourceData.from", "dana@example.com"),
        ("resourceData.from.emailAddress", "dana@example.com"),
        ("resourceData.from.emailAddress", ["dana"]),
        ("resourceData.id", 42),
        ("resourceData.id", {"id": "x"}),
        ("subscriptionId", ["x"]),
        ("lifecycleEvent", {"kind": "missed"}),
        ("lifecycleEvent", "somethingElse"),
    ],
)
def test_an_authenticated_notification_of_the_wrong_shape_is_a_clear_400(mailbox, queued, field, value):
    body = message_notification("n-1", "m-1")
    node = body["value"][0]
    *parents, leaf = field.split(".")
    for name in parents:
        node = node[name]
    node[leaf] = value
    response = notify(mailbox, body)
    assert response.status_code == 400, response.content
    assert response.json()["detail"].startswith("Not a Microsoft Graph change notification")
    assert queued == [] and not ProviderEvent.objects.exists()


@pytest.mark.sqlite
def test_a_notification_is_queued_and_the_subscription_marked(mailbox, queued):
    response = notify(mailbox, fixture("outlook_created_message.json"))
    assert response.status_code == 202, response.content
    message_id = fixture("outlook_created_message.json")["value"][0]["resourceData"]["id"]
    assert response.json()["results"] == [{"messageId": message_id, "status": "queued"}]
    assert queued == [("automation.outlook_ingest_message", str(mailbox.pk), message_id)]
    assert OutlookSubscription.objects.get(action=mailbox).last_notification_at is not None


@pytest.mark.sqlite
def test_lifecycle_notification_is_recorded_and_handed_to_the_subscription(mailbox, queued):
    response = notify(mailbox, fixture("outlook_lifecycle_reauthorization.json"))
    assert response.status_code == 202
    event = ProviderEvent.objects.get()
    assert event.status == ProviderEventStatus.IGNORED and "reauthorizationRequired" in event.reason
    assert "clientState" not in event.payload
    assert queued == [
        (
            "automation.outlook_lifecycle",
            str(mailbox.pk),
            "reauthorizationRequired",
            "7f105c7d-2dc5-4530-97cd-4e7ae6534c07",
        )
    ]
    assert not AgentRun.objects.exists()


@pytest.mark.sqlite
def test_when_the_queue_is_down_graph_is_asked_to_deliver_again(mailbox, monkeypatch):
    def broker_down(*args):
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379")

    monkeypatch.setattr(tasks.outlook_ingest_message, "delay", broker_down)
    response = notify(mailbox, fixture("outlook_created_message.json"))
    assert response.status_code == 503 and response["Retry-After"]
    assert "6379" not in response.content.decode()


@pytest.mark.sqlite
def test_not_a_notification_collection_is_400(mailbox):
    response = notify(mailbox, {"hello": "world"})
    assert response.status_code == 400 and "detail" in response.json()


def test_second_message_of_the_conversation_reuses_the_thread(mailbox, graph_stub, monkeypatch):
    monkeypatch.setattr(runs, "dispatch_run", lambda *, run_id, **_: True)
    first_id = graph_stub.add_message(subject="Refund", conversation="conv-7")
    second_id = graph_stub.add_message(subject="Re: Refund", conversation="conv-7")
    outlook_mail.message_notified(action_id=mailbox.pk, message_id=first_id)
    run = AgentRun.objects.get()
    lease = runs.claim_run(run_id=run.pk, worker="w1")
    settlement.complete_run(run=lease.run, lease_token=lease.token, messages=[], tool_calls=[], worker="w1")
    assert outlook_mail.message_notified(action_id=mailbox.pk, message_id=second_id) == "started"
    follow = AgentRun.objects.exclude(pk=run.pk).get()
    assert follow.thread_id == run.thread_id and follow.status == RunStatus.PENDING
    assert follow.thread.messages.filter(role=MessageRole.EVENT).count() == 2


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
hostile_notification = st.fixed_dictionaries(
    {"clientState": st.just(SECRET)},
    optional={
        "subscriptionId": json_values,
        "lifecycleEvent": json_values | st.sampled_from(outlook_provider.LIFECYCLE_EVENTS),
        "resourceData": json_values
        | st.fixed_dictionaries({}, optional={"id": json_values | st.text(min_size=1), "from": json_values}),
    },
)


@given(batch=st.lists(hostile_notification, min_size=1, max_size=4))
@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_authenticated_hostile_notifications_get_202_or_a_clear_400(mailbox, queued, batch):
    stored, sent = ProviderEvent.objects.count(), len(queued)
    response = notify(mailbox, {"value": batch})
    assert response.status_code in (202, 400), response.content
    if response.status_code == 400:
        assert response.json()["detail"].startswith("Not a Microsoft Graph change notification")
        assert ProviderEvent.objects.count() == stored and len(queued) == sent
