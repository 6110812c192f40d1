"""Benchmark 1: end-to-end runs per second against bare Celery and a raw SKIP LOCKED loop.

All three drain a backlog: the work is queued first, then the consumers start. The clock
runs from the first item taken to the last one done, read from what the work itself left
(the runs' ``started_at`` and ``completed_at``; the queue's length, sampled every
millisecond, for bare Celery), so that a worker's start-up and the wait for it to be
ready count in neither figure. (Timing from "the worker is up", as before, gave whatever
the worker had drained during its readiness wait away for free: bare Celery read
1,180–10,372 tasks/s on one machine.)
"""

import collections
import multiprocessing
import threading
import time

import psycopg
import redis
from django.conf import settings
from django.db.models import Max, Min

from tests.benchmarks import common
from tests.support import services
from tests.support.concurrency import run_concurrently

RUNS = 1000
THREADS = 16  # the threads pool: runs in flight in one process (the Procfile's model)
NOOPS = 3000
RAW_JOBS = 5000


def drained_rate() -> float:
    """Runs per second from the first run's start to the last one's completion."""
    from automation.models import AgentRun

    span = AgentRun.objects.aggregate(first=Min("started_at"), last=Max("completed_at"))
    return RUNS / (span["last"] - span["first"]).total_seconds()


def backlog() -> list[str]:
    """``RUNS`` new manual runs (no others left), each sending ``execute_run`` on commit."""
    from automation.models import AgentRun
    from automation.services.runs import run_create
    from automation.states import RunSource

    AgentRun.objects.all().delete()
    _, owner, _, agent = common.fixture_org()
    return [
        str(run_create(agent=agent, run_as=owner, source=RunSource.MANUAL, prompt=f"!reply {n}").pk)
        for n in range(RUNS)
    ]


def our_engine(pool: str, concurrency: int) -> float:
    from automation.models import AgentRun
    from automation.states import RunStatus

    backlog()  # no worker is up yet
    proc = common.worker(f"bench-engine-{pool}", concurrency=concurrency, pool=pool)
    try:
        services.wait_until(
            lambda: AgentRun.objects.filter(status=RunStatus.COMPLETED).count() >= RUNS,
            timeout=600,
            interval=0.05,
            message="runs completed",
        )
    finally:
        proc.stop()
    return drained_rate()


def without_celery(threads: int) -> float:
    """The same claims and completions with no broker and no worker process: ``threads``
    threads of this process call ``execute_run`` on a backlog of runs, timed as ``our_engine``
    is. What it does not cost is the Celery worker's share (its consumer, messages, acks)."""
    from automation.services import execution

    waiting = collections.deque(backlog())
    redis.Redis.from_url(settings.CELERY_BROKER_URL).delete("celery")  # their messages: no one reads them

    def drain() -> None:
        while waiting:
            try:
                run_id = waiting.popleft()  # atomic: each run goes to one thread
            except IndexError:
                return
            execution.execute_run(run_id=run_id, worker="bench-in-process")

    run_concurrently(drain, copies=threads)
    return drained_rate()


def statements_per_run() -> tuple[int, int]:
    """Round trips of one manual run from create to completed, in this process: (all, claim)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from automation.services import execution, runs
    from automation.states import RunSource

    _, owner, _, agent = common.fixture_org()
    with CaptureQueriesContext(connection) as captured:
        run = runs.run_create(agent=agent, run_as=owner, source=RunSource.MANUAL, prompt="!reply count")
        outcome = execution.execute_run(run_id=run.pk, worker="bench-count")
    assert outcome == "completed", outcome
    other = runs.run_create(agent=agent, run_as=owner, source=RunSource.MANUAL, prompt="!reply claim")
    with CaptureQueriesContext(connection) as claim:
        runs.claim_run(run_id=other.pk, worker="bench-count")
    runs.AgentRun.objects.filter(pk__in=[run.pk, other.pk]).delete()
    return len(captured), len(claim)


def bare_celery() -> float:
    from tests.benchmarks import noop_app

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.delete("bench_noop")
    for _ in range(NOOPS):
        noop_app.noop.delay()
    first_taken, emptied = threading.Event(), threading.Event()
    times: dict[str, float] = {}

    def sample() -> None:  # the queue's length every millisecond, from before the worker starts
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            left = client.llen("bench_noop")
            if left < NOOPS and not first_taken.is_set():
                times["first"], times["left"] = time.perf_counter(), left
                first_taken.set()
            if left == 0:
                times["last"] = time.perf_counter()
                emptied.set()
                return
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    proc = common.worker(
        "bench-noop", concurrency=2, app="tests.benchmarks.noop_app", queue="bench_noop", pool="prefork"
    )
    try:
        assert emptied.wait(600), "the no-op queue was not drained"
    finally:
        proc.stop()
    # the messages taken between the two samples; the queue is empty once the last one is
    # reserved, when at most one per process is still running (prefetch 1): a no-op's time
    return times["left"] / (times["last"] - times["first"])


def _raw_worker(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=False) as conn:
        while True:
            with conn.transaction():
                row = conn.execute(
                    "UPDATE bench_jobs SET status = 'running' WHERE id = ("
                    " SELECT id FROM bench_jobs WHERE status = 'pending' ORDER BY id"
                    " FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING id"
                ).fetchone()
            if row is None:
                return
            with conn.transaction():
                conn.execute("UPDATE bench_jobs SET status = 'done' WHERE id = %s", row)


def raw_skip_locked(dsn: str) -> float:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_jobs")
        conn.execute("CREATE TABLE bench_jobs (id bigserial PRIMARY KEY, status text NOT NULL)")
        conn.execute("CREATE INDEX ON bench_jobs (id) WHERE status = 'pending'")
        conn.execute(f"INSERT INTO bench_jobs (status) SELECT 'pending' FROM generate_series(1, {RAW_JOBS})")
        conn.execute("ANALYZE bench_jobs")
    procs = [multiprocessing.Process(target=_raw_worker, args=(dsn,)) for _ in range(2)]
    begin = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - begin
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE bench_jobs")
    return RAW_JOBS / elapsed


def run(dsn: str) -> list[dict]:
    statements, claim = statements_per_run()
    prefork = our_engine("prefork", 2)
    threads = our_engine("threads", THREADS)
    alone = without_celery(THREADS)
    celery_rate = bare_celery()
    raw = raw_skip_locked(dsn)
    return [
        {
            "benchmark": "1 throughput",
            "figure": "runs/s end to end (1 worker, prefork × 2)",
            "value": round(prefork, 1),
            "baseline": "bare Celery no-op tasks/s (prefork × 2)",
            "baseline_value": round(celery_rate, 1),
            "ratio": round(prefork / celery_rate, 3),
            "goal": "ratio >= 0.4",
            "met": prefork / celery_rate >= 0.4,
        },
        {
            "benchmark": "1 throughput",
            "figure": f"runs/s end to end (1 worker, the Procfile's threads pool × {THREADS})",
            "value": round(threads, 1),
            "baseline": "bare Celery no-op tasks/s (prefork × 2)",
            "baseline_value": round(celery_rate, 1),
            "ratio": round(threads / celery_rate, 3),
            "goal": "ratio >= 0.4",
            "met": threads / celery_rate >= 0.4,
        },
        {
            "benchmark": "1 throughput",
            "figure": f"runs/s claimed and completed by {THREADS} threads of one process, no Celery",
            "value": round(alone, 1),
            "baseline": "bare Celery no-op tasks/s (prefork × 2)",
            "baseline_value": round(celery_rate, 1),
            "ratio": round(alone / celery_rate, 3),
            "goal": "",
            "met": None,
        },
        {
            "benchmark": "1 throughput",
            "figure": "runs/s end to end (1 worker, prefork × 2)",
            "value": round(prefork, 1),
            "baseline": "raw PostgreSQL SKIP LOCKED claim+complete jobs/s (2 workers)",
            "baseline_value": round(raw, 1),
            "ratio": round(prefork / raw, 3),
            "goal": "",
            "met": None,
        },
        {
            "benchmark": "1 throughput",
            "figure": "round trips per manual run, create to completed (outside the agent)",
            "value": statements,
            "baseline": "of which the claim (claim_run)",
            "baseline_value": claim,
            "ratio": None,
            "goal": "<= 6",
            "met": statements <= 6,
        },
    ]
