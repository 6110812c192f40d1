"""``/metrics`` (protected), ``/healthz`` (alive) and ``/readyz`` (dependencies up).

Both ``/readyz`` and ``/healthz`` are public, so they name a failing check and nothing else;
what failed and why (hosts, users, exception text) goes to the log. ``/metrics`` needs
``METRICS_BEARER_TOKEN`` or an address the operator listed in ``METRICS_ALLOWED_IPS`` (empty
by default in production: ``REMOTE_ADDR`` is the proxy's behind a reverse proxy).
"""

import hmac
import ipaddress
import logging

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from agentpress.ops import health, metrics

logger = logging.getLogger(__name__)


def _ip_allowed(remote: str) -> bool:
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return False
    for entry in settings.METRICS_ALLOWED_IPS:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def _token_ok(header: str) -> bool:
    token = settings.METRICS_BEARER_TOKEN
    scheme, _, given = header.partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)


@require_GET
def metrics_view(request):
    """Allowed from an address in ``METRICS_ALLOWED_IPS`` or with ``METRICS_BEARER_TOKEN``."""
    if not (
        _ip_allowed(request.META.get("REMOTE_ADDR", ""))
        or _token_ok(request.META.get("HTTP_AUTHORIZATION", ""))
    ):
        return JsonResponse({"detail": "Metrics are not available to this client."}, status=403)
    return HttpResponse(metrics.scrape(), content_type=CONTENT_TYPE_LATEST)


@require_GET
def healthz(request):
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request):
    checks = health.readiness()
    failing = [name for name, check in checks.items() if not check["ok"]]
    for name in failing:
        logger.warning("Readiness check %s failing: %s", name, checks[name]["detail"])
    body = {"status": "unavailable" if failing else "ok", "failing": failing}
    return JsonResponse(body, status=503 if failing else 200)
