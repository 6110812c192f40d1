"""Benchmark 5: signed webhook events accepted per second by gunicorn (as the Procfile starts
it: 2 gthread workers) over loopback, with p99 latency, against a trivial view (``/healthz``)
on the same server."""

import multiprocessing
import time
import uuid

import httpx

from tests.benchmarks import common
from tests.support import services

SECONDS = 10
CLIENTS = 4


def _client(base_url: str, path: str, signed: bool, until: float, out) -> None:
    from tests.reliability.stack import signed_delivery

    latencies = []
    with httpx.Client(base_url=base_url, timeout=30) as client:
        while time.time() < until:
            begin = time.perf_counter()
            if signed:
                raw, headers = signed_delivery(
                    f"evt_{uuid.uuid4().hex}", {"ticket": {"id": uuid.uuid4().hex}}
                )
                answer = client.post(path, content=raw, headers=headers)
                ok = answer.status_code == 202
            else:
                ok = client.get(path).status_code == 200
            if ok:
                latencies.append(time.perf_counter() - begin)
    out.put(latencies)


def _load(base_url: str, path: str, signed: bool) -> tuple[float, float]:
    queue = multiprocessing.Queue()
    until = time.time() + SECONDS
    procs = [
        multiprocessing.Process(target=_client, args=(base_url, path, signed, until, queue))
        for _ in range(CLIENTS)
    ]
    for p in procs:
        p.start()
    latencies = [x for _ in procs for x in queue.get()]
    for p in procs:
        p.join()
    return len(latencies) / SECONDS, common.percentile(latencies, 0.99)


def run() -> list[dict]:
    from automation.models import Action
    from tests.reliability.stack import WEBHOOK_SECRET

    org, owner, _, agent = common.fixture_org()
    action = Action.objects.create(
        organization=org,
        agent=agent,
        name="bench hook",
        signing_secret=WEBHOOK_SECRET,
        run_as=owner,
        instructions="!reply handled",
        context_type="ticket",
        context_key_pointer="/ticket/id",
    )
    port = services.free_port()
    web = common.start("bench-web", services.gunicorn_argv(port, workers=2), "Booting worker")
    base = f"http://127.0.0.1:{port}"
    try:
        services.wait_until(lambda: _up(base), timeout=30)
        trivial, trivial_p99 = _load(base, "/healthz", signed=False)
        rate, p99 = _load(base, f"/hooks/actions/{action.pk}/", signed=True)
    finally:
        web.stop()
    return [
        {
            "benchmark": "5 webhook ingest",
            "figure": "signed events accepted/s (gunicorn 2 gthread workers, 4 clients)",
            "value": round(rate, 1),
            "baseline": "trivial view /healthz requests/s, same server",
            "baseline_value": round(trivial, 1),
            "ratio": round(rate / trivial, 3),
            "goal": ">= 500 events/s",
            "met": rate >= 500,
        },
        {
            "benchmark": "5 webhook ingest",
            "figure": "signed event p99 latency (ms)",
            "value": round(p99 * 1000, 1),
            "baseline": "trivial view p99 latency (ms)",
            "baseline_value": round(trivial_p99 * 1000, 1),
            "ratio": round(p99 / trivial_p99, 2),
            "goal": "<= 100 ms",
            "met": p99 * 1000 <= 100,
        },
    ]


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
