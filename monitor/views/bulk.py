"""Bulk cancel and retry of runs: selected rows or every run matching the filter.

The first POST shows a confirmation with the exact count; the confirmed POST goes
through the same services as the single-run buttons, one run per transaction, in
bounded batches, and reports how many changed and why the others did not.
"""

from collections import Counter
from urllib.parse import urlencode

from django.contrib import messages
from django.db.models import Exists, OuterRef
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from agentpress.orgs.permissions import Access
from automation import selectors
from automation.models import AgentRun
from automation.services.runs import ContextBusy, retry_run
from automation.services.settlement import cancel_run
from automation.states import RUN_ACTIVE, RUN_RETRYABLE, InvalidTransition
from monitor.access import console_view
from monitor.filters import RunFilterForm
from monitor.views.runs import parse_uuids, runs_url

BATCH_SIZE = 100
MAX_PER_REQUEST = 1000

VERBS = {
    "cancel": {"label": "Cancel", "done": "Cancelled", "eligible": RUN_ACTIVE},
    "retry": {"label": "Retry", "done": "Retried", "eligible": RUN_RETRYABLE},
}


def _ineligible_reason(verb: str, status: str, retried: bool) -> str | None:
    """Why a run is left alone, or ``None`` when the verb applies to it."""
    if status not in VERBS[verb]["eligible"]:
        if verb == "cancel":
            return "already finished"
        return "still pending or running" if status in RUN_ACTIVE else "completed runs are not retried"
    if verb == "retry" and retried:
        # Retried runs keep their status, so a repeated bulk retry would otherwise retry them again.
        return "already retried"
    return None


def _batches(access: Access, form: RunFilterForm, ids: list | None):
    """(pk, status, retried) rows in batches of ``BATCH_SIZE``, at most ``MAX_PER_REQUEST`` in all.

    Matching-filter batches walk the filter by (created_at, pk) so a run that leaves the
    filter once cancelled neither repeats nor shifts the next batch.
    """
    scoped = selectors.runs_for(access).annotate(
        retried=Exists(AgentRun.objects.filter(retry_of=OuterRef("pk")))
    )
    if ids is not None:
        for start in range(0, min(len(ids), MAX_PER_REQUEST), BATCH_SIZE):
            chunk = ids[start : start + BATCH_SIZE]
            yield list(scoped.filter(pk__in=chunk).values_list("pk", "status", "retried")), len(chunk)
        return
    matching = form.apply(scoped).order_by("created_at", "pk")
    last = None
    seen = 0
    while seen < MAX_PER_REQUEST:
        qs = matching
        if last is not None:
            qs = qs.filter(created_at__gte=last[0]).exclude(created_at=last[0], pk__lte=last[1])
        rows = list(qs.values_list("pk", "status", "retried", "created_at")[:BATCH_SIZE])
        if not rows:
            return
        seen += len(rows)
        last = (rows[-1][3], rows[-1][0])
        yield [row[:3] for row in rows], len(rows)


def _apply(verb: str, pk, actor) -> str | None:
    """``None`` when the run changed, else why not (a race lost since the batch was read)."""
    try:
        if verb == "cancel":
            cancel_run(run_id=pk, actor=actor, reason="bulk cancel from the monitor")
        else:
            retry_run(run_id=pk, actor=actor)
    except InvalidTransition:
        return "changed meanwhile"
    except ContextBusy:
        return "another run is active on its context"
    return None


def _execute(access: Access, verb: str, form, ids, actor) -> tuple[int, Counter]:
    changed, reasons = 0, Counter()
    for batch, asked in _batches(access, form, ids):
        reasons["not in your scope"] += asked - len(batch)
        for pk, status, retried in batch:
            reason = _ineligible_reason(verb, status, retried) or _apply(verb, pk, actor)
            if reason is None:
                changed += 1
            else:
                reasons[reason] += 1
    return changed, +reasons


def _report(request, verb: str, changed: int, reasons: Counter, remaining: int) -> None:
    noun = "run" if changed == 1 else "runs"
    messages.success(request, f"{VERBS[verb]['done']} {changed} {noun}.")
    if reasons:
        why = ", ".join(f"{n} {reason}" for reason, n in reasons.most_common())
        messages.warning(request, f"Not changed: {why}.")
    if remaining > 0:
        messages.info(request, f"{remaining} more match; run the action again to continue.")


@require_POST
@console_view()
def runs_bulk(request, access: Access):
    verb = request.POST.get("action")
    form = RunFilterForm(request.POST, access=access)
    back = runs_url(access) + (f"?{urlencode(form.params())}" if form.params() else "")
    if verb not in VERBS:
        messages.error(request, "Choose Cancel or Retry.")
        return redirect(back)
    all_matching = request.POST.get("all_matching") == "1"
    ids = None if all_matching else list(dict.fromkeys(parse_uuids(request.POST.getlist("run"))))
    if ids == []:
        messages.error(request, "Select at least one run, or choose all runs matching the filter.")
        return redirect(back)

    scoped = selectors.runs_for(access)
    targets = form.apply(scoped) if all_matching else scoped.filter(pk__in=ids)
    total = targets.count() if all_matching else len(ids)
    if request.POST.get("confirm") != "1":
        eligible = targets.filter(status__in=VERBS[verb]["eligible"])
        if verb == "retry":
            eligible = eligible.filter(retries__isnull=True)
        return render(
            request,
            "monitor/bulk_confirm.html",
            {
                "access": access,
                "organization": access.organization,
                "tab": "runs",
                "verb": verb,
                "label": VERBS[verb]["label"],
                "total": total,
                "eligible": eligible.count(),
                "out_of_scope": 0 if all_matching else total - targets.count(),
                "limit": MAX_PER_REQUEST,
                "all_matching": all_matching,
                "ids": ids or [],
                "filter_params": form.params(),
                "back": back,
            },
        )
    changed, reasons = _execute(access, verb, form, ids, request.user)
    remaining = max(total - MAX_PER_REQUEST, 0)
    _report(request, verb, changed, reasons, remaining)
    return redirect(back)
