"""``/healthz`` and ``/readyz``: 503 naming the failing check, 200 when all are up."""

import json
import subprocess
import sys
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from tests.support.services import ROOT, TEST_BROKER_URL, child_env, require_postgres, require_redis

CLOSED_PORT_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture
def beat_ticked(db):
    """The periodic tasks registered, and beat having just sent one."""
    call_command("setup_periodic_tasks", stdout=open("/dev/null", "w"))  # noqa: SIM115
    PeriodicTask.objects.filter(name="automation: recover runs").update(last_run_at=timezone.now())


@pytest.fixture
def redis_broker(settings):
    require_redis()
    settings.CELERY_BROKER_URL = TEST_BROKER_URL


def get(client, path):
    response = client.get(path)
    return response.status_code, response.json()


def test_healthz_answers_while_the_process_is_alive(client):
    assert get(client, "/healthz") == (200, {"status": "ok"})


def test_readyz_is_200_when_database_broker_and_beat_are_up(client, beat_ticked, redis_broker):
    require_postgres()
    status, body = get(client, "/readyz")
    assert status == 200, body
    assert body == {"status": "ok", "failing": []}


def test_readyz_names_the_broker_when_it_is_unreachable(client, beat_ticked, settings, caplog):
    settings.CELERY_BROKER_URL = CLOSED_PORT_REDIS
    status, body = get(client, "/readyz")
    assert status == 503
    # the public answer names the check only; what failed (host, port, error) is in the log
    assert body == {"status": "unavailable", "failing": ["broker"]}
    assert "Readiness check broker failing" in caplog.text and "127.0.0.1" not in json.dumps(body)


def test_readyz_names_beat_when_it_stopped_ticking(client, beat_ticked, redis_broker, settings, caplog):
    settings.AUTOMATION_BEAT_STALE_AFTER_SECONDS = 60
    PeriodicTask.objects.filter(name__startswith="automation:").update(
        last_run_at=timezone.now() - timedelta(minutes=5)
    )
    status, body = get(client, "/readyz")
    assert status == 503 and body["failing"] == ["beat"]
    assert "last tick 300s ago" in caplog.text


def test_readyz_names_beat_when_it_never_ran(client, db, redis_broker, caplog):
    status, body = get(client, "/readyz")
    assert status == 503 and body["failing"] == ["beat"]
    assert "setup_periodic_tasks" in caplog.text


def test_readyz_names_the_database_when_it_is_unreachable(db):
    """A separate process whose DATABASE_URL points at a port nothing listens on."""
    require_redis()
    script = (
        "import django, json; django.setup();"
        "from django.test import Client;"
        "r = Client().get('/readyz');"
        "print(json.dumps({'status': r.status_code, 'body': r.json()}))"
    )
    env = child_env(
        DATABASE_URL="postgres://postgres@127.0.0.1:1/unreachable", CELERY_BROKER_URL=TEST_BROKER_URL
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == 503
    assert result["body"] == {"status": "unavailable", "failing": ["database", "beat"]}
    assert "OperationalError" in out.stderr and "OperationalError" not in out.stdout
