"""Benchmark 3: one ``fire_due_schedules`` tick with 1,000 due among 1k/10k/100k schedules,
against django-celery-beat's ``DatabaseScheduler`` loading the same number of PeriodicTasks."""

from datetime import timedelta

from django.db import connection
from django.utils import timezone

from tests.benchmarks import common

SIZES = (1_000, 10_000, 100_000)
DUE = 1_000


def _fill_schedules(total: int, org, owner, agent) -> None:
    from automation.models import Schedule

    now = timezone.now()
    have = Schedule.objects.count()
    batch = []
    for n in range(have, total):
        batch.append(
            Schedule(
                organization=org,
                agent=agent,
                run_as=owner,
                name=f"bench {n}",
                cadence="interval",
                interval_minutes=60,
                run_at=now - timedelta(days=1),
                timezone="UTC",
                instructions="!reply tick",
                next_run_at=now + timedelta(hours=1, seconds=n % 3600),
            )
        )
        if len(batch) == 5000:
            Schedule.objects.bulk_create(batch)
            batch = []
    Schedule.objects.bulk_create(batch)


def _make_due() -> None:
    """Exactly DUE schedules are due, the rest wait an hour; runs of earlier ticks are gone."""
    from automation.models import AgentRun, Schedule

    AgentRun.objects.filter(schedule__isnull=False).delete()
    now = timezone.now()
    Schedule.objects.filter(next_run_at__lte=now + timedelta(minutes=59)).update(
        next_run_at=now + timedelta(hours=1)
    )
    due = list(Schedule.objects.order_by("id").values_list("id", flat=True)[:DUE])
    Schedule.objects.filter(id__in=due).update(next_run_at=now - timedelta(seconds=1), last_run_at=None)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE agent_run_schedules")


def _fill_periodic_tasks(total: int) -> None:
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    every, _ = IntervalSchedule.objects.get_or_create(every=60, period=IntervalSchedule.SECONDS)
    have = PeriodicTask.objects.filter(name__startswith="bench ").count()
    rows = [
        PeriodicTask(name=f"bench {n}", task="bench.noop", interval=every, queue="bench_noop")
        for n in range(have, total)
    ]
    PeriodicTask.objects.bulk_create(rows, batch_size=5000)


def _load_beat_schedule() -> float:
    from django_celery_beat.schedulers import DatabaseScheduler

    from agentpress.celery import app

    scheduler = DatabaseScheduler(app=app, lazy=True)
    seconds, entries = common.timed(scheduler.all_as_schedule)
    assert len(entries) >= 1
    return seconds


def run() -> list[dict]:
    from automation.services.schedules import fire_due_schedules

    org, owner, _, agent = common.fixture_org()
    ticks, loads = {}, {}
    for size in SIZES:
        _fill_schedules(size, org, owner, agent)
        samples = []
        for _ in range(2):  # the better of two: a tick creates 1,000 runs, each sample costs seconds
            _make_due()
            seconds, started = common.timed(fire_due_schedules)
            assert started == DUE, started
            samples.append(seconds)
        ticks[size] = min(samples)
        _fill_periodic_tasks(size)
        loads[size] = sorted(_load_beat_schedule() for _ in range(3))[1]
    rows = []
    for size in SIZES:
        rows.append(
            {
                "benchmark": "3 scheduler scale",
                "figure": f"fire_due_schedules tick, {DUE} due of {size:,} (s)",
                "value": round(ticks[size], 3),
                "baseline": f"DatabaseScheduler load of {size:,} PeriodicTasks (s)",
                "baseline_value": round(loads[size], 3),
                "ratio": round(ticks[size] / loads[size], 3),
                "goal": "",
                "met": None,
            }
        )
    for size in SIZES:
        rate = DUE / ticks[size]
        rows.append(
            {
                "benchmark": "3 scheduler scale",
                "figure": f"schedule slots fired per second, {DUE} due of {size:,}",
                "value": round(rate, 1),
                "baseline": f"DatabaseScheduler load of {size:,} PeriodicTasks (s)",
                "baseline_value": round(loads[size], 3),
                "ratio": None,
                "goal": ">= 2,000 at 100,000 schedules" if size == SIZES[-1] else "",
                "met": rate >= 2000 if size == SIZES[-1] else None,
            }
        )
    flat = ticks[SIZES[-1]] / ticks[SIZES[0]]
    rows.append(
        {
            "benchmark": "3 scheduler scale",
            "figure": f"tick time {SIZES[-1]:,} / {SIZES[0]:,}",
            "value": round(flat, 3),
            "baseline": f"DatabaseScheduler load {SIZES[-1]:,} / {SIZES[0]:,}",
            "baseline_value": round(loads[SIZES[-1]] / loads[SIZES[0]], 3),
            "ratio": round(flat / (loads[SIZES[-1]] / loads[SIZES[0]]), 3),
            "goal": "tick ratio < 1.5",
            "met": flat < 1.5,
        }
    )
    return rows
