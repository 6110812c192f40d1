"""``/metrics`` for Outlook subscriptions: seconds to expiry and renewal failures per subscription."""

from datetime import timedelta

from django.utils import timezone

from automation.models import OutlookSubscription
from tests.factories import ActionFactory

from .test_metrics import scrape, value


def test_expiry_and_renewal_failures_per_subscription(roster, client, time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    soon = ActionFactory(organization=roster.org, agent=roster.agent, run_as=roster.owner, provider="outlook")
    OutlookSubscription.objects.create(
        action=soon,
        organization=roster.org,
        mailbox="support@acme.example",
        graph_id="sub-1",
        status=OutlookSubscription.Status.FAILING,
        expires_at=timezone.now() + timedelta(hours=3),
        renewal_failures=4,
    )
    unconfigured = ActionFactory(
        organization=roster.org, agent=roster.agent, run_as=roster.owner, provider="outlook"
    )
    OutlookSubscription.objects.create(action=unconfigured, organization=roster.org)
    samples = scrape(client)
    labels = {"action_id": str(soon.pk), "organization": "acme"}
    assert value(samples, "automation_outlook_subscription_expiry_seconds", **labels) == 3 * 3600
    assert value(samples, "automation_outlook_subscription_renewal_failures_total", **labels) == 4
    assert value(samples, "automation_outlook_subscriptions", status="failing") == 1
    assert value(samples, "automation_outlook_subscriptions", status="unconfigured") == 1
    assert not any(
        name == "automation_outlook_subscription_expiry_seconds"
        and dict(lbls)["action_id"] == str(unconfigured.pk)
        for name, lbls in samples
    )
