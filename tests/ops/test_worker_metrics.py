"""A real prefork worker's counters, summed over its pool processes and served on its port."""

import socket
import urllib.request

import pytest

from automation.models import AgentRun
from automation.services import runs
from automation.states import RunSource, RunStatus
from tests.support.services import wait_until

pytestmark = pytest.mark.celery_worker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_worker_serves_counters_from_all_its_pool_processes(roster, worker_pool, tmp_path):
    port = free_port()
    worker = worker_pool(
        concurrency=2,
        pool="prefork",
        PROMETHEUS_MULTIPROC_DIR=tmp_path / "prom",
        AUTOMATION_WORKER_METRICS_PORT=port,
    )
    assert len(worker.children()) >= 2, "a prefork pool: one process per slot"
    made = [
        runs.run_create(
            agent=roster.agent, run_as=roster.owner, source=RunSource.MANUAL, prompt="!sleep 1\n!reply x"
        )
        for _ in range(4)
    ]
    ids = [r.pk for r in made]
    wait_until(
        lambda: AgentRun.objects.filter(pk__in=ids, status=RunStatus.COMPLETED).count() == 4,
        message="runs done",
    )
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert 'automation_runs_started_total{source="manual"} 4.0' in text
    assert 'automation_runs_finished_total{source="manual",status="completed"} 4.0' in text
    assert "automation_runs{" not in text  # the database gauges are the web's
    pids = {r.lease_owner.split("pid:")[1] for r in AgentRun.objects.filter(pk__in=ids)}
    assert len(list((tmp_path / "prom").glob("counter_*.db"))) >= len(pids)
