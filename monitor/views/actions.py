"""The console's action pages: an action's hook, its recent deliveries and, for Outlook, the
health of its Graph subscription (expires in, last renewal, last notification, resyncs, last
error) or what an operator still has to configure."""

from django.http import Http404
from django.shortcuts import render
from django.urls import reverse

from agentpress.orgs.permissions import Access
from automation import selectors
from automation.models import Action, OutlookSubscription
from automation.services.outlook import configuration_problems
from monitor.access import console_view

RECENT_EVENTS = 20


@console_view(needs_feature=False)
def actions_page(request, access: Access):
    actions = list(selectors.actions_for(access).select_related("agent", "run_as", "outlook_subscription"))
    return render(request, "monitor/actions.html", {"organization": access.organization, "actions": actions})


@console_view(needs_feature=False)
def action_page(request, access: Access, action_id):
    action = selectors.actions_for(access).select_related("agent", "run_as").filter(pk=action_id).first()
    if action is None:
        raise Http404("No such action.")
    subscription = problems = None
    if action.provider == Action.Provider.OUTLOOK:
        subscription = OutlookSubscription.objects.filter(action=action).first()
        problems = configuration_problems(subscription or OutlookSubscription(action=action))
    events = list(
        selectors.provider_events_for(access).filter(action=action).select_related("run")[:RECENT_EVENTS]
    )
    return render(
        request,
        "monitor/action.html",
        {
            "organization": access.organization,
            "action": action,
            "hook_url": request.build_absolute_uri(reverse("action-hook", args=[action.pk])),
            "subscription": subscription,
            "problems": problems,
            "events": events,
        },
    )
