"""The action page: where an operator sees an Outlook subscription's health."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from automation.models import OutlookSubscription
from tests.factories import ActionFactory


def signed_in(user):
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def mailbox(roster):
    return ActionFactory(
        organization=roster.org,
        agent=roster.agent,
        run_as=roster.owner,
        name="Support mailbox",
        provider="outlook",
    )


def test_the_page_shows_the_subscription_health(roster, mailbox, settings):
    settings.MS_GRAPH_TENANT_ID = settings.MS_GRAPH_CLIENT_ID = settings.MS_GRAPH_CLIENT_SECRET = "set"
    settings.AUTOMATION_PUBLIC_BASE_URL = "https://agentpress.example"
    now = timezone.now()
    OutlookSubscription.objects.create(
        action=mailbox,
        organization=roster.org,
        mailbox="support@acme.example",
        graph_id="sub-1",
        status=OutlookSubscription.Status.FAILING,
        expires_at=now + timedelta(hours=5, minutes=1),
        last_renewed_at=now - timedelta(days=2),
        last_notification_at=now - timedelta(minutes=3),
        resync_count=2,
        renewal_failures=1,
        last_error="2026-12-01 10:00:00 UTC: Renewing the subscription failed: 503 serviceUnavailable",
    )
    page = signed_in(roster.owner).get(f"/orgs/acme/agents/actions/{mailbox.pk}/").content.decode()
    assert "Failing (retrying)" in page and "in 5 h" in page
    assert "Renewing the subscription failed: 503" in page
    assert "Resyncs</dt><dd>2" in page and "support@acme.example" in page
    assert "Not connected" not in page
    listing = signed_in(roster.owner).get("/orgs/acme/agents/actions/").content.decode()
    assert "Support mailbox" in listing and "Failing (retrying)" in listing


def test_without_a_tenant_the_page_says_what_to_configure(roster, mailbox, settings):
    settings.MS_GRAPH_TENANT_ID = ""
    settings.AUTOMATION_PUBLIC_BASE_URL = ""
    page = signed_in(roster.owner).get(f"/orgs/acme/agents/actions/{mailbox.pk}/").content.decode()
    assert "Not connected to a mailbox yet" in page
    assert "MS_GRAPH_TENANT_ID" in page and "AUTOMATION_PUBLIC_BASE_URL" in page
    assert "sets the mailbox" in page


def test_members_and_other_orgs_do_not_see_the_page(roster, mailbox):
    url = f"/orgs/acme/agents/actions/{mailbox.pk}/"
    assert signed_in(roster.member).get(url).status_code == 404  # it runs as the owner
    assert signed_in(roster.other_owner).get(url).status_code == 404
    assert (
        "Support mailbox" not in signed_in(roster.member).get("/orgs/acme/agents/actions/").content.decode()
    )
    assert signed_in(roster.owner).get("/orgs/acme/agents/actions/not-a-uuid/").status_code == 404
