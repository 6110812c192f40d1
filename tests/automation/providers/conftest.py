import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import pytest

from automation.services import runs
from tests.factories import ActionFactory

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str):
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    """Runs are stored and dispatched on commit; these tests look at rows, not workers."""
    monkeypatch.setattr(runs, "dispatch_run", lambda *, run_id, **_: True)


@pytest.fixture
def webhook_action(roster):
    return ActionFactory(
        organization=roster.org,
        agent=roster.agent,
        run_as=roster.owner,
        context_type="ticket",
        context_key_pointer="/data/ticket/id",
    )


def signed_headers(
    secret: str, body: bytes, *, msg_id="msg_2KWPBgLlAfxdpx2AI54pPJ85f1W", timestamp=None
) -> dict:
    """Headers signed as the Standard Webhooks spec says, by hand over the raw bytes (any
    bytes, so that the verifier is tried against the spec and not against itself)."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }


def deliver(client, action, body: bytes, headers: dict):
    return client.generic(
        "POST", f"/hooks/actions/{action.pk}/", body, content_type="application/json", headers=headers
    )
