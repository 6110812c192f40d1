"""Prometheus metrics of the automation engine.

Two kinds:
- counters and histograms that the run engine increments where things happen (runs
  started and finished, durations, dispatch lag, lease recoveries, shutdown
  interruptions, webhook rejections, retention deletions). With
  ``PROMETHEUS_MULTIPROC_DIR`` set they are written to files in that directory, so
  gunicorn workers and Celery prefork children sharing it are summed at scrape time.
- gauges read from the database at scrape time with one grouped ``COUNT(*)`` per table
  (runs by status and source, follow-ups and provider events by status, schedule slots
  missed and skipped) and the Celery queue depth from the broker. The database is the
  source of truth, so these agree across every process and host.
"""

import logging
import os

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Sum
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from automation.states import FollowUpStatus, ProviderEventStatus, RunSource, RunStatus

logger = logging.getLogger(__name__)

RUNS_STARTED = Counter("automation_runs_started", "Runs claimed by a worker.", ["source"])
RUNS_FINISHED = Counter(
    "automation_runs_finished", "Runs that reached a terminal status.", ["status", "source"]
)
RUN_DURATION = Histogram(
    "automation_run_duration_seconds",
    "From claim to terminal status.",
    ["status", "source"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200),
)
DISPATCH_LAG = Histogram(
    "automation_run_dispatch_lag_seconds",
    "From the time a run was due (created, or not_before) to its claim by a worker.",
    ["source"],
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900),
)
LEASE_RECOVERIES = Counter(
    "automation_lease_recoveries", "Running runs interrupted by the sweep because their lease expired."
)
SHUTDOWN_INTERRUPTIONS = Counter(
    "automation_worker_shutdown_interruptions",
    "Runs interrupted because their worker shut down and the grace period ran out.",
)
WEBHOOK_REJECTIONS = Counter(
    "automation_webhook_rejections", "Inbound provider deliveries refused with a 4xx.", ["reason"]
)
RETENTION_DELETED = Counter(
    "automation_retention_deleted", "Rows deleted or payloads pruned by retention.", ["kind"]
)
RETENTION_FAILURES = Counter(
    "automation_retention_failures", "Organizations whose retention pass failed (the others still ran)."
)


def multiprocess_dir() -> str:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


def record_run_started(run) -> None:
    """Count a claim and how long the run waited for it since it was due."""
    RUNS_STARTED.labels(source=run.source).inc()
    due = max(filter(None, (run.not_before, run.created_at)))
    DISPATCH_LAG.labels(source=run.source).observe(max(0.0, (run.started_at - due).total_seconds()))


def record_run_finished(run) -> None:
    """Count a terminal transition once its transaction commits (a rollback counts nothing)."""

    def count():
        RUNS_FINISHED.labels(status=run.status, source=run.source).inc()
        if run.started_at and run.completed_at:
            RUN_DURATION.labels(status=run.status, source=run.source).observe(
                max(0.0, (run.completed_at - run.started_at).total_seconds())
            )

    transaction.on_commit(count)


def record_webhook_rejection(*, reason: str) -> None:
    """For the provider endpoints: one refused delivery, by a short stable reason."""
    WEBHOOK_REJECTIONS.labels(reason=reason).inc()


class DatabaseCollector:
    """Gauges read at scrape time: one grouped count per table, every label combination."""

    def collect(self):
        from automation.models import AgentRun, FollowUp, ProviderEvent, Schedule

        runs = GaugeMetricFamily("automation_runs", "Runs by status and source.", labels=["status", "source"])
        counts = {
            (r["status"], r["source"]): r["n"]
            for r in AgentRun.objects.order_by().values("status", "source").annotate(n=Count("*"))
        }
        for status in RunStatus.values:
            for source in RunSource.values:
                runs.add_metric([status, source], counts.get((status, source), 0))
        yield runs
        yield _by_status(FollowUp, FollowUpStatus, "automation_follow_ups", "Follow-ups by status.")
        yield _by_status(
            ProviderEvent, ProviderEventStatus, "automation_provider_events", "Provider events by status."
        )
        slots = Schedule.objects.aggregate(missed=Sum("missed_count"), skipped=Sum("skipped_count"))
        yield CounterMetricFamily(
            "automation_schedule_slots_missed",
            "Schedule slots older than their catch-up window, not fired (misfires).",
            value=slots["missed"] or 0,
        )
        yield CounterMetricFamily(
            "automation_schedule_slots_skipped",
            "Schedule slots skipped because the previous run was still active.",
            value=slots["skipped"] or 0,
        )


def _by_status(model, statuses, name: str, documentation: str) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=["status"])
    counts = dict(model.objects.order_by().values_list("status").annotate(n=Count("*")))
    for status in statuses.values:
        family.add_metric([status], counts.get(status, 0))
    return family


class QueueDepthCollector:
    """Messages waiting in the Celery queue (Redis broker only; other brokers export nothing)."""

    def collect(self):
        url = settings.CELERY_BROKER_URL
        if not url.startswith(("redis://", "rediss://")):
            return
        import redis

        queue = getattr(settings, "CELERY_TASK_DEFAULT_QUEUE", "celery")
        # kombu's Redis transport keeps one list per priority step beside the plain one.
        names = [queue, *(f"{queue}\x06\x16{p}" for p in (3, 6, 9))]
        try:
            client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
            with client.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.llen(name)
                depth = sum(pipe.execute())
        except redis.RedisError as exc:
            logger.warning("Could not read the Celery queue depth: %s", exc)
            return
        family = GaugeMetricFamily("automation_celery_queue_length", "Messages waiting.", labels=["queue"])
        family.add_metric([queue], depth)
        yield family


def process_registry() -> CollectorRegistry:
    """The counters and histograms: summed over every process when multi-process is on."""
    if not multiprocess_dir():
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return registry


def scrape(*, include_database: bool = True) -> bytes:
    """The exposition text served by ``/metrics``."""
    body = generate_latest(process_registry())
    if include_database:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(DatabaseCollector())
        registry.register(QueueDepthCollector())
        body += generate_latest(registry)
    return body
