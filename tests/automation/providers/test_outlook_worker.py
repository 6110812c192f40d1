"""Outlook end to end with real ``celery worker`` processes: a notification reaches the hook,
a worker fetches the message from the local Graph, and the run it starts answers in the thread."""

import json

import pytest
from django.test import Client

from agentpress.agents.models import Message, MessageRole
from automation.models import AgentRun, OutlookSubscription
from automation.states import RunStatus
from tests.factories import ActionFactory
from tests.support.services import wait_until

pytestmark = pytest.mark.celery_worker

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_a_notified_e_mail_is_fetched_by_a_worker_and_answered_in_its_thread(
    roster, graph_stub, worker_pool, settings
):
    worker_pool(
        MS_GRAPH_TENANT_ID=settings.MS_GRAPH_TENANT_ID,
        MS_GRAPH_CLIENT_ID=settings.MS_GRAPH_CLIENT_ID,
        MS_GRAPH_CLIENT_SECRET=settings.MS_GRAPH_CLIENT_SECRET,
        MS_GRAPH_BASE_URL=settings.MS_GRAPH_BASE_URL,
        MS_GRAPH_AUTHORITY_URL=settings.MS_GRAPH_AUTHORITY_URL,
        MS_GRAPH_CA_BUNDLE=settings.MS_GRAPH_CA_BUNDLE,
    )
    action = ActionFactory(
        organization=roster.org,
        agent=roster.agent,
        run_as=roster.owner,
        provider="outlook",
        context_type="email_thread",
        context_key_pointer="",
        signing_secret=SECRET,
        instructions="!reply We are on it.",
    )
    OutlookSubscription.objects.create(action=action, organization=roster.org, mailbox="support@acme.example")
    message_id = graph_stub.add_message(
        subject="Parcel damaged", conversation="conv-w", body="Box was crushed."
    )
    notification = {
        "subscriptionId": "sub-w",
        "clientState": SECRET,
        "changeType": "created",
        "resourceData": {"id": message_id},
    }
    response = Client().post(
        f"/hooks/actions/{action.pk}/", json.dumps({"value": [notification]}), content_type="application/json"
    )
    assert response.status_code == 202, response.content
    wait_until(
        lambda: AgentRun.objects.filter(action=action, status=RunStatus.COMPLETED).exists(),
        timeout=60,
        message="the e-mail's run completed",
    )
    run = AgentRun.objects.get(action=action)
    assert run.context_key == "conv-w"
    event = Message.objects.get(thread=run.thread, role=MessageRole.EVENT)
    assert "Subject: Parcel damaged" in event.content and "Box was crushed." in event.content
    assert Message.objects.filter(
        thread=run.thread, role=MessageRole.ASSISTANT, content="We are on it."
    ).exists()
