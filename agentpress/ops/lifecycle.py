"""Worker shutdown: finish running agents within a grace period, then interrupt them loudly.

Celery's warm shutdown (SIGTERM to the main process) stops consuming and waits for the
running tasks. A run's agent may take longer than the orchestrator will wait, so every
process that executes runs keeps a registry of them, and when it learns of the shutdown
it starts ``AUTOMATION_SHUTDOWN_GRACE_SECONDS``. Runs still going when it expires are
interrupted through the ``interrupt`` callable their executor registered with them
(fenced by their lease token) with an error saying the worker shut down, then their
agents are stopped through their cancel events. This module knows no run services: the
executor above it passes in how to interrupt.

How a process learns of the shutdown:
- the main process from Celery's ``worker_shutting_down`` (solo and thread pools run
  tasks there); it forwards SIGTERM to its prefork children, because an orchestrator
  that signals only PID 1 leaves them unaware;
- a prefork child from SIGTERM itself (a process-group signal from systemd, honcho or a
  terminal reaches it directly; billiard's own handler would make it exit on the spot).
  The handler is installed before the child's first task, after billiard set its own.
If the worker is killed outright, nothing here runs: the sweep recovers its runs when
their leases expire.
"""

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from django.utils import timezone

from agentpress.ops import metrics

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActiveRun:
    run_id: object
    lease_token: object
    cancel: threading.Event
    worker: str
    interrupt: Callable[..., bool]  # interrupt(error=...) -> whether the run was still ours


_lock = threading.Lock()
_active: dict[str, ActiveRun] = {}
_shutdown_requested = threading.Event()
_grace_expired = threading.Event()
_last_consumed_at = None


def in_flight() -> list[ActiveRun]:
    """The runs this process is executing now (the heartbeat renews their leases)."""
    with _lock:
        return list(_active.values())


def is_in_flight(run_id) -> bool:
    with _lock:
        return str(run_id) in _active


def note_consumed() -> None:
    """A run's message reached this process (claimed or not): the worker is consuming."""
    global _last_consumed_at
    _last_consumed_at = timezone.now()


def last_consumed_at():
    return _last_consumed_at


def shutting_down() -> bool:
    """True once this process was told to shut down: it must not claim new runs."""
    return _shutdown_requested.is_set()


class guard_run:
    """Context manager around one run's execution: registers it for the shutdown hook.
    ``interrupt(error=...)`` ends the run (fenced by its lease) when the grace runs out."""

    def __init__(
        self, *, run_id, lease_token, cancel: threading.Event, worker: str, interrupt: Callable[..., bool]
    ):
        self.entry = ActiveRun(run_id, lease_token, cancel, worker, interrupt)

    def __enter__(self):
        with _lock:
            _active[str(self.entry.run_id)] = self.entry
            late = _grace_expired.is_set()
        if late:  # claimed after the grace ran out: stop it at once
            _interrupt([self.entry])
        return self

    def __exit__(self, *exc):
        with _lock:
            _active.pop(str(self.entry.run_id), None)
        return False


def begin_shutdown(reason: str) -> None:
    """Start the grace period (once per process); interrupt what is still running after it."""
    if _shutdown_requested.is_set():
        return
    _shutdown_requested.set()
    grace = settings.AUTOMATION_SHUTDOWN_GRACE_SECONDS
    timer = threading.Timer(grace, _grace_ran_out)
    timer.daemon = True
    timer.start()
    logger.info("Shutting down (%s): running agents get %gs to finish", reason, grace)


def _grace_ran_out() -> None:
    with _lock:
        _grace_expired.set()
        running = list(_active.values())
    try:
        _interrupt(running)
    finally:
        connection.close()


def _interrupt(entries: list[ActiveRun]) -> None:
    grace = settings.AUTOMATION_SHUTDOWN_GRACE_SECONDS
    for entry in entries:
        error = (
            f"Worker {entry.worker} shut down (SIGTERM) and the run did not finish within the "
            f"{grace:g}s shutdown grace period (AUTOMATION_SHUTDOWN_GRACE_SECONDS); the agent was stopped."
        )
        try:
            if entry.interrupt(error=error):
                metrics.SHUTDOWN_INTERRUPTIONS.inc()
                logger.warning("Interrupted run %s: its worker is shutting down", entry.run_id)
        except Exception:  # the lease sweep recovers the run if this write fails
            logger.exception("Could not interrupt run %s at shutdown", entry.run_id)
        entry.cancel.set()


def _on_sigterm(signum, frame) -> None:
    begin_shutdown("SIGTERM")


def _on_task_prerun(**kwargs) -> None:
    from billiard.process import current_process

    in_pool_child = current_process()._name != "MainProcess"
    on_main_thread = threading.current_thread() is threading.main_thread()
    if in_pool_child and on_main_thread and signal.getsignal(signal.SIGTERM) is not _on_sigterm:
        signal.signal(signal.SIGTERM, _on_sigterm)


def _on_worker_shutting_down(sig=None, how=None, **kwargs) -> None:
    import os

    from billiard.process import active_children

    for child in active_children():
        try:
            os.kill(child.pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    begin_shutdown(f"{how or 'warm'} shutdown on {sig}")


def _on_worker_ready(**kwargs) -> None:
    port = settings.AUTOMATION_WORKER_METRICS_PORT
    if not port:
        return
    from prometheus_client import start_http_server

    # Counters only: the database gauges are served once, by the web's /metrics.
    start_http_server(port, registry=metrics.process_registry())
    logger.info("Serving worker metrics on port %s", port)


def connect_worker_signals() -> None:
    from celery import signals

    signals.task_prerun.connect(_on_task_prerun, weak=False)
    signals.worker_shutting_down.connect(_on_worker_shutting_down, weak=False)
    signals.worker_ready.connect(_on_worker_ready, weak=False)
