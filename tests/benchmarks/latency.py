"""Benchmark 2: dispatch latency, due time → ``started_at``, for schedules and follow-ups.

Measured at the default tick (5 s) and at a 1 s tick, against django-celery-beat sending
one-off clocked PeriodicTasks at their due time to a bare Celery worker.
"""

import time
from datetime import timedelta

import redis
from django.conf import settings
from django.utils import timezone

from tests.benchmarks import common
from tests.support import services

ITEMS = 60  # of each kind
SPREAD = 30  # seconds over which the due times are spread
LEAD = 12  # seconds between creating the rows and the first due time (processes start)


def _seed(now):
    from automation.models import FollowUp, Schedule

    org, owner, _, agent = common.fixture_org()
    Schedule.objects.bulk_create(
        Schedule(
            organization=org,
            agent=agent,
            run_as=owner,
            name=f"latency {n}",
            cadence="interval",
            interval_minutes=60,
            run_at=now - timedelta(hours=2),
            timezone="UTC",
            instructions="!reply tick",
            next_run_at=now + timedelta(seconds=LEAD + n * SPREAD / ITEMS),
        )
        for n in range(ITEMS)
    )
    FollowUp.objects.bulk_create(
        FollowUp(
            organization=org,
            agent=agent,
            run_as=owner,
            context_type="bench",
            context_key=f"L-{n}",
            continuation_prompt="!reply later",
            scheduled_for=now + timedelta(seconds=LEAD + n * SPREAD / ITEMS),
        )
        for n in range(ITEMS)
    )


def _ours(tick: float) -> dict[str, list[float]]:
    from django_celery_beat.models import PeriodicTask

    from automation.models import AgentRun, FollowUp, Schedule

    AgentRun.objects.all().delete()
    Schedule.objects.all().delete()
    FollowUp.objects.all().delete()
    PeriodicTask.objects.all().delete()
    env = {"AUTOMATION_TICK_SECONDS": tick}
    services.subprocess.run(
        [common.python(), "manage.py", "setup_periodic_tasks"], cwd=services.ROOT, env=common.child_env(**env), check=True,
        capture_output=True,
    )  # fmt: skip
    _seed(timezone.now())
    procs = []
    try:
        procs.append(common.worker("bench-latency", concurrency=2, **env))
        procs.append(common.start_quiet("bench-beat", services.celery_beat_argv("bench-beat"), **env))
        services.wait_until(
            lambda: AgentRun.objects.filter(started_at__isnull=False).count() >= 2 * ITEMS,
            timeout=LEAD + SPREAD + 60,
            interval=0.5,
            message="every schedule and follow-up started",
        )
    finally:
        for proc in procs:
            proc.stop()
    late = {"schedule": [], "follow-up": []}
    for run in AgentRun.objects.select_related("follow_up"):
        if run.schedule_id:
            late["schedule"].append((run.started_at - run.scheduled_for).total_seconds())
        else:
            late["follow-up"].append((run.started_at - run.follow_up.scheduled_for).total_seconds())
    return late


def _celery_beat_clocked() -> list[float]:
    from django_celery_beat.models import ClockedSchedule, PeriodicTask

    PeriodicTask.objects.all().delete()
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.delete("bench_stamps", "bench_noop")
    now = timezone.now()
    for n in range(ITEMS):
        due = now + timedelta(seconds=LEAD + n * SPREAD / ITEMS)
        PeriodicTask.objects.create(
            name=f"clocked {n}",
            task="bench.stamp",
            clocked=ClockedSchedule.objects.create(clocked_time=due),
            one_off=True,
            args=f"[{due.timestamp()}]",
            queue="bench_noop",
        )
    procs = []
    try:
        procs.append(
            common.worker(
                "bench-stamp",
                concurrency=2,
                app="tests.benchmarks.noop_app",
                queue="bench_noop",
                pool="prefork",
            )
        )
        procs.append(
            common.start_quiet("bench-beat-clocked", services.celery_beat_argv("bench-beat-clocked"))
        )
        services.wait_until(
            lambda: client.llen("bench_stamps") >= ITEMS, timeout=LEAD + SPREAD + 60, interval=0.5
        )
    finally:
        for proc in procs:
            proc.stop()
    PeriodicTask.objects.all().delete()
    return [float(x) for x in client.lrange("bench_stamps", 0, -1)]


def run() -> list[dict]:
    baseline = _celery_beat_clocked()
    b50, b99 = common.percentile(baseline, 0.5), common.percentile(baseline, 0.99)
    rows = []
    for tick in (settings.AUTOMATION_TICK_SECONDS, 1):
        late = _ours(tick)
        for kind, samples in late.items():
            for q, goal, base in ((0.5, 1, b50), (0.99, 3, b99)):
                value = common.percentile(samples, q)
                rows.append(
                    {
                        "benchmark": "2 dispatch latency",
                        "figure": f"{kind} due → started, p{int(q * 100)}, tick {tick:g} s (s)",
                        "value": round(value, 3),
                        "baseline": f"celery-beat clocked one-off → task start, p{int(q * 100)} (s)",
                        "baseline_value": round(base, 3),
                        "ratio": round(value / base, 2) if base > 0 else None,
                        "goal": f"< {goal} s",
                        "met": value < goal,
                    }
                )
        time.sleep(0.1)
    return rows
