"""``/metrics``: every metric with labels and values that match the database."""

from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from agentpress.ops import metrics
from automation.models import AgentRun
from automation.services import execution, recovery, runs
from automation.states import FollowUpStatus, ProviderEventStatus, RunSource, RunStatus
from tests.factories import (
    ActionFactory,
    AgentRunFactory,
    FollowUpFactory,
    ScheduleFactory,
)


def scrape(client, **headers) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def seed(roster, django_capture_on_commit_callbacks):
    """Runs in every status and source, follow-ups, provider events, schedule misfires."""
    agent, owner = roster.agent, roster.owner
    for status, source, n in [
        (RunStatus.PENDING, RunSource.MANUAL, 2),
        (RunStatus.COMPLETED, RunSource.SCHEDULE, 3),
        (RunStatus.FAILED, RunSource.PROVIDER_EVENT, 1),
        (RunStatus.CANCELLED, RunSource.FOLLOW_UP, 1),
    ]:
        AgentRunFactory.create_batch(n, agent=agent, run_as=owner, status=status, source=source)
    for status, n in [(FollowUpStatus.PENDING, 2), (FollowUpStatus.COMPLETED, 1)]:
        FollowUpFactory.create_batch(n, agent=agent, run_as=owner, status=status)
    action = ActionFactory(agent=agent, run_as=owner)
    for i, status in enumerate([ProviderEventStatus.STARTED, ProviderEventStatus.DEFERRED] * 2):
        action.events.create(
            organization=roster.org, agent=agent, event_id=f"e{i}", status=status, payload={"i": i}
        )
    ScheduleFactory(agent=agent, run_as=owner, missed_count=4, skipped_count=1)
    ScheduleFactory(agent=agent, run_as=owner, missed_count=2, skipped_count=5)

    # Engine activity in this process: one run executed to completion, one recovered.
    with django_capture_on_commit_callbacks(execute=True):
        done = runs.run_create(agent=agent, run_as=owner, source=RunSource.MANUAL, prompt="!reply hi")
    AgentRun.objects.filter(pk=done.pk).update(created_at=timezone.now() - timedelta(seconds=3))
    with django_capture_on_commit_callbacks(execute=True):
        assert execution.execute_run(run_id=done.pk, worker="test/pid:1") == "completed"
    stale = AgentRunFactory(
        agent=agent,
        run_as=owner,
        status=RunStatus.RUNNING,
        source=RunSource.SCHEDULE,
        lease_owner="gone/pid:2",
        lease_token="00000000-0000-0000-0000-000000000001",
        started_at=timezone.now() - timedelta(minutes=5),
        heartbeat_at=timezone.now() - timedelta(minutes=5),
        lease_expires_at=timezone.now() - timedelta(minutes=4),
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert recovery.recover_stale_leases() == 1
    metrics.record_webhook_rejection(reason="bad_signature")
    return done, stale


@pytest.fixture
def before(db):
    """Counters are process-wide: tests compare what a scrape shows against a baseline."""
    from prometheus_client import REGISTRY

    def read(name, **labels):
        return REGISTRY.get_sample_value(name, labels) or 0.0

    return read


def test_metrics_match_the_database_after_seeded_activity(
    roster, client, before, settings, django_capture_on_commit_callbacks
):
    settings.CELERY_BROKER_URL = "filesystem://"  # queue depth is covered with Redis below
    started0 = before("automation_runs_started_total", source="manual")
    finished0 = before("automation_runs_finished_total", status="completed", source="manual")
    interrupted0 = before("automation_runs_finished_total", status="interrupted", source="schedule")
    recoveries0 = before("automation_lease_recoveries_total")
    lag0 = before("automation_run_dispatch_lag_seconds_count", source="manual")
    lag_fast0 = before("automation_run_dispatch_lag_seconds_bucket", source="manual", le="2.0")
    duration0 = before("automation_run_duration_seconds_count", status="completed", source="manual")
    rejected0 = before("automation_webhook_rejections_total", reason="bad_signature")

    seed(roster, django_capture_on_commit_callbacks)
    samples = scrape(client, REMOTE_ADDR="127.0.0.1")

    for status in RunStatus.values:
        for source in RunSource.values:
            expected = AgentRun.objects.filter(status=status, source=source).count()
            assert value(samples, "automation_runs", status=status, source=source) == expected, (
                status,
                source,
            )
    assert value(samples, "automation_runs", status="pending", source="manual") == 2
    assert value(samples, "automation_runs", status="completed", source="manual") == 1
    assert value(samples, "automation_runs", status="interrupted", source="schedule") == 1
    for status, n in {"pending": 2, "completed": 1, "running": 0, "failed": 0, "cancelled": 0}.items():
        assert value(samples, "automation_follow_ups", status=status) == n
    for status in ProviderEventStatus.values:
        expected = {"started": 2, "deferred": 2}.get(status, 0)
        assert value(samples, "automation_provider_events", status=status) == expected
    assert value(samples, "automation_schedule_slots_missed_total") == 6
    assert value(samples, "automation_schedule_slots_skipped_total") == 6

    assert value(samples, "automation_runs_started_total", source="manual") == started0 + 1
    assert (
        value(samples, "automation_runs_finished_total", status="completed", source="manual") == finished0 + 1
    )
    assert (
        value(samples, "automation_runs_finished_total", status="interrupted", source="schedule")
        == interrupted0 + 1
    )
    assert value(samples, "automation_lease_recoveries_total") == recoveries0 + 1
    # created 3 s before its claim: counted in the lag histogram, above the 2 s bucket
    assert value(samples, "automation_run_dispatch_lag_seconds_count", source="manual") == lag0 + 1
    assert (
        value(samples, "automation_run_dispatch_lag_seconds_bucket", source="manual", le="2.0") == lag_fast0
    )
    assert (
        value(samples, "automation_run_duration_seconds_count", status="completed", source="manual")
        == duration0 + 1
    )
    assert value(samples, "automation_webhook_rejections_total", reason="bad_signature") == rejected0 + 1


def test_queue_depth_counts_waiting_celery_messages(db, client, settings):
    import redis

    from tests.support.services import TEST_BROKER_URL, require_redis

    require_redis()
    settings.CELERY_BROKER_URL = TEST_BROKER_URL
    r = redis.Redis.from_url(TEST_BROKER_URL)
    r.delete("celery", "celery\x06\x163")
    r.rpush("celery", "a", "b", "c")
    r.rpush("celery\x06\x163", "d")
    try:
        samples = scrape(client, REMOTE_ADDR="127.0.0.1")
    finally:
        r.delete("celery", "celery\x06\x163")
    assert value(samples, "automation_celery_queue_length", queue="celery") == 4


def test_metrics_are_refused_outside_the_allow_list_without_the_token(db, client, settings):
    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8"]
    settings.METRICS_BEARER_TOKEN = "s3cret"
    assert client.get("/metrics", REMOTE_ADDR="192.168.1.5").status_code == 403
    wrong = client.get("/metrics", REMOTE_ADDR="192.168.1.5", HTTP_AUTHORIZATION="Bearer nope")
    assert wrong.status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    ok = client.get("/metrics", REMOTE_ADDR="192.168.1.5", HTTP_AUTHORIZATION="Bearer s3cret")
    assert ok.status_code == 200 and b"automation_runs" in ok.content


def test_counters_from_several_processes_are_summed_in_multiprocess_mode(db, tmp_path, monkeypatch):
    """Gunicorn workers and Celery prefork children write files the scrape sums."""
    import subprocess
    import sys

    script = (
        "from prometheus_client import Counter;"
        "Counter('automation_runs_started', 'x', ['source']).labels(source='manual').inc()"
    )
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    for _ in range(3):
        subprocess.run([sys.executable, "-c", script], env=env, check=True)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    text = metrics.scrape(include_database=False).decode()
    assert 'automation_runs_started_total{source="manual"} 3.0' in text


def test_in_production_metrics_need_the_token_unless_addresses_are_listed(db, client, settings):
    """Issue 13 defect 14: behind a proxy on the same host every request comes from loopback."""
    import json
    import subprocess
    import sys

    from tests.support.services import ROOT

    script = "import django, json; django.setup(); from django.conf import settings; print(json.dumps(settings.METRICS_ALLOWED_IPS))"
    base = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "agentpress.settings", "SECRET_KEY": "x" * 50}
    allowed = {}
    for name, extra in {
        "production": {},
        "listed": {"METRICS_ALLOWED_IPS": "10.0.0.0/8"},
        "debug": {"DEBUG": "true"},
    }.items():
        out = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, env={**base, **extra}, capture_output=True, text=True
        )
        allowed[name] = json.loads(out.stdout.strip().splitlines()[-1])
    assert allowed == {"production": [], "listed": ["10.0.0.0/8"], "debug": ["127.0.0.1", "::1"]}
    settings.METRICS_ALLOWED_IPS = allowed["production"]
    settings.METRICS_BEARER_TOKEN = "s3cret"
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403
    ok = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_AUTHORIZATION="Bearer s3cret")
    assert ok.status_code == 200
