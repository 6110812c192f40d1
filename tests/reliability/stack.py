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
import threading
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


# Admission limits under the scenarios ----------------------------------------------------


def peak_running(intervals, key) -> dict:
    """The most runs running at once per ``key(interval)``; ``intervals`` are
    ``(start, end, organization_id, agent_id)``, ``end`` ``None`` for a run still running.

    A run counts from its ``claimed`` event, written after its claim counted the running
    runs under the admission lock, to its ``completed_at``, taken before the statement that
    ended it: a run admitted into a slot another run freed starts after that run's end, so
    at no instant do more than the limit overlap when the limit held.
    """
    edges = []
    for interval in intervals:
        start, end = interval[0], interval[1]
        edges.append((start, 1, key(interval)))
        if end is not None:
            edges.append((end, 0, key(interval)))  # at the same instant an end comes first
    peak, now = Counter(), Counter()
    for _, starts, group in sorted(edges, key=lambda e: (e[0], e[1])):
        now[group] += 1 if starts else -1
        peak[group] = max(peak[group], now[group])
    return dict(peak)


def running_intervals(run_ids=None) -> list[tuple]:
    """``(claimed at, completed_at, organization_id, agent_id)`` of every claimed run."""
    from automation.models import AgentRun, RunEvent

    claims = RunEvent.objects.filter(kind="claimed")
    if run_ids is not None:
        claims = claims.filter(run_id__in=list(run_ids))
    claimed = dict(claims.values_list("run_id", "at"))
    ends = AgentRun.objects.filter(pk__in=list(claimed)).values_list(
        "pk", "completed_at", "organization_id", "agent_id"
    )
    return [(claimed[pk], end, org, agent) for pk, end, org, agent in ends]


def assert_limits_held(intervals, *, organizations: dict | None = None, agents: dict | None = None) -> dict:
    """No organization or agent ever ran more than its limit (``{id: limit}``); returns the
    peaks (``{"organizations": {id: peak}, "agents": {id: peak}}``).

    A peak may fall short of what the database held at an instant (a run's ``completed_at``
    comes before its end commits): that a limit bound is shown by the runs it held saying
    so (``WaitingSampler``), not by the peak."""
    peaks = {}
    for name, limits, key in (
        ("organizations", organizations or {}, lambda i: i[2]),
        ("agents", agents or {}, lambda i: i[3]),
    ):
        peak = peak_running(intervals, key)
        over = {pk: peak[pk] for pk, limit in limits.items() if peak.get(pk, 0) > limit}
        assert over == {}, f"limit exceeded: peak running {over} over limits {limits}"
        peaks[name] = {pk: peak.get(pk, 0) for pk in limits}
    return peaks


class WaitingSampler(threading.Thread):
    """The waiting reasons of pending runs, sampled while a scenario runs: the scenario
    shows its runs waited with their limit named (``automation.states.waiting_kind``).
    ``sample`` returns the pending runs' reasons now; a failing sample (a restarting
    database) is skipped."""

    def __init__(self, sample=None, every: float = 0.25):
        super().__init__(daemon=True)
        self.sample = sample or _pending_reasons
        self.every = every
        self.kinds: set[str] = set()
        self.reasons: set[str] = set()
        self.stopped = threading.Event()

    def run(self):
        from django.db import connection

        from automation.states import waiting_kind

        try:
            while not self.stopped.wait(self.every):
                try:
                    reasons = set(self.sample())
                except Exception:
                    continue
                self.reasons |= reasons
                self.kinds |= {waiting_kind(r) for r in reasons if r}
        finally:
            connection.close()

    def stop(self) -> set[str]:
        self.stopped.set()
        self.join()
        return self.kinds


def _pending_reasons():
    from automation.models import AgentRun

    return AgentRun.objects.filter(status="pending").values_list("waiting_reason", flat=True).distinct()
