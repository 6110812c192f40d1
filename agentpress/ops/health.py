"""Readiness checks: each answers ``(ok, detail)`` and never raises."""

from django.conf import settings
from django.db import connection
from django.utils import timezone
from kombu import Connection

# The periodic tasks registered by ``setup_periodic_tasks`` are named "automation: …".
BEAT_TASK_PREFIX = "automation:"


def check_database() -> tuple[bool, str]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        connection.close()  # a dead connection must not stay cached for the next request
        return False, f"{type(exc).__name__}: {exc}".strip()[:300]
    return True, "reachable"


def check_broker() -> tuple[bool, str]:
    url = settings.CELERY_BROKER_URL
    try:
        with Connection(
            url, connect_timeout=2, transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS
        ) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=3)
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}".strip()[:300]
    return True, "reachable"


def check_beat() -> tuple[bool, str]:
    """Beat is alive when it sent one of the automation tasks recently (DatabaseScheduler
    writes ``last_run_at`` on every send, see ``CELERY_BEAT_SYNC_EVERY``)."""
    from django_celery_beat.models import PeriodicTask

    try:
        last = (
            PeriodicTask.objects.filter(
                name__startswith=BEAT_TASK_PREFIX, enabled=True, last_run_at__isnull=False
            )
            .order_by("-last_run_at")
            .values_list("last_run_at", flat=True)
            .first()
        )
    except Exception as exc:
        return False, f"cannot read the beat schedule: {type(exc).__name__}"
    if last is None:
        return False, "no automation task was ever sent by beat (run setup_periodic_tasks and start beat)"
    age = (timezone.now() - last).total_seconds()
    allowed = settings.AUTOMATION_BEAT_STALE_AFTER_SECONDS
    if age > allowed:
        return False, f"last tick {age:.0f}s ago at {last:%Y-%m-%d %H:%M:%S} UTC (allowed {allowed:g}s)"
    return True, f"last tick {age:.0f}s ago"


def readiness() -> dict[str, dict]:
    """Every check by name. Beat is only checked when the database answers."""
    checks = {"database": check_database(), "broker": check_broker()}
    checks["beat"] = check_beat() if checks["database"][0] else (False, "database unreachable")
    return {name: {"ok": ok, "detail": detail} for name, (ok, detail) in checks.items()}
