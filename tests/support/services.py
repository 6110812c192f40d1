"""Real services for the tests: PostgreSQL, Redis and Celery worker/beat processes.

Under ``CI=true`` a missing service fails the test loudly; elsewhere it is skipped with
the reason printed in the summary (``-ra``).
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
from django.db import connection

from tests.settings import TEST_BROKER_URL  # one Redis database per xdist worker

ROOT = Path(__file__).resolve().parents[2]

IN_CI = os.environ.get("CI", "").lower() == "true"


def reachable(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=1):
            return True
    except OSError:
        return False


def require(condition: bool, what: str) -> None:
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{what} is required under CI=true and is not available", pytrace=False)
    pytest.skip(f"{what} is not available")


def require_postgres() -> None:
    require(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL=postgres://…)")


def require_redis() -> None:
    require(reachable(TEST_BROKER_URL), f"Redis at {TEST_BROKER_URL}")


def database_url() -> str:
    """The URL of the test database the current test runs on, for child processes."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    user = s.get("USER") or "postgres"
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}/{s['NAME']}"


def child_env(**overrides) -> dict:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        DATABASE_URL=database_url(),
        CELERY_BROKER_URL=TEST_BROKER_URL,
        PYTHONUNBUFFERED="1",
        AUTOMATION_LEASE_TTL_SECONDS="4",
        AUTOMATION_SWEEP_INTERVAL_SECONDS="1",
        AUTOMATION_TICK_SECONDS="1",
        AUTOMATION_REDISPATCH_AFTER_SECONDS="3",
    )
    env.update({k: str(v) for k, v in overrides.items()})
    env["TEST_CELERY_BROKER_URL"] = env["CELERY_BROKER_URL"]  # tests.settings takes the broker from here
    return env


class Process:
    """A child process in its own process group, with its output kept in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict, log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text()

    def children(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def wait_for(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if self.popen.poll() is not None:
                raise AssertionError(f"{self.name} exited early:\n{self.output()[-3000:]}")
            time.sleep(0.1)
        raise AssertionError(f"{self.name} did not print {text!r} in {timeout}s:\n{self.output()[-3000:]}")

    def kill9(self) -> None:
        """Kill the whole process group at once, as a crash or the OOM killer would."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)

    def terminate(self, timeout: float = 30) -> None:
        if self.popen.poll() is None:
            os.killpg(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill9()

    def stop(self) -> None:
        self.terminate(timeout=10)
        self.log.close()


def flush_test_broker() -> None:
    import redis

    redis.Redis.from_url(TEST_BROKER_URL).flushdb()


def celery_worker_argv(concurrency: int = 2, hostname: str = "w1", pool: str = "threads") -> list[str]:
    """The Procfile's worker (the ``threads`` pool), with ``concurrency`` runs in flight."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "agentpress",
        "worker",
        "-P",
        # Celery's CLI cannot tell an explicit ``-P prefork`` from its own default and lets the
        # configured ``worker_pool`` (threads) win; ``processes`` is prefork by its other name.
        "processes" if pool == "prefork" else pool,
        "-c",
        str(concurrency),
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-Q",  # one process runs everything here; the Procfile gives maintenance its own
        "celery,automation.maintenance",
        "-n",
        f"{hostname}@%h",
        "-l",
        "info",
    ]


def celery_beat_argv(name: str = "beat") -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "agentpress",
        "beat",
        "-l",
        "info",
        "-s",
        f"/tmp/{name}-{os.getpid()}-schedule",
        "--scheduler",
        "django_celery_beat.schedulers:DatabaseScheduler",
    ]


def wait_until(predicate, timeout: float = 30, interval: float = 0.1, message: str = "condition"):
    """Poll ``predicate`` (closing the DB connection between polls is not needed: autocommit reads)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gunicorn_argv(port: int, workers: int = 2, threads: int = 4) -> list[str]:
    """The production web server as the Procfile starts it, on ``port``."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "agentpress.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        "gthread",
        "--threads",
        str(threads),
        "--timeout",
        "60",
    ]
