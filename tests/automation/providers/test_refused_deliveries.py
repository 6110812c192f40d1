"""Every refusal at the provider endpoint leaves one row in a bounded log, never the body."""

import json
import time
import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from automation.models import RefusedDelivery
from automation.services.refused_deliveries import prune_refused_deliveries

from .conftest import deliver, signed_headers

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BODY = json.dumps({"type": "ticket.updated", "data": {"ticket": {"id": "T-9", "secret": "hunter2"}}}).encode()

pytestmark = pytest.mark.django_db


@pytest.fixture
def client():
    return Client(REMOTE_ADDR="203.0.113.7")


@pytest.mark.parametrize(
    ("make_headers", "reason", "status"),
    [
        (lambda: {**signed_headers(SECRET, BODY), "webhook-signature": "v1,AAAA"}, "signature", 401),
        (lambda: signed_headers(SECRET, BODY, timestamp=int(time.time()) - 3600), "timestamp", 401),
        (lambda: {}, "signature", 401),
    ],
)
def test_a_refused_delivery_is_logged_with_reason_source_and_size(
    client, roster, webhook_action, make_headers, reason, status
):
    response = deliver(client, webhook_action, BODY, make_headers())
    assert response.status_code == status
    row = RefusedDelivery.objects.get()
    assert (row.organization, row.action, row.reason, row.status_code) == (
        roster.org,
        webhook_action,
        reason,
        status,
    )
    assert row.source_address == "203.0.113.7"
    assert row.body_size == len(BODY)
    assert "hunter2" not in json.dumps([row.detail, row.action_ref])


def test_malformed_oversized_and_unknown_action_are_logged(client, roster, webhook_action, settings):
    not_json = b"{not json"
    assert deliver(client, webhook_action, not_json, signed_headers(SECRET, not_json)).status_code == 400
    settings.AUTOMATION_WEBHOOK_MAX_BODY_BYTES = 10
    assert deliver(client, webhook_action, BODY, signed_headers(SECRET, BODY)).status_code == 413
    ghost = uuid.uuid4()
    assert client.post(f"/hooks/actions/{ghost}/", BODY, content_type="application/json").status_code == 404
    rows = {r.reason: r for r in RefusedDelivery.objects.all()}
    assert set(rows) == {"malformed", "size", "unknown_action"}
    assert rows["size"].body_size == len(BODY)
    assert rows["unknown_action"].organization is None and rows["unknown_action"].action_ref == str(ghost)


def test_an_accepted_delivery_logs_no_refusal(client, roster, webhook_action):
    assert deliver(client, webhook_action, BODY, signed_headers(SECRET, BODY)).status_code == 202
    assert not RefusedDelivery.objects.exists()


def test_the_log_is_bounded_by_age_and_count(roster, webhook_action, settings):
    settings.AUTOMATION_REFUSED_DELIVERY_MAX_PER_ORG = 3
    settings.AUTOMATION_RETENTION_BATCH_SIZE = 2
    make = lambda: RefusedDelivery.objects.create(  # noqa: E731
        organization=roster.org, action=webhook_action, reason="signature"
    )
    old = make()
    RefusedDelivery.objects.filter(pk=old.pk).update(received_at=timezone.now() - timedelta(days=8))
    rows = [make() for _ in range(5)]
    assert prune_refused_deliveries() == 3
    assert set(RefusedDelivery.objects.values_list("pk", flat=True)) == {r.pk for r in rows[-3:]}
