"""Celery signals that start and stop the process heartbeat of a worker.

With the ``threads`` (or ``solo``) pool the runs execute in the main process: its heartbeat
starts when the worker is ready, so an idle worker still beats and shows on the Workers
view. A prefork child starts its own on its first run (``execution.execute_run``).
"""

import os

from automation.worker import heartbeat


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


def _on_worker_shutdown(**kwargs) -> None:
    heartbeat.stop()


def connect_worker_signals() -> None:
    from celery import signals

    signals.worker_ready.connect(_on_worker_ready, weak=False)
    signals.worker_shutdown.connect(_on_worker_shutdown, weak=False)
    signals.worker_process_shutdown.connect(_on_worker_shutdown, weak=False)
