"""Who may open a console page (DESIGN §8, §10), decided before any view code runs.

Non-members get 404 so an org's existence stays hidden; with the feature off the page
says so (404); a member without ``actions:manage`` gets 403.
"""

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.utils.cache import patch_vary_headers

from agentpress.orgs.permissions import get_access_or_404


def console_view(*, needs_feature: bool = True):
    """Wrap ``view(request, access, **kwargs)``; ``needs_feature`` gates on Agent Run Automations."""

    def decorate(view):
        @login_required
        @wraps(view)
        def wrapper(request, org_slug, **kwargs):
            access = get_access_or_404(request.user, org_slug)
            if needs_feature and not access.organization.automations_enabled:
                return render(
                    request, "monitor/feature_off.html", {"organization": access.organization}, status=404
                )
            if not access.can_manage_actions:
                return render(
                    request, "monitor/forbidden.html", {"organization": access.organization}, status=403
                )
            response = view(request, access, **kwargs)
            # One URL answers a whole page or, for htmx, one region of it: caches must tell them apart.
            patch_vary_headers(response, ("HX-Request", "HX-Target"))
            return response

        return wrapper

    return decorate
