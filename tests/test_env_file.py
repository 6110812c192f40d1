"""`make run` writes a local .env so the README's commands work in a plain shell afterwards,
and the test suite never reads a developer's .env."""

import os
import re
import subprocess
import sys

from tests.support.services import ROOT


def clean_env(**extra) -> dict:
    """The environment of a fresh shell: none of the settings the tests or `make run` export."""
    dropped = (
        "DEBUG",
        "SECRET_KEY",
        "DATABASE_URL",
        "CELERY_BROKER_URL",
        "ALLOWED_HOSTS",
        "AGENTPRESS_ENV_FILE",
    )
    env = {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("MAKE")}
    env.update(DJANGO_SETTINGS_MODULE="agentpress.settings", **extra)
    return env


def check(env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_generated_env_file_lets_manage_py_run_without_debug_in_the_environment(tmp_path):
    env_file = tmp_path / ".env"
    env = clean_env(AGENTPRESS_ENV_FILE=str(env_file), AGENTPRESS_VAR_DIR=str(tmp_path))
    # without it, a command fails as the issue reported
    refused = check(env)
    assert refused.returncode != 0 and "SECRET_KEY must be set" in refused.stderr

    made = subprocess.run(
        ["make", "-s", "env-file"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert made.returncode == 0, made.stderr
    text = env_file.read_text()
    assert re.search(r"^DEBUG=true$", text, re.M)
    secret = re.search(r"^SECRET_KEY=(\S+)$", text, re.M).group(1)
    assert len(secret) >= 50
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"

    passed = check(env)
    assert passed.returncode == 0, passed.stderr
    assert "System check identified no issues" in passed.stdout

    # written once: a second `make run` keeps the secret (sessions and tokens stay valid)
    subprocess.run(["make", "-s", "env-file"], cwd=ROOT, env=env, check=True, timeout=60)
    assert env_file.read_text() == text


def test_an_empty_env_file_setting_writes_and_reads_nothing(tmp_path):
    env = clean_env(AGENTPRESS_ENV_FILE="", AGENTPRESS_VAR_DIR=str(tmp_path))
    made = subprocess.run(
        ["make", "-s", "env-file"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert made.returncode == 0 and made.stdout == ""
    assert "SECRET_KEY must be set" in check(env).stderr


def test_the_test_settings_read_no_env_file():
    from django.conf import settings

    assert os.environ["AGENTPRESS_ENV_FILE"] == "" and settings.ENV_FILE == ""


def test_readme_commands_are_the_ones_that_work_after_make_run():
    readme = (ROOT / "README.md").read_text()
    commands = readme.split("## Commands", 1)[1].split("\n## ", 1)[0]
    for command in ("seed_demo", "start_run", "setup_periodic_tasks", "drf_create_token"):
        assert f"`.venv/bin/python manage.py {command}" in commands, command
    assert "`make run` writes" in commands and ".env" in commands
