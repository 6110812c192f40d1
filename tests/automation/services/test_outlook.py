"""Outlook subscriptions and mail against a local Graph (tests/support/graph_stub.py)."""

import datetime as dt
import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from agentpress.agents.models import Message, MessageRole
from automation import tasks
from automation.models import AgentRun, OutlookSubscription, ProviderEvent
from automation.providers import graph
from automation.services import outlook, outlook_mail, runs
from automation.states import ProviderEventStatus
from tests.factories import ActionFactory

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MAILBOX = "support@acme.example"
Status = OutlookSubscription.Status
FETCH = r"/users/[^/]+/messages/[^/]+$"  # one message, not the delta


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    """Runs are stored and dispatched on commit; these tests look at rows, not run workers."""
    monkeypatch.setattr(runs, "dispatch_run", lambda *, run_id, **_: True)


@pytest.fixture
def mailbox(roster):
    action = ActionFactory(
        organization=roster.org,
        agent=roster.agent,
        run_as=roster.owner,
        name="Support mailbox",
        provider="outlook",
        context_type="email_thread",
        context_key_pointer="",
        signing_secret=SECRET,
    )
    OutlookSubscription.objects.create(action=action, organization=roster.org, mailbox=MAILBOX)
    return action


@pytest.fixture
def live(mailbox, graph_stub):
    assert outlook.subscription_sync(action_id=mailbox.pk) == "created"
    return OutlookSubscription.objects.get(action=mailbox)


def post(action, *notifications):
    body = json.dumps({"value": list(notifications)})
    return Client().post(f"/hooks/actions/{action.pk}/", body, content_type="application/json")


def message_notification(subscription, message_id):
    return {
        "id": f"n-{message_id}",
        "subscriptionId": subscription.graph_id,
        "clientState": SECRET,
        "changeType": "created",
        "resource": f"Users/{MAILBOX}/Messages/{message_id}",
        "resourceData": {"@odata.type": "#Microsoft.Graph.Message", "id": message_id},
    }


def lifecycle(subscription, kind):
    return {
        "subscriptionId": subscription.graph_id,
        "lifecycleEvent": kind,
        "clientState": SECRET,
        "subscriptionExpirationDateTime": "2030-01-01T00:00:00Z",
    }


def message_events(action):
    return ProviderEvent.objects.filter(action=action, event_id__startswith="message:")


def test_enabling_creates_the_subscription_pointing_at_our_hook(mailbox, graph_stub):
    assert outlook.subscription_sync(action_id=mailbox.pk) == "created"
    created = graph_stub.subscription()
    hook = f"https://agentpress.example/hooks/actions/{mailbox.pk}/"
    assert created["notificationUrl"] == hook and created["lifecycleNotificationUrl"] == hook
    assert created["clientState"] == SECRET and created["changeType"] == "created"
    assert created["resource"] == f"users/{MAILBOX}/mailFolders('inbox')/messages"
    row = OutlookSubscription.objects.get(action=mailbox)
    assert row.status == Status.ACTIVE and row.graph_id == created["id"] and row.last_error == ""
    assert timedelta(hours=70) < row.expires_at - timezone.now() < timedelta(hours=71)
    assert row.delta_link.startswith(graph_stub.base_url)  # the baseline for a later resync


def test_disabling_deletes_it_and_enabling_again_recreates_it(live, graph_stub):
    live.action.enabled = False
    live.action.save()
    assert outlook.subscription_sync(action_id=live.action_id) == "removed"
    assert graph_stub.subscriptions == {}
    live.refresh_from_db()
    assert live.status == Status.REMOVED and live.graph_id == ""
    live.action.enabled = True
    live.action.save()
    assert outlook.subscription_sync(action_id=live.action_id) == "created"
    assert len(graph_stub.subscriptions) == 1


def test_a_rotated_secret_recreates_the_subscription_with_it(live, graph_stub):
    old_id = live.graph_id
    live.action.signing_secret = f"whsec_rotatedSecretForTheMailbox0000 {SECRET}"
    live.action.save()
    assert outlook.subscription_sync(action_id=live.action_id) == "created"
    live.refresh_from_db()
    assert list(graph_stub.subscriptions) == [live.graph_id] and live.graph_id != old_id
    assert graph_stub.subscription()["clientState"] == "whsec_rotatedSecretForTheMailbox0000"
    assert outlook.subscription_sync(action_id=live.action_id) == "resynced"  # nothing more to change


def test_without_graph_settings_the_row_says_what_to_configure(mailbox, settings):
    settings.MS_GRAPH_CLIENT_SECRET = ""
    settings.AUTOMATION_PUBLIC_BASE_URL = ""
    assert outlook.subscription_sync(action_id=mailbox.pk) == "unconfigured"
    row = OutlookSubscription.objects.get(action=mailbox)
    assert row.status == Status.UNCONFIGURED
    assert "MS_GRAPH_CLIENT_SECRET" in row.last_error and "AUTOMATION_PUBLIC_BASE_URL" in row.last_error


def test_renewal_happens_before_expiry_and_not_earlier(live, graph_stub, time_machine):
    created_at = timezone.now()
    renew_at = live.expires_at - timedelta(seconds=86400)
    time_machine.move_to(renew_at - timedelta(hours=1))
    outlook.maintain_subscriptions()
    assert graph_stub.calls("PATCH", "/subscriptions/") == []
    time_machine.move_to(renew_at + timedelta(minutes=1))
    assert outlook.maintain_subscriptions() == {"renewed": 1}
    [patch] = graph_stub.calls("PATCH", "/subscriptions/")
    live.refresh_from_db()
    assert live.last_renewed_at > created_at + timedelta(hours=40)
    assert live.expires_at - timezone.now() > timedelta(hours=70)
    assert patch.body["expirationDateTime"].startswith(live.expires_at.strftime("%Y-%m-%dT%H:%M:%S"))


def test_a_token_is_reused_until_it_expires(live, graph_stub, time_machine):
    time_machine.move_to(timezone.now())
    assert graph_stub.token_requests() == 1  # creating and the baseline delta shared one token
    outlook_mail.message_notified(action_id=live.action_id, message_id=graph_stub.add_message(subject="a"))
    assert graph_stub.token_requests() == 1
    time_machine.shift(timedelta(seconds=graph_stub.token_ttl))
    outlook_mail.message_notified(action_id=live.action_id, message_id=graph_stub.add_message(subject="b"))
    # msal asked for a new token before Graph had to refuse the old one
    assert graph_stub.token_requests() == 2
    assert all(r.headers["authorization"] != "" for r in graph_stub.calls("GET", FETCH))


def test_a_failed_renewal_is_shown_and_retried_with_backoff(live, graph_stub, time_machine):
    time_machine.move_to(live.expires_at - timedelta(hours=2))
    graph_stub.fail("PATCH", "/subscriptions/", 500)
    assert outlook.maintain_subscriptions() == {"failed": 1}
    live.refresh_from_db()
    assert live.status == Status.FAILING and live.renewal_failures == 1
    assert "Renewing the subscription failed" in live.last_error and "500" in live.last_error
    assert outlook.maintain_subscriptions() == {}  # backing off: not tried again at once
    time_machine.shift(timedelta(seconds=61))
    assert outlook.maintain_subscriptions() == {"renewed": 1}
    live.refresh_from_db()
    assert live.status == Status.ACTIVE and live.last_error == "" and live.failure_count == 0
    assert live.renewal_failures == 1  # kept for /metrics
    assert len(graph_stub.calls("PATCH", "/subscriptions/")) == 2


def test_a_long_retry_after_is_not_slept_but_scheduled(live, graph_stub, time_machine):
    time_machine.move_to(live.expires_at - timedelta(hours=2))
    graph_stub.fail("PATCH", "/subscriptions/", 429, headers={"Retry-After": "600"})
    assert outlook.maintain_subscriptions() == {"failed": 1}
    live.refresh_from_db()
    assert live.next_attempt_at >= timezone.now() + timedelta(seconds=599)
    assert "429" in live.last_error


def test_a_notification_fetches_the_message_and_writes_it_to_the_thread(live, graph_stub, eager_tasks):
    message_id = graph_stub.add_message(
        subject="Refund for order 1042",
        conversation="conv-refund",
        body="Hi, the parcel arrived damaged. I would like a refund.",
    )
    response = post(live.action, message_notification(live, message_id))
    assert response.status_code == 202, response.content
    run = AgentRun.objects.get()
    assert (run.context_type, run.context_key) == ("email_thread", "conv-refund")
    event = run.thread.messages.get(role=MessageRole.EVENT)
    assert "Subject: Refund for order 1042" in event.content
    assert "From: Dana <dana@example.com>" in event.content
    assert "the parcel arrived damaged" in event.content
    [fetch] = graph_stub.calls("GET", FETCH)
    assert fetch.headers["prefer"] == 'outlook.body-content-type="text"'
    live.refresh_from_db()
    assert live.last_notification_at is not None


def test_the_body_is_bounded(live, graph_stub, settings):
    settings.AUTOMATION_OUTLOOK_MAX_BODY_CHARS = 100
    message_id = graph_stub.add_message(subject="Long", body="x" * 5000)
    outlook_mail.message_notified(action_id=live.action_id, message_id=message_id)
    event = Message.objects.get(role=MessageRole.EVENT)
    assert "x" * 100 + "\n[… truncated]" in event.content and "x" * 101 not in event.content


def test_a_repeated_notification_fetches_and_starts_nothing_more(live, graph_stub, eager_tasks):
    message_id = graph_stub.add_message(subject="Once")
    post(live.action, message_notification(live, message_id))
    post(live.action, message_notification(live, message_id))
    assert AgentRun.objects.count() == 1 and len(graph_stub.calls("GET", FETCH)) == 1
    assert message_events(live.action).get().delivery_count == 2


def test_a_message_deleted_before_it_was_read_is_recorded(live, graph_stub):
    assert (
        outlook_mail.message_notified(action_id=live.action_id, message_id="gone=")
        == ProviderEventStatus.IGNORED
    )
    assert "deleted before it could be read" in message_events(live.action).get().reason
    assert not AgentRun.objects.exists()


def test_missed_resyncs_exactly_the_messages_that_were_not_notified(live, graph_stub, eager_tasks):
    notified = [graph_stub.add_message(subject=f"Notified {n}", conversation=f"c{n}") for n in (1, 2)]
    for message_id in notified:
        post(live.action, message_notification(live, message_id))
    silent = [graph_stub.add_message(subject=f"Silent {n}", conversation=f"c{n}") for n in (3, 4, 5)]
    fetched_before = len(graph_stub.calls("GET", FETCH))
    response = post(live.action, lifecycle(live, "missed"))
    assert response.status_code == 202
    ids = set(message_events(live.action).values_list("payload__messageId", flat=True))
    assert ids == set(notified + silent)
    assert AgentRun.objects.count() == 5  # one per conversation, none twice
    assert Message.objects.filter(role=MessageRole.EVENT).count() == 5
    # only the silent ones were fetched again; the delta came in pages
    assert len(graph_stub.calls("GET", FETCH)) - fetched_before == 3
    assert any("$skiptoken" in r.query for r in graph_stub.calls("GET", "/delta"))
    live.refresh_from_db()
    assert live.resync_count == 1 and live.last_resync_at is not None
    lifecycle_row = ProviderEvent.objects.get(event_id__startswith="lifecycle:")
    assert lifecycle_row.status == ProviderEventStatus.IGNORED and "missed" in lifecycle_row.reason


def test_reauthorization_required_renews(live, graph_stub, eager_tasks):
    before = live.expires_at
    response = post(live.action, lifecycle(live, "reauthorizationRequired"))
    assert response.status_code == 202
    assert len(graph_stub.calls("PATCH", f"/subscriptions/{live.graph_id}")) == 1
    live.refresh_from_db()
    assert live.expires_at >= before and live.status == Status.ACTIVE


def test_subscription_removed_recreates_and_resyncs(live, graph_stub, eager_tasks):
    old_id = live.graph_id
    graph_stub.subscriptions.clear()  # Graph dropped it
    arrived = graph_stub.add_message(subject="While it was gone", conversation="gap")
    response = post(live.action, lifecycle(live, "subscriptionRemoved"))
    assert response.status_code == 202
    live.refresh_from_db()
    assert live.graph_id and live.graph_id != old_id and live.status == Status.ACTIVE
    assert list(graph_stub.subscriptions) == [live.graph_id]
    assert live.resync_count == 1
    assert message_events(live.action).get().payload["messageId"] == arrived


def test_a_lifecycle_post_about_an_old_subscription_changes_nothing(live, graph_stub, eager_tasks):
    stale = {**lifecycle(live, "subscriptionRemoved"), "subscriptionId": "not-ours"}
    assert post(live.action, stale).status_code == 202
    assert len(graph_stub.calls("POST", "/subscriptions$")) == 1
    live.refresh_from_db()
    assert live.status == Status.ACTIVE


def test_renewal_of_a_subscription_graph_dropped_recreates_it(live, graph_stub, time_machine):
    graph_stub.subscriptions.clear()
    time_machine.move_to(live.expires_at - timedelta(hours=2))
    assert outlook.maintain_subscriptions() == {"created": 1}
    live.refresh_from_db()
    assert list(graph_stub.subscriptions) == [live.graph_id] and live.resync_count == 1


def test_the_periodic_pass_picks_up_mail_that_was_never_notified(live, graph_stub):
    silent = graph_stub.add_message(subject="No notification came")
    outlook.maintain_subscriptions()
    assert message_events(live.action).get().payload["messageId"] == silent


def test_mail_older_than_the_subscription_is_not_taken_for_new(mailbox, graph_stub):
    old = graph_stub.add_message(subject="Last year", received=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    outlook.subscription_sync(action_id=mailbox.pk)
    assert not message_events(mailbox).exists()
    graph_stub.touch(old)  # someone reads it: the delta returns it again
    outlook.maintain_subscriptions()
    assert not message_events(mailbox).exists()


def test_throttled_fetch_waits_for_retry_after(live, graph_stub):
    waits = []
    graph.client().sleep = waits.append
    message_id = graph_stub.add_message(subject="Busy day")
    graph_stub.fail("GET", FETCH, 429, headers={"Retry-After": "3"})
    assert outlook_mail.message_notified(action_id=live.action_id, message_id=message_id) == "started"
    assert waits == [3.0] and len(graph_stub.calls("GET", FETCH)) == 2


def test_the_notification_task_retries_after_retry_after_when_graph_asks_for_longer(
    live, graph_stub, monkeypatch
):
    message_id = graph_stub.add_message(subject="Later")
    graph_stub.fail("GET", FETCH, 503, headers={"Retry-After": "120"})
    retried = {}

    def retry(*, exc, countdown):
        retried["countdown"] = countdown
        return RuntimeError("retry")

    monkeypatch.setattr(tasks.outlook_ingest_message, "retry", retry)
    with pytest.raises(RuntimeError):
        tasks.outlook_ingest_message.run(str(live.action_id), message_id)
    assert retried["countdown"] == 120.0
    assert not message_events(live.action).exists()


def test_a_revoked_token_is_replaced_once(live, graph_stub):
    graph_stub.revoke_tokens()
    message_id = graph_stub.add_message(subject="After revocation")
    assert outlook_mail.message_notified(action_id=live.action_id, message_id=message_id) == "started"
    assert graph_stub.token_requests() == 2


def test_links_outside_graph_are_refused(live, graph_stub):
    OutlookSubscription.objects.filter(pk=live.pk).update(delta_link="https://attacker.example/v1.0/delta")
    assert (
        outlook.lifecycle_handle(action_id=live.action_id, kind="missed", subscription_id=live.graph_id)
        == "failed"
    )
    live.refresh_from_db()
    assert "outside" in live.last_error and live.status == Status.FAILING


def test_a_lifecycle_event_waits_while_another_worker_holds_the_subscription(live, graph_stub):
    OutlookSubscription.objects.filter(pk=live.pk).update(
        next_attempt_at=timezone.now() + timedelta(minutes=1)
    )
    with pytest.raises(outlook.SubscriptionBusy):
        outlook.lifecycle_handle(action_id=live.action_id, kind="missed", subscription_id=live.graph_id)
    assert len(graph_stub.calls("GET", "/delta")) == 1  # only the baseline, when it was created


def test_a_message_of_odd_shape_from_graph_is_still_written(live, graph_stub):
    message_id = graph_stub.add_message(subject="Odd")
    graph_stub.messages[message_id].update(
        {"from": {"emailAddress": "not-an-object"}, "body": ["not", "an", "object"], "subject": None}
    )
    assert outlook_mail.message_notified(action_id=live.action_id, message_id=message_id) == "started"
    event = Message.objects.get(role=MessageRole.EVENT)
    assert "Subject: (no subject)" in event.content and "From:" not in event.content
