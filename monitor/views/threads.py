"""The conversation page of a thread: its messages in order, the runs that wrote them, and
what those runs did (model calls with tokens and latency, tool calls and suppressed sends)."""

from django.http import Http404
from django.shortcuts import render

from agentpress.orgs.permissions import Access
from automation import selectors
from automation.models import ModelCall, ToolCall
from monitor.access import console_view


@console_view(needs_feature=False)
def thread_page(request, access: Access, thread_id: int):
    thread = selectors.threads_for(access).select_related("agent").filter(pk=thread_id).first()
    if thread is None:
        raise Http404("No such conversation.")
    messages = list(
        thread.messages.select_related("author", "run", "run__run_as").order_by("created_at", "id")
    )
    runs = list(selectors.runs_list(access).filter(thread=thread).order_by("created_at"))
    visible = [run.pk for run in runs]
    activity = sorted(
        [("model_call", c) for c in ModelCall.objects.filter(run_id__in=visible)]
        + [("tool_call", c) for c in ToolCall.objects.filter(run_id__in=visible)],
        key=lambda item: (item[1].created_at, item[1].pk),
    )
    return render(
        request,
        "monitor/thread.html",
        {
            "access": access,
            "organization": access.organization,
            "thread": thread,
            "thread_messages": messages,
            "runs": runs,
            "visible_run_ids": set(visible),
            "activity": activity,
        },
    )
