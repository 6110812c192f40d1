"""The real process stack the reliability scenarios drive: web, workers, beat, and clients.

Everything talks to the scenario's database and broker only through public interfaces:
HTTP (the API and the webhook endpoint), management commands, and process signals.
"""

import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx

from tests.support import services

WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"reliability-suite-signing-key!!!").decode()


class Stack:
    """Starts and stops the processes of one scenario; ``env`` overrides apply to all of them."""

    def __init__(self, log_dir: Path, **env):
        self.log_dir = log_dir
        self.env = services.child_env(**env)
        self.processes: list[services.Process] = []
        self.base_url = ""

    def manage(self, *args: str, **env) -> str:
        out = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=services.ROOT,
            env={**self.env, **{k: str(v) for k, v in env.items()}},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, f"manage.py {' '.join(args)} failed:\n{out.stderr[-3000:]}"
        return out.stdout

    def _start(self, name: str, argv: list[str], ready: str, **env) -> services.Process:
        proc = services.Process(name, argv, {**self.env, **{k: str(v) for k, v in env.items()}}, self.log_dir)
        self.processes.append(proc)
        proc.wait_for(ready, timeout=60)
        return proc

    def worker(self, name: str = "w1", concurrency: int = 2, **env) -> services.Process:
        return self._start(name, services.celery_worker_argv(concurrency, name), "ready.", **env)

    def beat(self, name: str = "beat", **env) -> services.Process:
        """Register the periodic tasks with this scenario's intervals, then start beat."""
        self.manage("setup_periodic_tasks", **env)
        return self._start(name, services.celery_beat_argv(name), "beat: Starting", **env)

    def web(self, workers: int = 2, threads: int = 8, **env) -> str:
        port = services.free_port()
        self._start("web", services.gunicorn_argv(port, workers, threads), "Booting worker", **env)
        self.base_url = f"http://127.0.0.1:{port}"
        services.wait_until(self._answers, timeout=30, message="gunicorn answering")
        return self.base_url

    def _answers(self) -> bool:
        try:
            return httpx.get(f"{self.base_url}/healthz", timeout=2).status_code < 500
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()


def api_client(base_url: str, token: str, timeout: float = 15) -> httpx.Client:
    return httpx.Client(base_url=base_url, headers={"Authorization": f"Token {token}"}, timeout=timeout)


def signed_delivery(event_id: str, body: dict, secret: str = WEBHOOK_SECRET) -> tuple[bytes, dict]:
    """A Standard Webhooks delivery, signed the way a provider signs it."""
    raw = json.dumps(body).encode()
    timestamp = str(int(time.time()))
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{event_id}.{timestamp}.".encode() + raw, hashlib.sha256).digest()
    headers = {
        "content-type": "application/json",
        "webhook-id": event_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }
    return raw, headers


def post_webhook(client: httpx.Client, action_id, event_id: str | None = None, body: dict | None = None):
    raw, headers = signed_delivery(event_id or f"evt_{uuid.uuid4().hex}", body or {})
    return client.post(f"/hooks/actions/{action_id}/", content=raw, headers=headers)


def execution_counts(run_ids) -> tuple[Counter, Counter]:
    """Per run: how many times a worker claimed it and how many assistant replies it wrote."""
    from agentpress.agents.models import Message
    from automation.models import RunEvent

    claims = Counter(
        RunEvent.objects.filter(run_id__in=run_ids, kind="claimed").values_list("run_id", flat=True)
    )
    replies = Counter(
        Message.objects.filter(run_id__in=run_ids, role="assistant").values_list("run_id", flat=True)
    )
    return claims, replies


def assert_each_executed_once(run_ids) -> None:
    """Nothing lost (every run claimed and replied) and nothing duplicated (exactly once)."""
    run_ids = [uuid.UUID(str(r)) for r in run_ids]
    claims, replies = execution_counts(run_ids)
    assert {r: claims[r] for r in run_ids if claims[r] != 1} == {}, "runs not claimed exactly once"
    assert {r: replies[r] for r in run_ids if replies[r] != 1} == {}, "runs without exactly one reply"
