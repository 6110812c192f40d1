import json
import time
import uuid

import pytest
import time_machine
from django.test import Client

from agentpress.agents.models import MessageRole
from agentpress.orgs.models import Membership
from automation.models import AgentRun, ProviderEvent
from automation.providers import webhook
from automation.states import ProviderEventStatus, RunSource, RunStatus

from .conftest import deliver, fixture, signed_headers

BODY = json.dumps(fixture("webhook_ticket_updated.json")).encode()
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def client():
    return Client(enforce_csrf_checks=True)  # the hook is public: CSRF must not get in the way


def assert_nothing_stored():
    assert not AgentRun.objects.exists()
    assert not ProviderEvent.objects.exists()


@pytest.mark.sqlite
def test_standard_webhooks_reference_vector():
    vector = fixture("standard_webhooks_spec_vector.json")
    body = vector["body"].encode()
    expected = vector["headers"]["webhook-signature"]
    assert (
        webhook.sign(
            secret=vector["secret"], msg_id=vector["headers"]["webhook-id"], timestamp=1614265330, body=body
        )
        == expected
    )
    with time_machine.travel(1614265330, tick=False):
        assert webhook.verify(signing_secret=vector["secret"], headers=vector["headers"], body=body)


@pytest.mark.sqlite
def test_valid_signature_starts_a_run_in_the_ticket_thread(client, webhook_action):
    response = deliver(client, webhook_action, BODY, signed_headers(SECRET, BODY))
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "started" and body["eventId"] == "msg_2KWPBgLlAfxdpx2AI54pPJ85f1W"
    run = AgentRun.objects.get()
    assert str(run.pk) == body["runId"]
    assert (run.source, run.status, run.action, run.provider) == (
        RunSource.PROVIDER_EVENT,
        RunStatus.PENDING,
        webhook_action,
        "webhook",
    )
    assert (run.context_type, run.context_key, run.run_as) == ("ticket", "T-1042", webhook_action.run_as)
    assert run.input_snapshot["event"]["data"]["ticket"]["id"] == "T-1042"
    assert run.input_snapshot["event_ids"] == ["msg_2KWPBgLlAfxdpx2AI54pPJ85f1W"]
    event_message = run.thread.messages.get(role=MessageRole.EVENT)
    assert "Any news on my refund?" in event_message.content
    assert ProviderEvent.objects.get().status == ProviderEventStatus.STARTED


@pytest.mark.sqlite
def test_one_byte_changed_is_rejected(client, webhook_action):
    headers = signed_headers(SECRET, BODY)
    tampered = BODY.replace(b"T-1042", b"T-1043")
    assert len(tampered) == len(BODY)
    response = deliver(client, webhook_action, tampered, headers)
    assert response.status_code == 401 and "signature" in response.json()["detail"]
    assert_nothing_stored()


@pytest.mark.sqlite
@pytest.mark.parametrize("skew", [-360, 360])
def test_timestamp_six_minutes_off_either_way_is_rejected(client, webhook_action, skew):
    headers = signed_headers(SECRET, BODY, timestamp=int(time.time()) + skew)
    response = deliver(client, webhook_action, BODY, headers)
    assert response.status_code == 401 and "webhook-timestamp" in response.json()["detail"]
    assert_nothing_stored()


@pytest.mark.sqlite
@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_is_rejected(client, webhook_action, missing):
    headers = signed_headers(SECRET, BODY)
    del headers[missing]
    response = deliver(client, webhook_action, BODY, headers)
    assert response.status_code == 401 and "Missing" in response.json()["detail"]
    assert_nothing_stored()


@pytest.mark.sqlite
def test_rotated_secrets_accept_either_and_several_signatures(client, webhook_action):
    new_secret = "whsec_" + "QmFzZTY0IGVuY29kZWQgbmV3IHNlY3JldCE="
    webhook_action.signing_secret = f"{new_secret} {SECRET}"
    webhook_action.save()
    for n, secret in enumerate([SECRET, new_secret]):
        response = deliver(client, webhook_action, BODY, signed_headers(secret, BODY, msg_id=f"msg_{n}"))
        assert response.status_code in (200, 202), response.content
    headers = signed_headers("whsec_" + "b3RoZXIgc2VjcmV0IG5vdCBvdXJz", BODY, msg_id="msg_2")
    good = signed_headers(SECRET, BODY, msg_id="msg_2")["webhook-signature"]
    headers["webhook-signature"] = f"{headers['webhook-signature']} {good}"
    assert deliver(client, webhook_action, BODY, headers).status_code == 202
    webhook_action.signing_secret = new_secret
    webhook_action.save()
    response = deliver(client, webhook_action, BODY, signed_headers(SECRET, BODY, msg_id="msg_3"))
    assert response.status_code == 401


@pytest.mark.sqlite
def test_unknown_action_is_404(client, roster):
    response = client.post(f"/hooks/actions/{uuid.uuid4()}/", BODY, content_type="application/json")
    assert response.status_code == 404 and response.json() == {"detail": "No such action."}
    assert_nothing_stored()


@pytest.mark.sqlite
def test_body_over_one_mebibyte_is_413(client, webhook_action):
    big = json.dumps({"data": {"ticket": {"id": "T-1"}}, "pad": "x" * (1024 * 1024)}).encode()
    response = deliver(client, webhook_action, big, signed_headers(SECRET, big))
    assert response.status_code == 413 and "larger" in response.json()["detail"]
    assert_nothing_stored()


@pytest.mark.sqlite
def test_malformed_json_is_400(client, webhook_action):
    body = b'{"data": {"ticket": '
    response = deliver(client, webhook_action, body, signed_headers(SECRET, body))
    assert response.status_code == 400 and "JSON" in response.json()["detail"]
    assert_nothing_stored()


@pytest.mark.sqlite
def test_repeated_delivery_answers_duplicate_and_starts_nothing(client, webhook_action):
    first = deliver(client, webhook_action, BODY, signed_headers(SECRET, BODY))
    again = deliver(client, webhook_action, BODY, signed_headers(SECRET, BODY))
    assert first.status_code == 202 and again.status_code == 200
    assert again.json()["status"] == "duplicate" and again.json()["runId"] == first.json()["runId"]
    event = ProviderEvent.objects.get()
    assert event.delivery_count == 2 and event.status == ProviderEventStatus.STARTED
    assert AgentRun.objects.count() == 1


@pytest.mark.sqlite
def test_disabled_action_is_recorded_as_ignored(client, webhook_action):
    webhook_action.enabled = False
    webhook_action.save()
    response = deliver(client, webhook_action, BODY, signed_headers(SECRET, BODY))
    assert response.status_code == 202
    assert response.json()["status"] == "ignored" and "disabled" in response.json()["reason"]
    assert not AgentRun.objects.exists()


@pytest.mark.sqlite
@pytest.mark.parametrize(
    "end, reason",
    [
        (lambda m: m.delete(), "member is no longer a member of the organization."),
        (
            lambda m: Membership.objects.filter(pk=m.pk).update(permissions=[]),
            "no longer holds the actions:manage",
        ),
    ],
    ids=["removed", "lost_permission"],
)
def test_a_delivery_to_an_action_whose_run_as_membership_ended_is_ignored_with_the_reason(
    client, webhook_action, roster, end, reason
):
    """The hook reads the run-as membership with the action: it gates as the service does."""
    webhook_action.run_as = roster.member
    webhook_action.save()
    started = deliver(client, webhook_action, BODY, signed_headers(SECRET, BODY, msg_id="msg_before"))
    assert started.json()["status"] == "started"
    end(Membership.objects.get(organization=roster.org, user=roster.member))
    response = deliver(client, webhook_action, BODY, signed_headers(SECRET, BODY, msg_id="msg_after"))
    assert response.status_code == 202
    assert response.json()["status"] == "ignored" and reason in response.json()["reason"]
    assert AgentRun.objects.count() == 1
