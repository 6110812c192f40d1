"""Shared pieces of the benchmarks: child processes, timing, and the fixture org."""

import os
import statistics
import sys
import time
from pathlib import Path

from tests.support import services

LOG_DIR = Path(services.ROOT) / "var" / "bench" / "logs"


def child_env(**overrides) -> dict:
    env = dict(os.environ)
    env.update(DJANGO_SETTINGS_MODULE="tests.settings", PYTHONUNBUFFERED="1", LOG_LEVEL="WARNING")
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def start(name: str, argv: list[str], ready: str, **env) -> services.Process:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    proc = services.Process(name, argv, child_env(**env), LOG_DIR)
    proc.wait_for(ready, timeout=90)
    return proc


def worker(
    name: str, concurrency: int = 2, app: str = "agentpress", queue: str = "", pool: str = "prefork", **env
):
    """A celery worker at log level warning (no line per task, as in production): the
    Procfile's ``threads`` pool (our app: ready once its heartbeat wrote its row) or prefork."""
    argv = services.celery_worker_argv(concurrency, name, pool=pool)
    argv[argv.index("agentpress")] = app
    argv[argv.index("-l") + 1] = "warning"
    if queue:
        argv += ["-Q", queue]
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    proc = services.Process(name, argv, child_env(**env), LOG_DIR)
    # at level warning nothing says "ready": wait for the pool, then for the consumer loop
    try:
        if pool == "threads":
            from automation.models import Worker

            services.wait_until(
                lambda: Worker.objects.filter(name__startswith=f"{name}@").exists(), timeout=60, message=name
            )
        else:
            services.wait_until(
                lambda: len(proc.children()) >= concurrency, timeout=60, message=f"{name} pool"
            )
    except AssertionError:
        proc.stop()
        raise
    time.sleep(2)
    return proc


def start_quiet(name: str, argv: list[str], **env) -> services.Process:
    """A process whose readiness the caller checks by what it does."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    return services.Process(name, argv, child_env(**env), LOG_DIR)


def python() -> str:
    return sys.executable


def median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 2)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    begin = time.perf_counter()
    value = fn(*args, **kwargs)
    return time.perf_counter() - begin, value


def fixture_org(slug: str = "bench"):
    """An org with an owner, a member and a scripted agent (created once per database)."""
    from django.contrib.auth.models import User

    from agentpress.agents.models import Agent
    from agentpress.orgs.models import MANAGE_ACTIONS, Membership, Organization, Role

    org, _ = Organization.objects.get_or_create(
        slug=slug, defaults={"name": slug, "automations_enabled": True}
    )
    owner, _ = User.objects.get_or_create(username=f"{slug}-owner")
    member, _ = User.objects.get_or_create(username=f"{slug}-member")
    Membership.objects.get_or_create(organization=org, user=owner, defaults={"role": Role.OWNER})
    Membership.objects.get_or_create(
        organization=org, user=member, defaults={"role": Role.MEMBER, "permissions": [MANAGE_ACTIONS]}
    )
    agent, _ = Agent.objects.get_or_create(
        organization=org,
        name="Bench agent",
        defaults={"runtime": "scripted", "scheduled_runs_enabled": True, "self_reschedule_enabled": True},
    )
    return org, owner, member, agent
