import json
import time
from pathlib import Path

import pytest

from automation.providers.webhook import sign
from automation.services import runs
from tests.factories import ActionFactory

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str):
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    """Runs are stored and dispatched on commit; these tests look at rows, not workers."""
    monkeypatch.setattr(runs, "dispatch_run", lambda *, run_id: True)


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
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret=secret, msg_id=msg_id, timestamp=timestamp, body=body),
    }


def deliver(client, action, body: bytes, headers: dict):
    return client.generic(
        "POST", f"/hooks/actions/{action.pk}/", body, content_type="application/json", headers=headers
    )
