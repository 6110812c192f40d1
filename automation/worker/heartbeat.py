"""One heartbeat per worker process: one statement renews every lease the process holds.

Every ``LEASE_TTL / 4`` the heartbeat thread takes the runs in flight in this process
(``lifecycle.in_flight()``), renews all their leases with ``RENEW_LEASES`` — each row
only where its ``lease_token`` still matches and it is still ``running`` — and sets the
cancel event of every run the statement did not return: it was cancelled or recovered,
and its agent stops within that interval. A beat that comes more than two intervals after
the previous one is put on each renewed run's timeline as a ``heartbeat_gap``. The same
beat upserts this process's ``Worker`` row (the console's Workers view, and the "connected
but not consuming" gauge of ``/metrics``).

The thread has its own database connection, outside the pool the agents' threads share,
opened for each beat and closed after it: a thousand busy agents never make it wait, and
between beats it holds nothing.
"""

import copy
import logging
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager

from django.conf import settings
from django.db import connections
from django.db.utils import load_backend
from django.utils import timezone

from agentpress.ops import lifecycle
from automation.models import AgentRun, RunEvent, Worker
from automation.states import RunStatus

logger = logging.getLogger(__name__)

ALIAS = "automation_heartbeat"
# Runs renewed per statement; a process holds AUTOMATION_WORKER_CONCURRENCY at most.
CHUNK = 1000

RENEW_LEASES = """
    UPDATE agent_runs SET heartbeat_at = %s, lease_expires_at = %s
    WHERE status = %s AND (id, lease_token) IN (VALUES {pairs})
    RETURNING id
"""


def renew_leases(conn, entries: list[lifecycle.ActiveRun], now) -> set[str]:
    """Renew every lease in ``entries`` in one statement (per ``CHUNK``); the ids renewed."""
    pk = AgentRun._meta.pk
    token = AgentRun._meta.get_field("lease_token")
    expires = now + timezone.timedelta(seconds=settings.AUTOMATION_LEASE_TTL_SECONDS)
    renewed: set[str] = set()
    with conn.cursor() as cursor:
        for start in range(0, len(entries), CHUNK):
            chunk = entries[start : start + CHUNK]
            params = [
                conn.ops.adapt_datetimefield_value(now),
                conn.ops.adapt_datetimefield_value(expires),
                RunStatus.RUNNING.value,
            ]
            for entry in chunk:
                params += [
                    pk.get_db_prep_value(uuid.UUID(str(entry.run_id)), conn),
                    token.get_db_prep_value(uuid.UUID(str(entry.lease_token)), conn),
                ]
            cursor.execute(RENEW_LEASES.format(pairs=", ".join(["(%s, %s)"] * len(chunk))), params)
            renewed |= {str(uuid.UUID(str(row[0]))) for row in cursor.fetchall()}
    return renewed


@contextmanager
def private_connection():
    """A connection of this thread alone, for one beat: the default database without the pool."""
    settings_dict = copy.deepcopy(connections["default"].settings_dict)
    settings_dict.get("OPTIONS", {}).pop("pool", None)
    connections[ALIAS] = conn = load_backend(settings_dict["ENGINE"]).DatabaseWrapper(
        settings_dict, alias=ALIAS
    )
    try:
        yield conn
    finally:
        conn.close()


class ProcessHeartbeat(threading.Thread):
    """The heartbeat of one worker process (see the module docstring)."""

    def __init__(
        self, *, worker: str, concurrency: int, interval: float | None = None, when_idle: bool = True
    ):
        super().__init__(name="automation-heartbeat", daemon=True)
        self.worker = worker
        self.concurrency = concurrency
        self.when_idle = when_idle  # a worker beats while idle too: its Worker row stays live
        self.interval = interval or settings.AUTOMATION_LEASE_TTL_SECONDS / 4
        self.finished = threading.Event()
        self._last_beat: dict[str, float] = {}  # run id → when its lease was last renewed

    def run(self):
        while True:
            try:
                self.beat()
            except Exception:  # the database blipped: the next beat tries again, leases permitting
                logger.exception("Heartbeat of %s failed", self.worker)
            if self.finished.wait(self.interval):
                return

    def beat(self) -> set[str]:
        """Renew every lease of the process; stop the agents of the runs it no longer holds."""
        entries = lifecycle.in_flight()
        if not entries and not self.when_idle:
            return set()
        with private_connection() as conn:
            now, clock = timezone.now(), time.monotonic()
            renewed = renew_leases(conn, entries, now) if entries else set()
            lost = set()
            for entry in entries:
                run_id = str(entry.run_id)
                if run_id not in renewed and lifecycle.is_in_flight(run_id):
                    lost.add(run_id)
                    entry.cancel.set()
                    logger.warning(
                        "Run %s is no longer ours (cancelled or recovered): stopping its agent", run_id
                    )
            self._record_gaps(renewed, clock)
            self._upsert_worker(now, in_flight=len(entries) - len(lost))
        return lost

    def _record_gaps(self, renewed: set[str], clock: float) -> None:
        """A renewal later than two intervals is put on the run's timeline: its lease came close to expiring."""
        previous, self._last_beat = self._last_beat, {run_id: clock for run_id in renewed}
        gaps = [
            RunEvent(
                run_id=run_id,
                kind="heartbeat_gap",
                detail={"seconds": round(clock - previous[run_id], 1), "expected": self.interval},
            )
            for run_id in renewed
            if run_id in previous and clock - previous[run_id] > 2 * self.interval
        ]
        if gaps:
            RunEvent.objects.using(ALIAS).bulk_create(gaps)

    def _upsert_worker(self, now, *, in_flight: int, stopped: bool = False) -> None:
        Worker.objects.using(ALIAS).bulk_create(
            [
                Worker(
                    name=self.worker,
                    hostname=socket.gethostname(),
                    pid=os.getpid(),
                    concurrency=self.concurrency,
                    in_flight=in_flight,
                    last_beat_at=now,
                    last_consumed_at=lifecycle.last_consumed_at(),
                    stopped_at=now if stopped else None,
                )
            ],
            update_conflicts=True,
            unique_fields=["name"],
            update_fields=["concurrency", "in_flight", "last_beat_at", "last_consumed_at", "stopped_at"],
        )

    def stop(self) -> None:
        """Stop beating and mark the worker stopped (a clean shutdown)."""
        self.finished.set()
        if self.is_alive() and self is not threading.current_thread():
            self.join(timeout=self.interval + 5)
        try:
            with private_connection():
                self._upsert_worker(timezone.now(), in_flight=len(lifecycle.in_flight()), stopped=True)
        except Exception:
            logger.exception("Could not mark worker %s stopped", self.worker)


_lock = threading.Lock()
_heartbeat: ProcessHeartbeat | None = None


def ensure_started(*, worker: str, concurrency: int = 1, when_idle: bool = False) -> ProcessHeartbeat:
    """The process's heartbeat, started on first use. A worker whose pool runs the agents in
    its main process starts it when ready, beating while idle too; elsewhere (a prefork
    child, a process executing a run in-line) it starts with the first run and beats only
    while runs are in flight."""
    global _heartbeat
    with _lock:
        if _heartbeat is None or not _heartbeat.is_alive():
            _heartbeat = ProcessHeartbeat(worker=worker, concurrency=concurrency, when_idle=when_idle)
            _heartbeat.start()
        elif when_idle:  # the worker became ready after its first run had started the heartbeat
            _heartbeat.when_idle, _heartbeat.concurrency = True, concurrency
        return _heartbeat


def stop() -> None:
    global _heartbeat
    with _lock:
        beating, _heartbeat = _heartbeat, None
    if beating is not None:
        beating.stop()
