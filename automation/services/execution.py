"""Executing one run on a worker: claim, heartbeat beside the agent, write the result.

The heartbeat runs on a side thread every ``LEASE_TTL / 4``. When it matches no row
(the run was cancelled or recovered) it sets the cancellation signal the runtime must
honour, and whatever the agent returns afterwards is discarded by the fenced write.
"""

import logging
import threading
import time
from functools import partial

from django.conf import settings
from django.db import connection
from structlog.contextvars import bound_contextvars

from agentpress.agents.models import Message
from agentpress.agents.runtime import Invocation, RunCancelled, RuntimeFailure, get_runtime
from agentpress.ops import lifecycle, logs, metrics
from automation.services import follow_ups
from automation.services.runs import claim_run, format_error, heartbeat_run, record_event
from automation.services.settlement import complete_run, fail_run, interrupt_run

logger = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    def __init__(self, run_id, lease_token, cancel: threading.Event):
        super().__init__(name=f"heartbeat-{run_id}", daemon=True)
        self.run_id = run_id
        self.lease_token = lease_token
        self.cancel = cancel
        self.finished = threading.Event()
        self.interval = settings.AUTOMATION_LEASE_TTL_SECONDS / 4
        self.log_fields = logs.current_fields()  # a thread starts with an empty context

    def run(self):
        with bound_contextvars(**self.log_fields):
            last_beat = time.monotonic()
            try:
                while not self.finished.wait(self.interval):
                    try:
                        alive = heartbeat_run(run_id=self.run_id, lease_token=self.lease_token)
                    except Exception:  # the database blipped: keep trying until the lease runs out
                        logger.exception("Heartbeat of run %s failed", self.run_id)
                        connection.close()
                        continue
                    if not alive:
                        self.cancel.set()
                        return
                    last_beat = self._note_gap(last_beat)
            finally:
                connection.close()

    def _note_gap(self, last_beat: float) -> float:
        """Put a late heartbeat on the timeline: the lease came close to expiring."""
        now = time.monotonic()
        if now - last_beat > 2 * self.interval:
            record_event(
                self.run_id, "heartbeat_gap", seconds=round(now - last_beat, 1), expected=self.interval
            )
        return now

    def stop(self):
        self.finished.set()
        self.join(timeout=5)


def _history(thread_id, run_id) -> list[dict]:
    rows = Message.objects.filter(thread_id=thread_id).exclude(run_id=run_id).order_by("created_at", "id")
    return [{"role": m.role, "content": m.content} for m in rows]


def execute_run(*, run_id, worker: str) -> str:
    """Run the agent for one pending run. Safe to call twice: only one claim wins."""
    if lifecycle.shutting_down():
        return "not-claimed"  # this worker is stopping: the redispatch sweep sends the run again
    lease = claim_run(run_id=run_id, worker=worker)
    if lease is None:
        return "not-claimed"
    run = lease.run
    metrics.record_run_started(run)
    cancel = threading.Event()
    with (
        logs.bind_run(run, worker=worker),
        lifecycle.guard_run(
            run_id=run.pk,
            lease_token=lease.token,
            cancel=cancel,
            worker=worker,
            interrupt=partial(interrupt_run, run_id=run.pk, lease_token=lease.token, kind="worker_shutdown"),
        ),
    ):
        logger.info("Run claimed (attempt %s)", run.attempt)
        outcome = _invoke(run, lease, cancel, worker)
        logger.info("Run ended: %s", outcome)
    return outcome


def _invoke(run, lease, cancel: threading.Event, worker: str) -> str:
    heartbeat = Heartbeat(run.pk, lease.token, cancel)
    heartbeat.start()
    try:
        invocation = Invocation(
            run_id=str(run.pk),
            prompt=run.prompt,
            instructions=run.agent.instructions,
            history=_history(run.thread_id, run.pk),
            tools=follow_ups.tools_for_run(run=run, lease_token=lease.token),
            config=run.agent.runtime_config or {},
            cancel=cancel,
        )
        result = get_runtime(run.agent.runtime).invoke(invocation)
    except RunCancelled:
        record_event(run.pk, "agent_stopped", worker=worker, reason="the run was cancelled or lost its lease")
        return "stopped"
    except RuntimeFailure as exc:
        fail_run(run=run, lease_token=lease.token, error=str(exc), worker=worker)
        return "failed"
    except Exception as exc:
        logger.exception("Run %s raised", run.pk)
        fail_run(run=run, lease_token=lease.token, error=format_error(exc), worker=worker)
        return "failed"
    finally:
        heartbeat.stop()
    ok = complete_run(
        run=run,
        lease_token=lease.token,
        messages=result.messages,
        tool_calls=result.tool_calls,
        worker=worker,
    )
    return "completed" if ok else "discarded"
