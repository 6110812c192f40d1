"""SIGTERM to a real ``celery worker`` while a scripted run sleeps."""

import time

import pytest

from automation.models import AgentRun
from automation.services import runs
from automation.states import RunSource, RunStatus
from tests.support.services import wait_until

pytestmark = pytest.mark.celery_worker


def start_sleeping_run(roster, seconds: int):
    run = runs.run_create(
        agent=roster.agent,
        run_as=roster.owner,
        source=RunSource.MANUAL,
        prompt=f"!sleep {seconds}\n!reply done",
    )
    wait_until(
        lambda: AgentRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).exists(), message="run running"
    )
    return run


def test_a_run_shorter_than_the_grace_period_completes(roster, worker_pool):
    worker = worker_pool(AUTOMATION_SHUTDOWN_GRACE_SECONDS=15)
    run = start_sleeping_run(roster, 6)
    signalled = time.monotonic()
    worker.terminate(timeout=30)
    assert worker.popen.returncode == 0, worker.output()[-3000:]
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED, run.last_error
    assert time.monotonic() - signalled < 15
    assert run.thread.messages.filter(role="assistant", content="done").exists()


def test_a_run_longer_than_the_grace_period_is_interrupted_saying_the_worker_shut_down(roster, worker_pool):
    worker = worker_pool(AUTOMATION_SHUTDOWN_GRACE_SECONDS=2)
    run = start_sleeping_run(roster, 6)
    owner = AgentRun.objects.get(pk=run.pk).lease_owner
    signalled = time.monotonic()
    worker.terminate(timeout=30)
    elapsed = time.monotonic() - signalled
    run.refresh_from_db()
    assert run.status == RunStatus.INTERRUPTED
    assert f"Worker {owner} shut down" in run.last_error and "2s shutdown grace period" in run.last_error
    assert elapsed < 6, "the worker waited for the agent instead of stopping it at the end of the grace"
    kinds = list(run.events.values_list("kind", flat=True))
    assert kinds[-2:] == ["worker_shutdown", "agent_stopped"]
    assert not run.thread.messages.filter(content="done").exists()


def test_sigterm_to_the_main_process_only_reaches_the_running_agent(roster, worker_pool):
    """Orchestrators that signal only PID 1 (Kubernetes, Docker): the main process forwards it."""
    import os
    import signal

    worker = worker_pool(AUTOMATION_SHUTDOWN_GRACE_SECONDS=2)
    run = start_sleeping_run(roster, 8)
    os.kill(worker.pid, signal.SIGTERM)
    worker.popen.wait(timeout=30)
    run.refresh_from_db()
    assert run.status == RunStatus.INTERRUPTED and "shut down" in run.last_error
