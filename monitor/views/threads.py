"""The conversation page of a thread: its messages in order and the runs that wrote them."""

from django.http import Http404
from django.shortcuts import render

from agentpress.orgs.permissions import Access
from automation import lookups, selectors
from monitor.access import console_view


@console_view(needs_feature=False)
def thread_page(request, access: Access, thread_id: int):
    thread = lookups.threads_for(access).select_related("agent").filter(pk=thread_id).first()
    if thread is None:
        raise Http404("No such conversation.")
    messages = list(
        thread.messages.select_related("author", "run", "run__run_as").order_by("created_at", "id")
    )
    runs = list(selectors.runs_list(access).filter(thread=thread).order_by("created_at"))
    return render(
        request,
        "monitor/thread.html",
        {
            "access": access,
            "organization": access.organization,
            "thread": thread,
            "thread_messages": messages,
            "runs": runs,
            "visible_run_ids": {run.pk for run in runs},
        },
    )
