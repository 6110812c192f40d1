"""Outlook subscriptions (DESIGN §7a): every enabled Outlook action keeps one Microsoft
Graph subscription alive, and no e-mail is lost to a dropped or missed notification.

Guarantees and what gives them:
- One actor per subscription at a time: each Graph operation first claims the row by moving
  ``next_attempt_at`` forward in a guarded update; whoever finds it claimed leaves it alone.
- A failed Graph call is recorded on the row (``last_error``, ``failure_count``, for renewals
  ``renewal_failures``) and retried with exponential backoff (``Retry-After`` when Graph gives a
  longer one) by ``maintain_subscriptions``, the periodic task that also renews every
  subscription ``AUTOMATION_OUTLOOK_RENEW_BEFORE_SECONDS`` before it expires.
- Resyncs (``outlook_mail.walk_delta``) advance the stored delta link only once every message
  of the round is ingested, so nothing is lost; the periodic pass resyncs too, so even a
  notification Graph never sent is picked up.
"""

import hashlib
import logging
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from django.conf import settings
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from automation.models import Action, OutlookSubscription
from automation.providers.graph import GraphConfig, GraphError, GraphThrottled, client
from automation.services.outlook_mail import walk_delta

logger = logging.getLogger(__name__)

Status = OutlookSubscription.Status
CLAIM_SECONDS = 120
BACKOFF_BASE_SECONDS = 60
BACKOFF_MAX_SECONDS = 3600


class SubscriptionBusy(Exception):
    """Another worker holds the subscription (or it is backing off); try again later."""


def subscription_for(action: Action) -> OutlookSubscription:
    subscription, _ = OutlookSubscription.objects.get_or_create(
        action=action, defaults={"organization_id": action.organization_id}
    )
    return subscription


def configuration_problems(subscription: OutlookSubscription) -> list[str]:
    """What an operator must still set before the subscription can exist (shown on the page)."""
    problems = [f"Set {name} in the environment." for name in GraphConfig.from_settings().missing]
    base = settings.AUTOMATION_PUBLIC_BASE_URL
    if not base:
        problems.append("Set AUTOMATION_PUBLIC_BASE_URL to the public https address Graph delivers to.")
    elif not base.startswith("https://"):
        problems.append("AUTOMATION_PUBLIC_BASE_URL must be an https address: Graph delivers only there.")
    if not subscription.mailbox:
        problems.append("A platform operator sets the mailbox on this action's Outlook subscription (admin).")
    return problems


def hook_url(action: Action) -> str:
    return settings.AUTOMATION_PUBLIC_BASE_URL.rstrip("/") + reverse("action-hook", args=[action.pk])


def notification_received(*, action_id) -> None:
    OutlookSubscription.objects.filter(action_id=action_id).update(last_notification_at=timezone.now())


def subscription_sync(*, action_id) -> str:
    """Bring Graph in line with the action: an enabled Outlook action with a mailbox has a live
    subscription, anything else has none. Returns what was done; ``busy`` when claimed elsewhere."""
    action = Action.objects.filter(pk=action_id, provider=Action.Provider.OUTLOOK).first()
    if action is None:
        return "not_outlook"
    claimed = _claim(subscription_for(action).pk)
    return "busy" if claimed is None else _maintain(claimed)


def maintain_subscriptions() -> dict[str, int]:
    """The periodic pass: create what is missing, renew what expires soon, retry what failed
    (once its backoff passed), remove what was disabled, and resync every live subscription."""
    for action in Action.objects.filter(provider=Action.Provider.OUTLOOK, outlook_subscription__isnull=True):
        subscription_for(action)
    now = timezone.now()
    idle = (
        Q(graph_id="")
        & (Q(action__enabled=False) | Q(mailbox=""))
        & Q(status__in=[Status.UNCONFIGURED, Status.REMOVED])
    )
    due = (
        OutlookSubscription.objects.filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .exclude(idle)
        .order_by("expires_at", "id")
        .values_list("pk", flat=True)
    )
    outcomes: dict[str, int] = {}
    for pk in list(due):
        claimed = _claim(pk)
        if claimed is not None:
            outcome = _maintain(claimed)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes


def lifecycle_handle(*, action_id, kind: str, subscription_id: str) -> str:
    """``reauthorizationRequired`` renews; ``subscriptionRemoved`` recreates and resyncs;
    ``missed`` resyncs from the stored delta link. Raises ``SubscriptionBusy`` to be retried."""
    subscription = OutlookSubscription.objects.filter(action_id=action_id).first()
    if subscription is None or (subscription_id and subscription_id != subscription.graph_id):
        return "stale"  # about a subscription we no longer hold
    claimed = _claim(subscription.pk)
    if claimed is None:
        raise SubscriptionBusy(f"Subscription {subscription.pk} is being worked on.")
    if kind == "reauthorizationRequired":
        return _renew(claimed)
    if kind == "subscriptionRemoved":
        OutlookSubscription.objects.filter(pk=claimed.pk).update(graph_id="", status=Status.PENDING)
        claimed.graph_id = ""
        return _create(claimed, counted_resync=True)
    return _resync(claimed, counted=True)


def subscription_delete_remote(*, graph_id: str) -> None:
    """Delete a Graph subscription whose action is gone; one already gone is fine."""
    try:
        client().request("DELETE", f"subscriptions/{quote(graph_id, safe='')}")
    except GraphError as exc:
        if exc.status != 404:
            raise


def _claim(pk) -> OutlookSubscription | None:
    now = timezone.now()
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    if not OutlookSubscription.objects.filter(due, pk=pk).update(
        next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS)
    ):
        return None
    return OutlookSubscription.objects.select_related("action__organization").get(pk=pk)


def _settle(subscription: OutlookSubscription, **fields) -> None:
    """Record a success (or a deliberate state) and release the claim."""
    OutlookSubscription.objects.filter(pk=subscription.pk).update(next_attempt_at=None, **fields)
    for name, value in fields.items():
        setattr(subscription, name, value)


def _failed(subscription: OutlookSubscription, what: str, exc: Exception, *, renewal: bool = False) -> str:
    now = timezone.now()
    failures = subscription.failure_count + 1
    delay = min(BACKOFF_BASE_SECONDS * 2 ** (failures - 1), BACKOFF_MAX_SECONDS)
    if isinstance(exc, GraphThrottled):
        delay = max(delay, exc.retry_after)
    OutlookSubscription.objects.filter(pk=subscription.pk).update(
        status=Status.FAILING,
        failure_count=failures,
        renewal_failures=F("renewal_failures") + (1 if renewal else 0),
        next_attempt_at=now + timedelta(seconds=delay),
        last_error=f"{now:%Y-%m-%d %H:%M:%S} UTC: {what} failed: {exc}"[:2000],
    )
    logger.warning("Outlook subscription %s: %s failed: %s", subscription.pk, what, exc)
    return "failed"


def _maintain(subscription: OutlookSubscription) -> str:
    action = subscription.action
    if not (action.enabled and subscription.mailbox):
        if subscription.graph_id:
            try:
                subscription_delete_remote(graph_id=subscription.graph_id)
            except GraphError as exc:
                return _failed(subscription, "Deleting the subscription", exc)
        _settle(
            subscription,
            graph_id="",
            expires_at=None,
            failure_count=0,
            last_error="",
            status=Status.REMOVED if subscription.mailbox else Status.UNCONFIGURED,
        )
        return "removed"
    if problems := configuration_problems(subscription):
        _settle(subscription, status=Status.UNCONFIGURED, last_error=" ".join(problems))
        return "unconfigured"
    if not subscription.graph_id:
        return _create(subscription, counted_resync=False)
    if subscription.client_state_digest != _digest(_client_state(action)):
        return _create(subscription, counted_resync=False, replaces=subscription.graph_id)
    renew_by = timezone.now() + timedelta(seconds=settings.AUTOMATION_OUTLOOK_RENEW_BEFORE_SECONDS)
    renewed = False
    if (
        subscription.status != Status.ACTIVE
        or subscription.expires_at is None
        or subscription.expires_at <= renew_by
    ):
        outcome = _renew(subscription)
        if outcome != "renewed":
            return outcome
        renewed = True
    outcome = _resync(subscription, counted=False)
    return "renewed" if renewed and outcome == "resynced" else outcome


def _expiry() -> datetime:
    return timezone.now() + timedelta(minutes=settings.AUTOMATION_OUTLOOK_SUBSCRIPTION_MINUTES)


def _graph_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _expires_at(data, fallback: datetime) -> datetime:
    value = data.get("expirationDateTime") if isinstance(data, dict) else None
    parsed = parse_datetime(value) if isinstance(value, str) else None
    return parsed or fallback


def _client_state(action: Action) -> str:
    return action.signing_secret.split()[0]


def _digest(client_state: str) -> str:
    return hashlib.sha256(client_state.encode()).hexdigest()


def _create(subscription: OutlookSubscription, *, counted_resync: bool, replaces: str = "") -> str:
    """A new Graph subscription with the action's current secret as ``clientState``; when it
    ``replaces`` one (the secret was rotated), the old one is deleted once the new one exists."""
    action, expires = subscription.action, _expiry()
    resource = f"users/{subscription.mailbox}/mailFolders('{subscription.folder}')/messages"
    url = hook_url(action)
    try:
        data = client().request(
            "POST",
            "subscriptions",
            json={
                "changeType": subscription.change_types,
                "notificationUrl": url,
                "lifecycleNotificationUrl": url,
                "resource": resource,
                "expirationDateTime": _graph_time(expires),
                "clientState": _client_state(action),
                "latestSupportedTlsVersion": "v1_2",
            },
        )
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise GraphError("Graph created a subscription but sent no id.")
    except GraphError as exc:
        return _failed(subscription, "Creating the subscription", exc)
    now = timezone.now()
    OutlookSubscription.objects.filter(pk=subscription.pk, baseline_at__isnull=True).update(baseline_at=now)
    OutlookSubscription.objects.filter(pk=subscription.pk).update(
        graph_id=data["id"],
        client_state_digest=_digest(_client_state(action)),
        resource=resource,
        expires_at=_expires_at(data, expires),
        status=Status.ACTIVE,
        last_renewed_at=now,
        failure_count=0,
        last_error="",
    )
    subscription.refresh_from_db()
    if replaces:
        try:
            subscription_delete_remote(graph_id=replaces)
        except GraphError as exc:  # it stops at its expiry; notifications for it are refused meanwhile
            logger.warning("Could not delete the replaced Graph subscription %s: %s", replaces, exc)
    outcome = _resync(subscription, counted=counted_resync)
    return "created" if outcome == "resynced" else outcome


def _renew(subscription: OutlookSubscription) -> str:
    expires = _expiry()
    try:
        data = client().request(
            "PATCH",
            f"subscriptions/{quote(subscription.graph_id, safe='')}",
            json={"expirationDateTime": _graph_time(expires)},
        )
    except GraphError as exc:
        if exc.status == 404:  # Graph dropped it (expired or removed): make a new one, catch up
            OutlookSubscription.objects.filter(pk=subscription.pk).update(graph_id="", status=Status.PENDING)
            subscription.graph_id = ""
            return _create(subscription, counted_resync=True)
        return _failed(subscription, "Renewing the subscription", exc, renewal=True)
    _settle(
        subscription,
        expires_at=_expires_at(data, expires),
        last_renewed_at=timezone.now(),
        status=Status.ACTIVE,
        failure_count=0,
        last_error="",
    )
    return "renewed"


def _resync(subscription: OutlookSubscription, *, counted: bool) -> str:
    try:
        link = walk_delta(subscription)
    except GraphError as exc:
        return _failed(subscription, "Resyncing the mailbox", exc)
    _settle(
        subscription,
        delta_link=link,
        last_resync_at=timezone.now(),
        resync_count=F("resync_count") + (1 if counted else 0),
        status=Status.ACTIVE,
        failure_count=0,
        last_error="",
    )
    subscription.refresh_from_db()
    return "resynced"
