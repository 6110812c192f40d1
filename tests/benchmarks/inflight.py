"""Benchmark 6: in-flight capacity of one worker process.

N = 1,000 runs, each waiting W = 10 s on a local stub of an OpenAI-compatible endpoint (a
small HTTP server that answers a chat completion after W seconds), executed through the real
``openai`` runtime on the Procfile's worker. Measured: the peak number of runs ``running`` at
once, the time from the first create to the last completion against the ideal (W + the time
it took to create the runs), the peak PostgreSQL connections the worker held, its peak RSS
and RSS per in-flight run. Baseline in the same invocation: the prefork pool with
concurrency 2 on N = 20, extrapolated per run.
"""

import asyncio
import json
import os
import shlex
import sys
import threading
import time
import uuid
from pathlib import Path

from tests.benchmarks import common
from tests.support import services

N, W = 1000, 10.0
CREATE_BATCH = 100
BASELINE_N, BASELINE_CONCURRENCY = 20, 2
ENDPOINT = "stub"


class StubModel(threading.Thread):
    """An OpenAI-compatible chat-completions endpoint that answers every request after ``wait`` s."""

    def __init__(self, wait: float):
        super().__init__(daemon=True)
        self.wait = wait
        self.port = services.free_port()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.answered = 0

    def run(self):
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port, backlog=4096)
        )
        self.ready.set()
        self.loop.run_forever()

    async def _serve(self, reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                await reader.readexactly(length)
                await asyncio.sleep(self.wait)
                body = json.dumps(
                    {
                        "id": f"chatcmpl-{uuid.uuid4().hex}",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": "stub-model",
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": "stop",
                                "message": {"role": "assistant", "content": "done waiting"},
                            }
                        ],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
                    }
                ).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
                self.answered += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def start_serving(self) -> "StubModel":
        self.start()
        self.ready.wait(10)
        return self

    def close(self):
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)


def procfile_worker_argv(name: str, process: str = "worker") -> list[str]:
    """A worker line of the Procfile (``worker`` or ``maintenance``), run with this
    interpreter, quiet, under ``name``."""
    line = next(
        raw.split(":", 1)[1]
        for raw in (services.ROOT / "Procfile").read_text().splitlines()
        if raw.startswith(f"{process}:")
    )
    argv = shlex.split(line)
    assert argv[0] == "celery"
    argv = [sys.executable, "-m", *argv]
    argv[argv.index("-l") + 1] = "warning"
    if "-n" in argv:
        del argv[argv.index("-n") : argv.index("-n") + 2]
    return [*argv, "-n", f"{name}@%h"]


def rss_kib(pid: int) -> int:
    """Resident memory of a process and its children (a prefork pool's processes)."""
    total = 0
    out = services.subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    for p in [pid, *map(int, out.split())]:
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except FileNotFoundError:
            continue
        total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process (and its reaped children) used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def wait_until_idle(pids: list[int], *, window: float = 1.0, busy: float = 0.05, timeout: float = 60) -> None:
    """Until the processes together used at most ``busy`` of a core over ``window`` seconds:
    their start (imports, connections, the first tick) is over."""
    deadline = time.monotonic() + timeout
    before = sum(cpu_seconds(p) for p in pids)
    while time.monotonic() < deadline:
        time.sleep(window)
        now = sum(cpu_seconds(p) for p in pids)
        if now - before <= busy * window:
            return
        before = now
    raise AssertionError(f"processes {pids} still busy after {timeout:g} s")


class Sampler(threading.Thread):
    """Peak runs running, worker connections and worker RSS, sampled every 0.25 s."""

    def __init__(self, pid: int, app_name: str):
        super().__init__(daemon=True)
        self.pid, self.app_name = pid, app_name
        self.stop = threading.Event()
        self.running = self.connections = self.rss = 0
        self.cpu = 0.0

    def run(self):
        from django.db import connection

        from automation.models import AgentRun
        from automation.states import RunStatus

        try:
            while not self.stop.wait(0.25):
                self.running = max(self.running, AgentRun.objects.filter(status=RunStatus.RUNNING).count())
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [self.app_name]
                    )
                    self.connections = max(self.connections, cursor.fetchone()[0])
                self.rss = max(self.rss, rss_kib(self.pid))
                self.cpu = cpu_seconds(self.pid)
        finally:
            connection.close()


def _create(agent, owner, n: int) -> list:
    """``n`` manual runs, stored ``CREATE_BATCH`` at a time through the engine's batch path
    (``runs_create``: the path schedule firing and provider events take), each batch sent to
    the broker when it commits. The benchmark measures the worker, not one creating thread."""
    from django.db import transaction

    from automation.services.runs import run_build, runs_create
    from automation.states import RunSource

    ids = []
    for start in range(0, n, CREATE_BATCH):
        batch = [
            run_build(agent=agent, run_as=owner, source=RunSource.MANUAL, prompt=f"wait {i}")
            for i in range(start, min(n, start + CREATE_BATCH))
        ]
        with transaction.atomic():
            ids += [run.pk for run in runs_create(batch)]
    assert len(ids) == n, f"{n - len(ids)} runs were refused"
    return ids


def _measure(stub: StubModel, n: int, name: str, argv: list[str], **env) -> dict:
    from django.db.models import Count, Max, Min, Sum

    from agentpress.agents.models import Agent
    from automation.models import AgentRun, ModelCall, Worker
    from automation.states import RunStatus

    org, owner, _, _ = common.fixture_org()
    agent = Agent.objects.create(
        organization=org,
        name=f"In-flight {uuid.uuid4().hex[:6]}",
        runtime="openai",
        runtime_config={"endpoint": ENDPOINT, "model": "stub-model"},
    )
    app_name = f"bench-inflight-{uuid.uuid4().hex[:8]}"
    proc = common.start_quiet(
        name,
        argv,
        PGAPPNAME=app_name,
        OPENAI_API_KEY="bench-not-a-key",
        # priced, so that each call's usage row and the run's totals carry a cost (issue 17)
        AUTOMATION_MODEL_ENDPOINTS=json.dumps(
            {
                ENDPOINT: {
                    "base_url": f"http://127.0.0.1:{stub.port}/v1",
                    "input_price_per_million": 0.15,
                    "output_price_per_million": 0.6,
                }
            }
        ),
        **env,
    )
    # beat, as in production: its sweep re-sends a run whose message found the run briefly
    # locked by its own creation (issue 14 item 5) instead of leaving it pending for good
    services.subprocess.run(
        [common.python(), "manage.py", "setup_periodic_tasks"], cwd=services.ROOT, env=common.child_env(),
        check=True, capture_output=True,
    )  # fmt: skip
    beat = common.start_quiet(f"{name}-beat", services.celery_beat_argv(f"{name}-beat"))
    maintenance = common.start_quiet(
        f"{name}-maintenance", procfile_worker_argv(f"{name}-maintenance", "maintenance")
    )
    sampler = Sampler(proc.pid, app_name)
    try:
        services.wait_until(
            lambda: Worker.objects.filter(name__startswith=f"{name}@").exists() or len(proc.children()) >= 2,
            timeout=90,
            message=f"{name} ready",
        )
        # the consumer loop starts after the pool; beat and the maintenance worker boot
        # meanwhile: measure once all three are idle, not while they import and connect
        wait_until_idle([proc.pid, beat.pid, maintenance.pid])
        sampler.start()
        begin = time.perf_counter()
        ids = _create(agent, owner, n)
        created = time.perf_counter() - begin
        services.wait_until(
            lambda: (
                AgentRun.objects.filter(
                    pk__in=ids, status__in=[RunStatus.COMPLETED, RunStatus.FAILED]
                ).count()
                >= n
            ),
            timeout=W * n + 300,
            interval=0.25,
            message="every in-flight run ended",
        )
        total = time.perf_counter() - begin
    finally:
        sampler.stop.set()
        sampler.join(5)
        proc.stop()
        beat.stop()
        maintenance.stop()
    failed = AgentRun.objects.filter(pk__in=ids, status=RunStatus.FAILED)
    usage = ModelCall.objects.filter(run_id__in=ids, outcome="ok").aggregate(
        calls=Count("id"), cost=Sum("cost")
    )
    priced = AgentRun.objects.filter(pk__in=ids, cost__gt=0).count()
    span = AgentRun.objects.filter(pk__in=ids).aggregate(first=Min("created_at"), last=Max("started_at"))
    return {
        "total": total,
        "created": created,
        "last_started": (span["last"] - span["first"]).total_seconds(),
        "peak_running": sampler.running,
        "connections": sampler.connections,
        "rss_mib": sampler.rss / 1024,
        "cpu_per_run_ms": 1000 * sampler.cpu / n,
        "failed": failed.count(),
        "model_calls": usage["calls"],
        "priced_runs": priced,
        "first_error": (failed.values_list("last_error", flat=True).first() or "")[:200],
    }


def run() -> list[dict]:
    stub = StubModel(W).start_serving()
    try:
        ours = _measure(
            stub, N, "bench-inflight", procfile_worker_argv("bench-inflight"), AUTOMATION_WORKER_CONCURRENCY=N
        )
        prefork = services.celery_worker_argv(BASELINE_CONCURRENCY, "bench-prefork", pool="prefork")
        prefork[prefork.index("-l") + 1] = "warning"
        base = _measure(stub, BASELINE_N, "bench-prefork", prefork)
    finally:
        stub.close()
    ideal = W + ours["created"]
    base_per_run = base["total"] / BASELINE_N
    base_in_flight = max(1, base["peak_running"])
    figure = "6 in-flight capacity"
    rows = [
        {
            "benchmark": figure,
            "figure": f"peak runs running at once (N={N}, W={W:g} s)",
            "value": ours["peak_running"],
            "baseline": f"prefork -c {BASELINE_CONCURRENCY}, N={BASELINE_N}",
            "baseline_value": base["peak_running"],
            "ratio": round(ours["peak_running"] / base_in_flight, 1),
            "goal": f">= {N}",
            "met": ours["peak_running"] >= N,
        },
        {
            "benchmark": figure,
            "figure": f"first create → last completion (s); ideal W + create = {ideal:.1f}",
            "value": round(ours["total"], 1),
            "baseline": f"prefork extrapolated to N={N} (s)",
            "baseline_value": round(base_per_run * N, 1),
            "ratio": round(ours["total"] / ideal, 3),
            "goal": "ratio <= 1.25",
            "met": ours["total"] <= 1.25 * ideal,
        },
        {
            "benchmark": figure,
            "figure": "first create → last run started (s): how fast the worker takes runs",
            "value": round(ours["last_started"], 1),
            "baseline": f"prefork -c {BASELINE_CONCURRENCY}, N={BASELINE_N} (s)",
            "baseline_value": round(base["last_started"], 1),
            "ratio": None,
            "goal": "",
            "met": None,
        },
        {
            "benchmark": figure,
            "figure": "peak PostgreSQL connections held by the worker",
            "value": ours["connections"],
            "baseline": f"prefork -c {BASELINE_CONCURRENCY}",
            "baseline_value": base["connections"],
            "ratio": None,
            "goal": "<= 30",
            "met": ours["connections"] <= 30,
        },
        {
            "benchmark": figure,
            "figure": "worker CPU per run (ms, user + system): one process is one core at most",
            "value": round(ours["cpu_per_run_ms"], 2),
            "baseline": f"prefork -c {BASELINE_CONCURRENCY}, main process only (ms per run)",
            "baseline_value": round(base["cpu_per_run_ms"], 2),
            "ratio": None,
            "goal": "",
            "met": None,
        },
        {
            "benchmark": figure,
            "figure": "worker peak RSS (MiB)",
            "value": round(ours["rss_mib"], 1),
            "baseline": f"prefork -c {BASELINE_CONCURRENCY}, main + pool processes (MiB)",
            "baseline_value": round(base["rss_mib"], 1),
            "ratio": None,
            "goal": "",
            "met": None,
        },
        {
            "benchmark": figure,
            "figure": "worker RSS per in-flight run (MiB)",
            "value": round(ours["rss_mib"] / max(1, ours["peak_running"]), 3),
            "baseline": "prefork RSS per in-flight run (MiB)",
            "baseline_value": round(base["rss_mib"] / base_in_flight, 1),
            "ratio": None,
            "goal": "",
            "met": None,
        },
        {
            "benchmark": figure,
            "figure": "usage recording on: model-call rows with usage; runs whose totals carry a cost",
            "value": f"{ours['model_calls']}; {ours['priced_runs']}",
            "baseline": f"prefork -c {BASELINE_CONCURRENCY}, N={BASELINE_N}",
            "baseline_value": f"{base['model_calls']}; {base['priced_runs']}",
            "ratio": None,
            "goal": f"= {N}; {N}",
            "met": ours["model_calls"] == N and ours["priced_runs"] == N,
        },
    ]
    for name, result in (("ours", ours), ("baseline", base)):
        if result["failed"]:
            rows.append(
                {
                    "benchmark": figure,
                    "figure": f"FAILED runs ({name}): {result['failed']}: {result['first_error']}",
                }
            )
    return rows
