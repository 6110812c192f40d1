"""Outlook subscription gauges for ``/metrics``, read from the database at scrape time.

- ``automation_outlook_subscription_expiry_seconds{action_id, organization}``: seconds until the
  Graph subscription expires (negative once expired), for every subscription Graph holds.
- ``automation_outlook_subscription_renewal_failures{action_id, organization}``: failed renewals
  so far (a counter kept on the row, so every web process reports the same value).
- ``automation_outlook_subscriptions{status}``: subscriptions by status.
"""

from django.db.models import Count
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily


class OutlookSubscriptionCollector:
    def collect(self):
        from automation.models import OutlookSubscription

        now = timezone.now()
        expiry = GaugeMetricFamily(
            "automation_outlook_subscription_expiry_seconds",
            "Seconds until the Microsoft Graph subscription of an Outlook action expires.",
            labels=["action_id", "organization"],
        )
        failures = CounterMetricFamily(
            "automation_outlook_subscription_renewal_failures",
            "Failed renewals of the Microsoft Graph subscription of an Outlook action.",
            labels=["action_id", "organization"],
        )
        rows = (
            OutlookSubscription.objects.exclude(graph_id="")
            .order_by()
            .values_list("action_id", "organization__slug", "expires_at", "renewal_failures")
        )
        for action_id, org, expires_at, renewal_failures in rows:
            labels = [str(action_id), org]
            if expires_at is not None:
                expiry.add_metric(labels, (expires_at - now).total_seconds())
            failures.add_metric(labels, renewal_failures)
        yield expiry
        yield failures
        by_status = GaugeMetricFamily(
            "automation_outlook_subscriptions", "Outlook subscriptions by status.", labels=["status"]
        )
        counts = dict(OutlookSubscription.objects.order_by().values_list("status").annotate(n=Count("*")))
        for status in OutlookSubscription.Status.values:
            by_status.add_metric([status], counts.get(status, 0))
        yield by_status
