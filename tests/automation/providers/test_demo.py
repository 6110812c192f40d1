import json
import shutil
import subprocess
from io import StringIO

import pytest
from django.core.management.base import BaseCommand
from django.test import Client

from automation.management.demo import provider_events as demo
from automation.models import Action, AgentRun, ProviderEvent
from tests.support.services import require

# stands in for curl: prints what would be sent
FAKE_CURL = (
    'curl() { while [ $# -gt 0 ]; do case "$1" in -H) printf "H %s\\n" "$2"; shift;; '
    '-d) printf "B %s\\n" "$2"; shift;; esac; shift; done; }\n'
)


def seed(roster) -> str:
    command = BaseCommand(stdout=StringIO())
    demo.seed(
        command,
        acme=roster.org,
        globex=roster.other_org,
        agents={"support": roster.agent},
        users={"owner": roster.owner},
    )
    return command.stdout.getvalue()


@pytest.mark.sqlite
def test_demo_has_events_in_each_status_and_is_idempotent(roster):
    seed(roster)
    counts = (ProviderEvent.objects.count(), AgentRun.objects.count(), Action.objects.count())
    assert set(ProviderEvent.objects.values_list("status", flat=True)) == {
        "started",
        "deferred",
        "coalesced",
        "ignored",
    }
    assert ProviderEvent.objects.get(event_id="msg_demo_1").delivery_count == 2  # a duplicate delivery
    seed(roster)
    assert (ProviderEvent.objects.count(), AgentRun.objects.count(), Action.objects.count()) == counts


@pytest.mark.sqlite
def test_printed_curl_command_sends_a_correctly_signed_event(roster):
    require(shutil.which("openssl") is not None, "openssl (the printed command signs with it)")
    snippet = seed(roster).split("running demo:", 1)[1]
    sent = subprocess.run(
        ["bash", "-c", FAKE_CURL + snippet], capture_output=True, text=True, check=True
    ).stdout
    headers = dict(line[2:].split(": ", 1) for line in sent.splitlines() if line.startswith("H "))
    body = next(line[2:] for line in sent.splitlines() if line.startswith("B "))
    action = Action.objects.get(name="Helpdesk tickets")
    response = Client().generic(
        "POST",
        f"/hooks/actions/{action.pk}/",
        body.encode(),
        content_type="application/json",
        headers=headers,
    )
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "started"
    assert (
        json.loads(body)["data"]["ticket"]["id"]
        == AgentRun.objects.get(pk=response.json()["runId"]).context_key
    )


def test_the_demo_mailbox_page_says_what_to_configure(roster, client, settings):
    settings.MS_GRAPH_TENANT_ID = settings.MS_GRAPH_CLIENT_ID = settings.MS_GRAPH_CLIENT_SECRET = ""
    seed(roster)
    action = Action.objects.get(name="Support mailbox")
    client.force_login(roster.owner)
    page = client.get(f"/orgs/acme/agents/actions/{action.pk}/").content.decode()
    assert "Not connected to a mailbox yet" in page
    assert "MS_GRAPH_TENANT_ID" in page and "MS_GRAPH_CLIENT_SECRET" in page
    assert "message:demo-message-1" in page  # its deliveries are listed under it
