"""Webhook abuse: replays, skew, oversized and nested bodies, wrong content, slow bodies, floods."""

import json
import socket
import time

import pytest
from django.test import Client

from automation.models import AgentRun, ProviderEvent
from automation.services.runs import claim_run
from automation.services.settlement import complete_run
from automation.states import ProviderEventStatus, RunStatus

from .conftest import deliver, signed_headers

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def ticket(n: int, context: str = "T-1") -> bytes:
    return json.dumps({"type": "ticket.updated", "data": {"ticket": {"id": context, "n": n}}}).encode()


@pytest.fixture
def client():
    return Client()


@pytest.mark.sqlite
def test_a_replayed_delivery_starts_nothing_more(client, webhook_action):
    headers = signed_headers(SECRET, ticket(1), msg_id="msg_replay")
    assert deliver(client, webhook_action, ticket(1), headers).status_code == 202
    for _ in range(3):
        replay = deliver(client, webhook_action, ticket(1), headers)
        assert replay.status_code == 200 and replay.json()["status"] == "duplicate"
    assert AgentRun.objects.count() == 1
    assert ProviderEvent.objects.get().delivery_count == 4


@pytest.mark.sqlite
@pytest.mark.parametrize("skew", [-301, 301, -86400, 10**10])
def test_skewed_timestamps_are_refused(client, webhook_action, skew, monkeypatch):
    # the receiver's clock is held still: a second passing between signing and checking
    # must not carry a timestamp 301 s ahead back inside the 300 s tolerance
    now = int(time.time())
    monkeypatch.setattr("automation.providers.webhook.time.time", lambda: float(now))
    headers = signed_headers(SECRET, ticket(1), timestamp=now + skew)
    assert deliver(client, webhook_action, ticket(1), headers).status_code == 401
    assert not ProviderEvent.objects.exists() and not AgentRun.objects.exists()


@pytest.mark.sqlite
def test_deeply_nested_json_is_a_400_not_a_crash(client, webhook_action):
    body = b"[" * 200_000 + b"]" * 200_000
    response = deliver(client, webhook_action, body, signed_headers(SECRET, body))
    assert response.status_code == 400 and "nested" in response.json()["detail"]
    assert not ProviderEvent.objects.exists()


@pytest.mark.sqlite
def test_oversized_body_is_413_even_when_signed(client, webhook_action):
    body = json.dumps({"pad": "x" * (1024 * 1024)}).encode()
    assert deliver(client, webhook_action, body, signed_headers(SECRET, body)).status_code == 413
    assert not ProviderEvent.objects.exists()


@pytest.mark.sqlite
@pytest.mark.parametrize(
    "content_type, body",
    [
        ("application/x-www-form-urlencoded", b"a=1&b=2"),
        ("text/plain", b"hello"),
        ("application/octet-stream", b"\xff\xfe\x00"),
    ],
)
def test_non_json_bodies_are_refused(client, webhook_action, content_type, body):
    response = client.generic(
        "POST",
        f"/hooks/actions/{webhook_action.pk}/",
        body,
        content_type=content_type,
        headers=signed_headers(SECRET, body),
    )
    assert response.status_code == 400 and "detail" in response.json()
    assert not ProviderEvent.objects.exists()


@pytest.mark.sqlite
def test_only_post_is_accepted(client, webhook_action):
    assert client.get(f"/hooks/actions/{webhook_action.pk}/").status_code == 405


@pytest.mark.django_db(transaction=True)
def test_a_slow_body_is_read_whole_and_accepted(live_server, webhook_action):
    body = ticket(1)
    headers = signed_headers(SECRET, body, msg_id="msg_slow")
    head = f"POST /hooks/actions/{webhook_action.pk}/ HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    with socket.create_connection((live_server.thread.host, live_server.thread.port), timeout=10) as conn:
        conn.sendall(head.encode())
        for i in range(0, len(body), 8):
            conn.sendall(body[i : i + 8])
            time.sleep(0.05)
        reply = conn.makefile("rb").read().decode()
    assert reply.startswith("HTTP/1.1 202"), reply[:300]
    assert ProviderEvent.objects.get().event_id == "msg_slow"


def test_a_burst_below_the_limit_loses_nothing(client, webhook_action, settings):
    settings.AUTOMATION_WEBHOOK_RATE_LIMIT = 2000
    contexts = [f"T-{n}" for n in range(5)]
    statuses = []
    for n in range(1000):
        body = ticket(n, contexts[n % 5])
        response = deliver(client, webhook_action, body, signed_headers(SECRET, body, msg_id=f"msg_{n}"))
        statuses.append(response.status_code)
    assert set(statuses) == {202}
    assert ProviderEvent.objects.count() == 1000
    assert AgentRun.objects.filter(status=RunStatus.PENDING).count() == 5  # one active run per context
    # the first run of each context completes: everything deferred behind it starts exactly one run
    for run in list(AgentRun.objects.all()):
        lease = claim_run(run_id=run.pk, worker="t")
        complete_run(run=lease.run, lease_token=lease.token, messages=[], tool_calls=[], worker="t")
    assert AgentRun.objects.count() == 10
    by_status = dict(
        ProviderEvent.objects.values_list("status").annotate(n=__import__("django").db.models.Count("*"))
    )
    assert by_status == {ProviderEventStatus.STARTED: 5, ProviderEventStatus.COALESCED: 995}


@pytest.mark.sqlite
def test_above_the_limit_the_excess_gets_429_and_nothing_is_half_stored(
    client, webhook_action, settings, time_machine
):
    settings.AUTOMATION_WEBHOOK_RATE_LIMIT = 100
    # One fixed window for all 150 deliveries: on a slow machine they could straddle a
    # window boundary, and the next window would rightly accept the excess.
    time_machine.move_to("2026-11-28 12:00:10+00:00", tick=False)
    answers = []
    for n in range(150):
        body = ticket(n, f"T-{n}")
        answers.append(deliver(client, webhook_action, body, signed_headers(SECRET, body, msg_id=f"msg_{n}")))
    assert [a.status_code for a in answers].count(202) == 100
    refused = [a for a in answers if a.status_code == 429]
    assert len(refused) == 50
    assert all(1 <= int(a["Retry-After"]) <= 60 and "detail" in a.json() for a in refused)
    assert ProviderEvent.objects.count() == 100 == AgentRun.objects.count()
    assert set(ProviderEvent.objects.values_list("event_id", flat=True)) == {f"msg_{n}" for n in range(100)}


@pytest.mark.sqlite
def test_the_window_resets(client, webhook_action, settings, time_machine):
    settings.AUTOMATION_WEBHOOK_RATE_LIMIT = 1
    time_machine.move_to("2026-11-28 12:00:00+00:00", tick=False)
    first, second = ticket(1, "A"), ticket(2, "B")
    assert (
        deliver(
            client,
            webhook_action,
            first,
            signed_headers(SECRET, first, msg_id="a", timestamp=int(time.time())),
        ).status_code
        == 202
    )
    assert (
        deliver(
            client,
            webhook_action,
            second,
            signed_headers(SECRET, second, msg_id="b", timestamp=int(time.time())),
        ).status_code
        == 429
    )
    time_machine.move_to("2026-11-28 12:01:01+00:00", tick=False)
    assert (
        deliver(
            client,
            webhook_action,
            second,
            signed_headers(SECRET, second, msg_id="b", timestamp=int(time.time())),
        ).status_code
        == 202
    )
