"""Executing one run on a worker: claim, run the agent with no connection held, write the result.

Many runs are in flight in one process (Celery's ``threads`` pool, one thread per run); the
process's single heartbeat (``automation.worker.heartbeat``) renews all their leases. When it
finds a run no longer ours (cancelled or recovered) it sets that run's cancellation signal,
which the runtime must honour, and whatever the agent returns afterwards is discarded by the
fenced write. A thread gives its database connection back to the pool before the agent
waits, and after each tool call, so a waiting run holds none.
"""

import logging
from dataclasses import replace
from functools import partial

from django.db import connection

from agentpress.agents.runtime import (
    CancelSignal,
    Invocation,
    RunCancelled,
    RuntimeFailure,
    Tool,
    get_runtime,
)
from agentpress.ops import lifecycle, logs, metrics
from automation import broker, tools
from automation.services import admission, usage
from automation.services.runs import claim_run, format_error, record_event
from automation.services.settlement import complete_run, fail_run, interrupt_run
from automation.worker import heartbeat

logger = logging.getLogger(__name__)

NOT_CLAIMED = "not-claimed"


def execute_run(*, run_id, worker: str) -> str:
    """Run the agent for one pending run. Safe to call twice: only one claim wins."""
    lifecycle.note_consumed()
    return _claim_and_execute(run_id, worker)


def execute_runs(*, run_id, worker: str) -> str:
    """A wake-up: execute the run it names (or the next fair one, ``claim_run``), then, while
    eligible work waits and no message does, the next run in fair order in the slot the
    last one freed; returns the first run's outcome.

    Eligible work with no message waiting is work whose wake-ups were spent: claims that a
    limit held, a limit raised, runs whose messages are not in the queue yet (sent later, or
    prefetched by another worker). Without this the freed slot would idle until a sweep or
    a wake-up's round trip through the broker. A claim is tried only while some run is
    claimable at all (``admission.claimable_work_waits``, asked first: at the end of a burst
    nothing is, and the broker need not be asked). While messages wait, the thread
    goes back for them: they are wake-ups that claim the same fair runs, and the beat's
    ticks and sweeps (recovery among them) queue behind them, so a chain must never hold a
    slot from them. Wake-ups stay conserved: each run taken here leaves its own message, if
    it had one, to claim the next fair run or find nothing (a claim is guarded). With
    admission off only a message's own run is claimable, and each message runs its own run
    in the broker's order. The chain ends when nothing is claimable or the worker is
    shutting down.
    """
    lifecycle.note_consumed()
    first = outcome = _claim_and_execute(run_id, worker, chained=True)
    while (
        outcome != NOT_CLAIMED
        and admission.enabled()
        and admission.claimable_work_waits()
        and broker.waiting_messages() == 0
    ):
        outcome = _claim_and_execute(None, worker, chained=True)
    return first


def _claim_and_execute(run_id, worker: str, *, chained: bool = False) -> str:
    """Claim and run one run; ``chained``: the caller asks next whether work is claimable
    (``admission.claimable_work_waits``), which the run's completion then reads with it."""
    if lifecycle.shutting_down():
        return NOT_CLAIMED  # this worker is stopping: the redispatch sweep sends the run again
    heartbeat.ensure_started(worker=worker)
    lease = claim_run(run_id=run_id, worker=worker)
    if lease is None:
        return NOT_CLAIMED
    run = lease.run
    metrics.record_run_started(run)
    cancel = CancelSignal()
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
        outcome = _invoke(run, lease, cancel, worker, ask_claimable=chained and admission.enabled())
        logger.info("Run ended: %s", outcome)
    return outcome


def _releasing(tool: Tool, recorder: usage.UsageRecorder) -> Tool:
    """The tool, after the model calls so far are stored (a tool acts on their answer), giving
    the thread's connection back once its database work is done."""

    def call(arguments: dict) -> dict:
        try:
            recorder.flush()
            return tool.call(arguments)
        finally:
            release_connection()

    return replace(tool, call=call)


def _releasing_call(record):
    """``record`` (a model call's usage), giving back the connection a write took (the token
    ceiling's rows and event)."""

    def call(model_call) -> None:
        try:
            record(model_call)
        finally:
            release_connection()

    return call


def release_connection() -> None:
    """Give this thread's connection back to the pool (outside a transaction: a test's, say)."""
    if not connection.in_atomic_block:
        connection.close()


def _invoke(run, lease, cancel: CancelSignal, worker: str, *, ask_claimable: bool = False) -> str:
    recorder = usage.UsageRecorder(run)
    try:
        invocation = Invocation(
            run_id=str(run.pk),
            prompt=run.prompt,
            instructions=run.agent.instructions,
            history=lease.history,
            tools=[_releasing(t, recorder) for t in tools.tools_for_run(run=run, lease_token=lease.token)],
            config=run.agent.runtime_config or {},
            cancel=cancel,
            report_model_call=_releasing_call(recorder.record),
        )
        release_connection()  # the agent now waits on its model or its tools
        result = get_runtime(run.agent.runtime).invoke(invocation)
    except RunCancelled:
        recorder.flush()
        record_event(run.pk, "agent_stopped", worker=worker, reason="the run was cancelled or lost its lease")
        return "stopped"
    except RuntimeFailure as exc:
        return _failed(run, lease, str(exc), worker, recorder)
    except Exception as exc:
        logger.exception("Run %s raised", run.pk)
        return _failed(run, lease, format_error(exc), worker, recorder)
    ok = complete_run(
        run=run,
        lease_token=lease.token,
        messages=result.messages,
        tool_calls=result.tool_calls,
        worker=worker,
        usage=recorder.take(),
        ask_claimable=ask_claimable,
    )
    recorder.ended(ok)
    return "completed" if ok else "discarded"


def _failed(run, lease, error: str, worker: str, recorder: usage.UsageRecorder) -> str:
    recorder.ended(
        fail_run(run=run, lease_token=lease.token, error=error, worker=worker, usage=recorder.take())
    )
    return "failed"
