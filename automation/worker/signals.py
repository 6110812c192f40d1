"""Celery signals that start and stop the process heartbeat of a worker.

With the ``threads`` (or ``solo``) pool the runs execute in the main process: its heartbeat
starts when the worker is ready, so an idle worker still beats and shows on the Workers
view. A prefork child starts its own on its first run (``execution.execute_run``).
"""

import contextlib
import gc
import logging
import os
import threading

from automation.worker import heartbeat

logger = logging.getLogger(__name__)

# How long the threads pool's threads may take to start at boot (they start in well under a second).
PRESTART_SECONDS = 30
# The garbage collector's thresholds in a process of the threads pool. Python's defaults (a
# young collection every 700 allocations, a full one every 100 of those) cost a worker
# holding a thousand runs about a tenth of its CPU, three quarters of it in full collections
# that walk every live object with the GIL held while the consumer, the claims and the
# heartbeat wait (bench 7: 1.0 s in 1,045 collections, 0.8 s of it full, for 1,000 runs;
# with these, 0.2 s in 14 and none full, the same peak RSS). Cycles are still collected.
GC_THRESHOLDS = (50_000, 20, 20)


def worker_name(hostname: str | None) -> str:
    """The ``lease_owner`` a process writes on the runs it claims, and its ``Worker`` row's name."""
    return f"{hostname or 'worker'}/pid:{os.getpid()}"


def _on_worker_ready(sender=None, **kwargs) -> None:
    controller = getattr(sender, "controller", None)
    pool = getattr(controller, "pool_cls", None)
    pool_name = pool if isinstance(pool, str) else getattr(pool, "__module__", "")
    if "prefork" in pool_name:
        return
    heartbeat.ensure_started(
        worker=worker_name(sender.hostname), concurrency=controller.concurrency, when_idle=True
    )
    executor = getattr(controller.pool, "executor", None)  # the threads pool's ThreadPoolExecutor
    if executor is not None:
        prestart_threads(executor, controller.concurrency)
        gc.set_threshold(*GC_THRESHOLDS)
        logger.info("Garbage collection thresholds %s for runs in flight", gc.get_threshold())


def prestart_threads(executor, count: int) -> None:
    """Start ``count`` threads of ``executor`` now, idle, instead of one per message of the
    first burst. ``ThreadPoolExecutor`` starts a thread on a submit that finds none idle, and
    the consumer waits for it to start; each start also walks every live thread's shutdown
    lock (``threading._maintain_shutdown_locks``), so a burst of a thousand runs paid for a
    thousand starts at its slowest. If something else holds a thread meanwhile, the rest
    start lazily as before."""
    arrived = threading.Barrier(count, timeout=PRESTART_SECONDS)

    def hold():
        with contextlib.suppress(threading.BrokenBarrierError):
            arrived.wait()

    for future in [executor.submit(hold) for _ in range(count)]:
        future.result()
    logger.info("Started %s threads for runs in flight", count)


def _on_worker_shutdown(**kwargs) -> None:
    heartbeat.stop()


def connect_worker_signals() -> None:
    from celery import signals

    signals.worker_ready.connect(_on_worker_ready, weak=False)
    signals.worker_shutdown.connect(_on_worker_shutdown, weak=False)
    signals.worker_process_shutdown.connect(_on_worker_shutdown, weak=False)
