"""``make bench``: every benchmark with its baseline measured in the same invocation.

Uses a dedicated database (``BENCH_DATABASE``, default ``agentpress_bench``) on the server
named by ``DATABASE_URL`` (default ``postgres://postgres@127.0.0.1:5432/``), created here
and dropped afterwards, and the Redis database ``BENCH_CELERY_BROKER_URL`` (default
``redis://127.0.0.1:6379/14``), which is flushed. Prints a table and writes JSON under
``var/bench/``. ``--only 1,3`` runs a subset.
"""

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import psycopg

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = {
    "1": "tests.benchmarks.throughput",
    "2": "tests.benchmarks.latency",
    "3": "tests.benchmarks.scheduler",
    "5": "tests.benchmarks.ingest",
    "6": "tests.benchmarks.fairness",
    "7": "tests.benchmarks.inflight",
    "4": "tests.benchmarks.read_path",  # the 1M-row load goes last: nothing after it pays for it
}


def database_urls() -> tuple[str, str]:
    """(maintenance DSN, bench database URL) on the server of ``DATABASE_URL``."""
    server = urlparse(os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres")
    if not server.scheme.startswith("postgres"):
        sys.exit("make bench needs PostgreSQL: set DATABASE_URL=postgres://…")
    name = os.environ.get("BENCH_DATABASE", "agentpress_bench")
    return server._replace(scheme="postgresql", path="/postgres").geturl(), server._replace(
        path=f"/{name}"
    ).geturl()


def recreate(maintenance: str, name: str, create: bool) -> None:
    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            conn.execute(f'CREATE DATABASE "{name}"')


def print_table(rows: list[dict]) -> None:
    headers = ("benchmark", "figure", "value", "baseline", "baseline_value", "ratio", "goal", "met")
    cells = [[str(r.get(h, "")) if r.get(h) is not None else "" for h in headers] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print("\n" + line + "\n" + "-" * len(line))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated benchmark numbers")
    chosen = [n for n in BENCHMARKS if n in parser.parse_args().only.split(",")]

    maintenance, bench_url = database_urls()
    name = urlparse(bench_url).path.lstrip("/")
    recreate(maintenance, name, create=True)
    os.environ["DATABASE_URL"] = bench_url
    broker_url = os.environ.get("BENCH_CELERY_BROKER_URL", "redis://127.0.0.1:6379/14")
    # tests.settings (also read by the child processes) takes the broker from TEST_CELERY_BROKER_URL
    os.environ["CELERY_BROKER_URL"] = os.environ["TEST_CELERY_BROKER_URL"] = broker_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    os.environ.setdefault("CONN_MAX_AGE", "600")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)

    import django
    import redis

    django.setup()
    from django.core.management import call_command
    from django.db import connections

    broker = redis.Redis.from_url(os.environ["CELERY_BROKER_URL"])
    rows: list[dict] = []
    began = time.monotonic()
    try:
        call_command("migrate", verbosity=0)
        for number in chosen:
            broker.flushdb()
            module = __import__(BENCHMARKS[number], fromlist=["run"])
            start = time.monotonic()
            print(f"benchmark {number} ({module.__name__}) …", flush=True)
            args = (bench_url,) if number == "1" else ()
            try:
                found = module.run(*args)
            except Exception as exc:  # one broken benchmark must not hide the others' figures
                found = [{"benchmark": number, "figure": f"FAILED: {type(exc).__name__}: {exc}"}]
            for row in found:
                row["seconds_spent"] = round(time.monotonic() - start, 1)
            rows += found
            print(f"  done in {time.monotonic() - start:.0f}s", flush=True)
    finally:
        connections.close_all()
        broker.flushdb()
        recreate(maintenance, name, create=False)

    print_table(rows)
    out = ROOT / "var" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    report = {"at": stamp, "total_seconds": round(time.monotonic() - began, 1), "results": rows}
    for path in (out / f"{stamp}.json", out / "latest.json"):
        path.write_text(json.dumps(report, indent=2, default=str))
    print(f"\nwritten to var/bench/{stamp}.json in {report['total_seconds']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
