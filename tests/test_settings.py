"""Settings defaults: nothing set → SQLite + filesystem broker; env → PostgreSQL + Redis; deploy checks."""

import json
import subprocess
import sys

import pytest

from tests.support.services import ROOT

pytestmark = pytest.mark.sqlite

PRINT = (
    "import json, django; from django.conf import settings; django.setup();"
    "print(json.dumps({'engine': settings.DATABASES['default']['ENGINE'], 'name': str(settings.DATABASES['default']['NAME']),"
    "'broker': settings.CELERY_BROKER_URL, 'debug': settings.DEBUG, 'hosts': settings.ALLOWED_HOSTS,"
    "'ssl': settings.SECURE_SSL_REDIRECT, 'hsts': settings.SECURE_HSTS_SECONDS}))"
)


def settings_with(env: dict) -> subprocess.CompletedProcess:
    base = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "agentpress.settings"}
    return subprocess.run(
        [sys.executable, "-c", PRINT], cwd=ROOT, env={**base, **env}, capture_output=True, text=True
    )


def test_embedded_default_is_sqlite_and_filesystem_broker():
    out = json.loads(settings_with({"DEBUG": "true"}).stdout)
    assert out["engine"] == "django.db.backends.sqlite3" and out["name"].endswith("var/agentpress.sqlite3")
    assert out["broker"] == "filesystem://" and out["debug"] is True
    assert "127.0.0.1" in out["hosts"] and out["ssl"] is False


def test_environment_selects_postgres_and_redis():
    out = json.loads(
        settings_with(
            {
                "SECRET_KEY": "x" * 50,
                "DATABASE_URL": "postgres://u:p@db:5432/agentpress",
                "CELERY_BROKER_URL": "redis://redis:6379/0",
                "ALLOWED_HOSTS": "runs.example.com",
            }
        ).stdout
    )
    assert out["engine"] == "django.db.backends.postgresql" and out["name"] == "agentpress"
    assert out["broker"] == "redis://redis:6379/0"
    assert out["debug"] is False and out["hosts"] == ["runs.example.com"]
    assert out["ssl"] is True and out["hsts"] >= 31536000


def test_production_refuses_to_start_without_a_secret_key():
    result = settings_with({})
    assert result.returncode != 0 and "SECRET_KEY must be set" in result.stderr


def test_check_deploy_is_clean_with_production_env():
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "agentpress.settings",
        "SECRET_KEY": "a-long-random-production-secret-key-with-enough-entropy-1234567890-ABCDEFG",
        "ALLOWED_HOSTS": "runs.example.com",
        "DATABASE_URL": "sqlite:////tmp/agentpress-deploy-check.sqlite3",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
