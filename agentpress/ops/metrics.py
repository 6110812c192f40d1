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

import os
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Case, Count, Q, Sum, Value, When
from django.utils import timezone
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from agentpress.ops.outlook_metrics import OutlookSubscriptionCollector
from automation import broker
from automation.states import (
    FollowUpStatus,
    ProviderEventStatus,
    RunSource,
    RunStatus,
    WaitingKind,
    effective_limit,
)

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
MODEL_TOKENS = Counter("automation_model_tokens", "Tokens of model calls.", ["org", "agent", "model", "kind"])
MODEL_COST = Counter(
    "automation_model_cost",
    "Cost of model calls, in the unit of the endpoint prices.",
    ["org", "agent", "model"],
)
MODEL_CALLS = Counter(
    "automation_model_calls", "Model call attempts by outcome.", ["org", "agent", "model", "outcome"]
)
# Models are named by tenants: past this many (org, agent, model) series per process, new
# ones are counted under "other" so a tenant cannot grow the scrape without bound.
MAX_MODEL_SERIES = 500
OTHER = "other"
_model_series: set[tuple] = set()


def _model_labels(org: str, agent, model: str) -> tuple[str, str, str]:
    labels = (org, str(agent), model[:64])
    if labels in _model_series:
        return labels
    if len(_model_series) >= MAX_MODEL_SERIES:
        return (OTHER, OTHER, OTHER)
    _model_series.add(labels)
    return labels


def record_model_call(*, org: str, agent, call) -> None:
    """Count one model-call attempt: its tokens, cost and outcome."""
    org, agent, model = _model_labels(org, agent, call.model)
    MODEL_CALLS.labels(org=org, agent=agent, model=model, outcome=call.outcome).inc()
    for kind in ("input", "output", "cached"):
        tokens = getattr(call, f"{kind}_tokens")
        if tokens:
            MODEL_TOKENS.labels(org=org, agent=agent, model=model, kind=kind).inc(tokens)
    if call.cost:
        MODEL_COST.labels(org=org, agent=agent, model=model).inc(float(call.cost))


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
        yield from _worker_families()
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


@dataclass(frozen=True)
class WorkerState:
    name: str
    in_flight: int
    concurrency: int
    seconds_since_consumed: float | None
    consuming: bool


def consume_deadline() -> timedelta:
    """How long a live worker with free slots may go without a message while runs wait."""
    return timedelta(
        seconds=settings.AUTOMATION_REDISPATCH_AFTER_SECONDS
        + 2 * settings.AUTOMATION_SWEEP_INTERVAL_SECONDS
        + settings.AUTOMATION_LEASE_TTL_SECONDS / 4
    )


def live_workers() -> list[WorkerState]:
    """Workers that beat within the lease TTL and did not stop, each with its consuming state.

    A worker can stay connected to the broker and heartbeat while its consumer no longer
    takes messages (a known class of Celery / kombu reconnect bugs). From the database that
    looks like: its heartbeat is recent, it has free slots, it received no run's message for
    longer than a lost message takes to be re-sent, and runs have waited that long.
    """
    from automation.models import AgentRun, Worker

    now = timezone.now()
    ttl = timedelta(seconds=settings.AUTOMATION_LEASE_TTL_SECONDS)
    stale_before = now - consume_deadline()
    work_waits = (
        AgentRun.objects.filter(status=RunStatus.PENDING, dispatched_at__lt=stale_before)
        .filter(Q(not_before__isnull=True) | Q(not_before__lte=now))
        .exists()
    )
    states = []
    for row in Worker.objects.filter(stopped_at__isnull=True, last_beat_at__gte=now - ttl).order_by("name"):
        consumed = row.last_consumed_at
        idle = consumed is None or consumed < stale_before
        states.append(
            WorkerState(
                name=row.name,
                in_flight=row.in_flight,
                concurrency=row.concurrency,
                seconds_since_consumed=(now - consumed).total_seconds() if consumed else None,
                consuming=not (work_waits and idle and row.in_flight < row.concurrency),
            )
        )
    return states


def _worker_families():
    """Per live worker: runs in flight, seconds since it last received a message, and
    whether it is connected but no longer consuming while runs wait."""
    in_flight = GaugeMetricFamily(
        "automation_worker_in_flight", "Runs in flight per worker.", labels=["worker"]
    )
    since = GaugeMetricFamily(
        "automation_worker_seconds_since_consumed",
        "Seconds since a run's message last reached the worker.",
        labels=["worker"],
    )
    stalled = GaugeMetricFamily(
        "automation_worker_not_consuming",
        "1 when a live worker with free slots received no message for longer than a lost one "
        "takes to be re-sent while runs wait.",
        labels=["worker"],
    )
    for state in live_workers():
        in_flight.add_metric([state.name], state.in_flight)
        if state.seconds_since_consumed is not None:
            since.add_metric([state.name], state.seconds_since_consumed)
        stalled.add_metric([state.name], 0 if state.consuming else 1)
    yield from (in_flight, since, stalled)


def _by_status(model, statuses, name: str, documentation: str) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=["status"])
    counts = dict(model.objects.order_by().values_list("status").annotate(n=Count("*")))
    for status in statuses.values:
        family.add_metric([status], counts.get(status, 0))
    return family


def capacity_by_org(*, max_orgs: int) -> list[dict]:
    """In flight, effective limit and pending runs by waiting kind per organization, for
    ``/metrics``: the ``max_orgs`` busiest (in flight + pending) by slug, the rest summed as
    ``_other`` so the label set stays bounded."""
    from agentpress.orgs.models import Organization
    from automation.models import AgentRun

    kind = Case(
        *(
            When(waiting_reason__startswith=phrase, then=Value(k))
            for k, phrase in WaitingKind.PHRASES.items()
        ),
        default=Value("none"),
    )
    active = AgentRun.objects.filter(status__in=(RunStatus.RUNNING, RunStatus.PENDING)).order_by()
    rows = active.annotate(kind=kind).values("organization_id", "status", "kind").annotate(n=Count("*"))
    per_org: dict[int, dict] = {}
    for row in rows:
        entry = per_org.setdefault(
            row["organization_id"],
            {"in_flight": 0, "waiting": dict.fromkeys([*WaitingKind.PHRASES, "none"], 0)},
        )
        if row["status"] == RunStatus.RUNNING:
            entry["in_flight"] += row["n"]
        else:
            entry["waiting"][row["kind"]] += row["n"]
    busiest = sorted(
        per_org, key=lambda pk: -(per_org[pk]["in_flight"] + sum(per_org[pk]["waiting"].values()))
    )
    orgs = Organization.objects.in_bulk(busiest[:max_orgs])
    default = settings.AUTOMATION_MAX_CONCURRENT_RUNS_PER_ORG
    out = [
        {
            "org": orgs[pk].slug,
            "limit": effective_limit(orgs[pk].max_concurrent_runs, default) or 0,
            **per_org[pk],
        }
        for pk in busiest[:max_orgs]
    ]
    rest = busiest[max_orgs:]
    if rest:
        waiting = dict.fromkeys([*WaitingKind.PHRASES, "none"], 0)
        for pk in rest:
            for k, n in per_org[pk]["waiting"].items():
                waiting[k] += n
        out.append(
            {
                "org": "_other",
                "limit": 0,
                "in_flight": sum(per_org[pk]["in_flight"] for pk in rest),
                "waiting": waiting,
            }
        )
    return out


class CapacityCollector:
    """Per organization: runs in flight, the limit in force (0: none) and pending runs by
    waiting reason. Labels are bounded: at most ``AUTOMATION_METRICS_MAX_ORGS`` org slugs
    (the busiest; the rest are summed as ``_other``) times the fixed reasons."""

    def collect(self):
        in_flight = GaugeMetricFamily("automation_org_runs_in_flight", "Runs running now.", labels=["org"])
        limit = GaugeMetricFamily(
            "automation_org_run_limit", "Concurrency limit in force (0: no limit).", labels=["org"]
        )
        waiting = GaugeMetricFamily(
            "automation_org_runs_waiting", "Pending runs by waiting reason.", labels=["org", "reason"]
        )
        for row in capacity_by_org(max_orgs=settings.AUTOMATION_METRICS_MAX_ORGS):
            in_flight.add_metric([row["org"]], row["in_flight"])
            limit.add_metric([row["org"]], row["limit"])
            for reason, n in row["waiting"].items():
                waiting.add_metric([row["org"], reason], n)
        yield from (in_flight, limit, waiting)


class AlertingCollector:
    """The gauges the rules in ``docs/alerts/`` read: each one bounded query on an index."""

    def collect(self):
        from django.db.models import Max, Min
        from django.utils import timezone
        from django_celery_beat.models import PeriodicTask

        from agentpress.agents.models import Agent
        from automation.models import AgentRun, ProviderEvent

        now = timezone.now()
        overdue = AgentRun.objects.filter(status=RunStatus.RUNNING, lease_expires_at__lt=now).count()
        yield GaugeMetricFamily(
            "automation_runs_heartbeat_overdue",
            "Running runs whose lease ran out: their worker stopped heartbeating.",
            value=overdue,
        )
        oldest = AgentRun.objects.filter(status=RunStatus.PENDING, dispatched_at__isnull=False).aggregate(
            at=Min("dispatched_at")
        )["at"]
        yield GaugeMetricFamily(
            "automation_pending_oldest_wait_seconds",
            "How long the oldest run sent to a worker has waited to be claimed (0 when none waits).",
            value=(now - oldest).total_seconds() if oldest else 0,
        )
        finished = GaugeMetricFamily(
            "automation_agent_runs_finished_last_hour",
            "Runs created in the last hour that finished, per agent and terminal status.",
            labels=["agent_id", "status"],
        )
        rows = (
            AgentRun.objects.filter(
                agent_id__in=Agent.objects.values("pk"),
                created_at__gte=now - timedelta(hours=1),
                status__in=[RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.INTERRUPTED],
            )
            .order_by()
            .values("agent_id", "status")
            .annotate(n=Count("*"))
        )
        for row in rows:
            finished.add_metric([str(row["agent_id"]), row["status"]], row["n"])
        yield finished
        piled = (
            ProviderEvent.objects.filter(status=ProviderEventStatus.DEFERRED)
            .order_by()
            .values("agent_id", "context_type", "context_key")
            .annotate(n=Count("*"))
            .aggregate(most=Max("n"))
        )
        yield GaugeMetricFamily(
            "automation_deferred_events_max_per_context",
            "The most provider events deferred behind active work on any one context.",
            value=piled["most"] or 0,
        )
        last = PeriodicTask.objects.filter(name__startswith="automation:", enabled=True).aggregate(
            at=Max("last_run_at")
        )["at"]
        yield GaugeMetricFamily(
            "automation_beat_last_sent_timestamp_seconds",
            "When beat last sent an automation task (Unix time; 0 when it never did).",
            value=last.timestamp() if last else 0,
        )


class QueueDepthCollector:
    """Messages waiting in the Celery queue (Redis broker only; other brokers export nothing)."""

    def collect(self):
        depth = broker.waiting_messages()
        if depth is None:
            return
        queue = broker.queue_names()[0]
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
        registry.register(CapacityCollector())
        registry.register(AlertingCollector())
        registry.register(QueueDepthCollector())
        registry.register(OutlookSubscriptionCollector())
        body += generate_latest(registry)
    return body
