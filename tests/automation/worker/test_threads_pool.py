"""The threads pool starts its threads at boot (issue 14): a burst of runs is not slowed by
a thousand thread starts, each made while the consumer waits and each walking every live
thread's shutdown lock."""

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from automation.worker.signals import GC_THRESHOLDS, prestart_threads


def test_prestarted_threads_take_a_burst_without_starting_more():
    executor = ThreadPoolExecutor(max_workers=40)
    try:
        prestart_threads(executor, 40)
        assert len(executor._threads) == 40
        burst = threading.Barrier(40, timeout=30)  # every task holds its thread until all run
        for future in [executor.submit(burst.wait) for _ in range(40)]:
            future.result()
        assert len(executor._threads) == 40
    finally:
        executor.shutdown()


def test_a_thread_already_busy_leaves_the_rest_to_start_as_before(monkeypatch):
    monkeypatch.setattr("automation.worker.signals.PRESTART_SECONDS", 0.5)
    executor = ThreadPoolExecutor(max_workers=4)
    busy = threading.Event()
    try:
        held = executor.submit(busy.wait, 30)
        prestart_threads(executor, 4)  # three can start: the barrier of four gives up, no hang
        assert len(executor._threads) == 4
        busy.set()
        held.result()
    finally:
        executor.shutdown()


@pytest.mark.celery_worker
def test_the_worker_has_its_threads_when_it_is_ready(worker_pool):
    proc = worker_pool("wthreads", concurrency=60)
    assert "Started 60 threads for runs in flight" in proc.output()
    assert f"Garbage collection thresholds {GC_THRESHOLDS} for runs in flight" in proc.output()
    assert len(os.listdir(f"/proc/{proc.pid}/task")) > 60


def test_the_pools_threads_share_one_result_backend_object():
    """Celery keeps a result backend per thread unless told it is thread-safe: a worker with a
    thousand threads built a thousand (disabled) backends, one per first task of a thread."""
    import threading

    from agentpress.celery import app

    first = app.backend  # as the worker's first task makes it
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(app.backend)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(backend is first for backend in seen)
