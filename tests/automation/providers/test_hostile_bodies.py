"""Hostile signed webhook bodies: any JSON value (NaN and infinities, any code point, deep
nesting) or any bytes. A delivery is accepted (and every page that shows it renders) or
refused with a clear 400 and nothing stored. Bounded, derandomized examples."""

import json
import uuid

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentpress.agents.models import Message, Thread
from automation.models import AgentRun, ProviderEvent

from .conftest import deliver, signed_headers

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
FUZZ = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=20)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
    max_leaves=12,
)
TICKETS = st.fixed_dictionaries(
    {"data": st.fixed_dictionaries({"ticket": st.fixed_dictionaries({"id": JSON_VALUES})})}
)
BODIES = st.one_of(
    st.one_of(TICKETS, JSON_VALUES).map(lambda doc: json.dumps(doc, allow_nan=True).encode()),
    st.binary(max_size=200),
)


def wipe() -> None:
    AgentRun.objects.all().delete()
    ProviderEvent.objects.all().delete()
    Message.objects.all().delete()
    Thread.objects.all().delete()


@FUZZ
@given(body=BODIES)
@pytest.mark.django_db
def test_any_signed_body_is_accepted_and_shown_or_refused_with_nothing_stored(roster, webhook_action, body):
    client = Client()
    headers = signed_headers(SECRET, body, msg_id=f"msg_{uuid.uuid4().hex}")
    response = deliver(client, webhook_action, body, headers)
    if response.status_code == 400:
        assert response.json()["detail"].startswith("The body is not valid JSON")
        assert not ProviderEvent.objects.exists() and not AgentRun.objects.exists()
    else:
        assert response.status_code == 202, response.content[:300]
        client.force_login(roster.owner)
        runs_page = "/orgs/acme/agents/monitor/automation-runs/"
        assert client.get(runs_page).status_code == 200
        for run in AgentRun.objects.all():
            assert client.get(f"{runs_page}{run.pk}/").status_code == 200
            assert client.get(f"/orgs/acme/threads/{run.thread_id}/").status_code == 200
        assert client.get("/admin/automation/providerevent/").status_code == 200
    wipe()
