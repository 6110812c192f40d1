"""Benchmark 6, fairness: a tenant's burst must not starve the others, nor idle a slot.

Organization A queues ``BENCH_FAIRNESS_A_RUNS`` runs (default 5,000, the issue's size: about
21 minutes for both variants; set it lower for a quicker look) of 1 s
each, then organization B queues 20 runs of 1 s, one per second, on the Procfile's worker
command (the ``threads`` pool) with ``-c BENCH_FAIRNESS_CONCURRENCY`` slots (default 8: with
the Procfile's 2, B's arrival of one 1 s run per second is its whole fair share of 1 slot,
and no order can keep its latency bounded). Reported:
B's dispatch latency (created → started) p50 / p99, the utilisation of the worker slots
while A's backlog lasts, and A's completion time (first create → last completion). The
baseline in the same invocation is the same load with admission off (each message claims
its own run, in broker order: FIFO). With admission on, both organizations get a limit
equal to the slots, so the limit path (its locks and wake-ups) runs without binding.
"""

import os
import threading
import time

from django.db import connection

from tests.benchmarks import common
from tests.support import services

A_RUNS = int(os.environ.get("BENCH_FAIRNESS_A_RUNS", "5000"))
B_RUNS = 20
CONCURRENCY = int(os.environ.get("BENCH_FAIRNESS_CONCURRENCY", "8"))
PROMPT = "!sleep 1\n!reply done"


def _orgs():
    from automation.models import AgentRun

    AgentRun.objects.all().delete()
    a = common.fixture_org("fair-a")
    b = common.fixture_org("fair-b")
    return a, b


def _create(agent, owner) -> None:
    from automation.services import runs

    runs.run_create(agent=agent, run_as=owner, source="manual", prompt=PROMPT)


def _procfile_worker(name: str, **env) -> services.Process:
    """The Procfile's worker (the ``threads`` pool) with ``CONCURRENCY`` slots, at log level
    warning; it is ready when its process heartbeat registered it (``Worker`` row)."""
    from automation.models import Worker

    argv = services.celery_worker_argv(CONCURRENCY, name, pool="threads")
    argv[argv.index("-l") + 1] = "warning"
    proc = common.start_quiet(name, argv, **env)
    try:
        services.wait_until(
            lambda: Worker.objects.filter(name__startswith=f"{name}@", stopped_at__isnull=True).exists(),
            timeout=60,
            message=f"{name} ready",
        )
    except AssertionError:
        proc.stop()
        raise
    return proc


def _pass(admission_on: bool) -> dict:
    from agentpress.orgs.models import Organization
    from automation.models import AgentRun

    (org_a, owner_a, _, agent_a), (org_b, owner_b, _, agent_b) = _orgs()
    limit = CONCURRENCY if admission_on else None
    Organization.objects.filter(pk__in=[org_a.pk, org_b.pk]).update(max_concurrent_runs=limit)
    env = {"AUTOMATION_ADMISSION_ENABLED": "true" if admission_on else "false"}
    proc = _procfile_worker(f"bench-fair-{'on' if admission_on else 'off'}", **env)
    try:
        for _ in range(A_RUNS):
            _create(agent_a, owner_a)

        def trickle():
            try:
                for _ in range(B_RUNS):
                    _create(agent_b, owner_b)
                    time.sleep(1)
            finally:
                connection.close()

        feeder = threading.Thread(target=trickle)
        feeder.start()
        feeder.join()
        services.wait_until(
            lambda: AgentRun.objects.filter(completed_at__isnull=False).count() >= A_RUNS + B_RUNS,
            timeout=(A_RUNS + B_RUNS) * 3 / CONCURRENCY + 120,
            interval=1,
            message="every run of A and B completed",
        )
    finally:
        proc.stop()
    rows = list(AgentRun.objects.values_list("organization_id", "created_at", "started_at", "completed_at"))
    a = [r for r in rows if r[0] == org_a.pk]
    b = [r for r in rows if r[0] == org_b.pk]
    latency = [(started - created).total_seconds() for _, created, started, _ in b]
    window_start = min(started for _, _, started, _ in a)
    window_end = max(started for _, _, started, _ in a)  # A's backlog lasts until its last run starts
    busy = sum(
        max(0.0, (min(done, window_end) - max(started, window_start)).total_seconds())
        for _, _, started, done in rows
    )
    span = (window_end - window_start).total_seconds()
    return {
        "b_p50": common.percentile(latency, 0.5),
        "b_p99": common.percentile(latency, 0.99),
        "utilisation": busy / (CONCURRENCY * span) if span > 0 else 0.0,
        "a_completion": (max(r[3] for r in a) - min(r[1] for r in a)).total_seconds(),
    }


def run() -> list[dict]:
    fifo = _pass(admission_on=False)
    fair = _pass(admission_on=True)
    size = f"A {A_RUNS} runs, B {B_RUNS} runs, {CONCURRENCY} slots"
    figures = [
        ("B dispatch latency p50 (s)", "b_p50", None, None),
        ("B dispatch latency p99 (s)", "b_p99", "≤ 2 s", lambda v, base: v <= 2),
        ("slot utilisation during A's backlog", "utilisation", "≥ 0.95", lambda v, base: v >= 0.95),
        ("A completion time (s)", "a_completion", "≤ 1.05 × FIFO", lambda v, base: v <= 1.05 * base),
    ]
    rows = []
    for label, key, goal, met in figures:
        value, base = fair[key], fifo[key]
        rows.append(
            {
                "benchmark": "6 fairness",
                "figure": f"{label}, {size}",
                "value": round(value, 3),
                "baseline": "admission off (FIFO), same load",
                "baseline_value": round(base, 3),
                "ratio": round(value / base, 2) if base else None,
                "goal": goal,
                "met": met(value, base) if met else None,
            }
        )
    return rows
