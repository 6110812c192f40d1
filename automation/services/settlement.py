"""Ending a run and settling what hangs on it (DESIGN §4 step 6).

The layer above the domains: the transitions in ``runs`` end a run and know nothing of
follow-ups, provider events or schedule slots; the domains hang on a run; this module
ends a run through its transition and, in the same transaction, settles each domain
the run is linked to. Everything above the services (the worker, the sweeps, the API,
the console, the admin) ends runs through the verbs here.
"""

from contextlib import nullcontext

from django.db import transaction

from agentpress.ops import metrics
from automation.models import AgentRun
from automation.services import admission, budgets, follow_ups, provider_events, runs, schedules


def run_ended(run: AgentRun) -> None:
    """Settle what hangs on a run that reached a terminal status, in its transaction:
    its follow-up's outcome, the provider events deferred behind it, a buffered slot of
    its schedule, and the finished-run metrics."""
    metrics.record_run_finished(run)
    # nothing is asked of a domain the run has no link to
    if run.follow_up_id:
        follow_ups.settle_follow_up(run=run)
    if run.context_key:
        provider_events.drain_deferred_events(run=run)
    if run.schedule_id:
        schedules.release_buffered_slot(run=run)
    if admission.slot_frees_held_work(run):
        transaction.on_commit(runs.wake_worker)


def hangs_on(run: AgentRun) -> bool:
    """Whether anything may hang on the run: a follow-up it fulfils, a schedule whose slot
    may wait for it, or a context that events may be deferred on. A run with none of these
    ends in one statement, without a transaction around it."""
    return bool(run.follow_up_id or run.schedule_id or run.context_key)


def _ending(run: AgentRun):
    return transaction.atomic() if hangs_on(run) else nullcontext()


def complete_run(
    *, run: AgentRun, lease_token, messages, tool_calls, worker: str, usage=None, ask_claimable: bool = False
) -> bool:
    """``running → completed`` with the agent's messages (and ``usage``: model-call rows not
    stored yet, ``runs.mark_completed``) while the lease is ours, then settled in the same
    transaction. ``run`` is the row the worker claimed. ``False`` when the result came too
    late and was discarded. ``ask_claimable``: the worker asks next whether any run is
    claimable; a run that ends in one statement (nothing hangs on it) reads that with its
    end. One that settles more reads it afterwards, once its settling is committed (a
    deferred event it drains may start a run)."""
    return _end(
        run,
        lambda: runs.mark_completed(
            run=run,
            lease_token=lease_token,
            messages=messages,
            tool_calls=tool_calls,
            worker=worker,
            usage=usage,
            ask_claimable=ask_claimable and not hangs_on(run),
        ),
    )


def fail_run(*, run: AgentRun, lease_token, error: str, worker: str, usage=None) -> bool:
    """``running → failed`` with ``last_error`` (and ``usage`` as for ``complete_run``) while
    the lease is ours, then settled in the same transaction. ``run`` is the row the worker
    claimed. ``False`` when the result came too late and was discarded."""
    return _end(
        run,
        lambda: runs.mark_failed(run=run, lease_token=lease_token, error=error, worker=worker, usage=usage),
    )


def _end(run: AgentRun, mark) -> bool:
    """``mark`` (the run's guarded ending), then what hangs on the end, in one transaction."""
    with _ending(run):
        ended = mark()
        if ended is None:
            return False
        run_ended(ended)
    return True


def cancel_run(*, run_id, actor=None, reason: str = "") -> AgentRun:
    """``pending|running → cancelled`` (audited), then settled; ``InvalidTransition`` when
    the run already ended."""
    with transaction.atomic():
        run = runs.mark_cancelled(run_id=run_id, actor=actor, reason=reason)
        run_ended(run)
    return run


def interrupt_run(*, run_id, error: str, lease_token=None, kind: str = "interrupted") -> bool:
    """``running|pending → interrupted`` with ``last_error``, then settled; used by recovery
    and shutdown. ``False`` when the run already ended or changed hands."""
    with transaction.atomic():
        run = runs.mark_interrupted(run_id=run_id, error=error, lease_token=lease_token, kind=kind)
        if run is None:
            return False
        run_ended(run)
    return True


def fail_runs_over_token_ceiling() -> int:
    """Running runs past their agent's ``max_tokens_per_run`` become ``failed`` with a clear
    ``last_error``, then settled; the worker finds its lease gone at its next heartbeat and
    stops the agent."""
    failed = 0
    for run_id, token, used, ceiling in budgets.runs_over_token_ceiling():
        with transaction.atomic():
            run = runs.mark_failed(
                run=AgentRun.objects.get(pk=run_id),
                lease_token=token,
                error=budgets.token_ceiling_error(used, ceiling),
                worker="token ceiling",
            )
            if run is not None:
                runs.record_event(run_id, "token_ceiling_reached", used=used, max_tokens_per_run=ceiling)
                run_ended(run)
                failed += 1
    return failed
