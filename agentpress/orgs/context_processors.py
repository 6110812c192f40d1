from .permissions import access_for, organizations_for


def navigation(request):
    """The orgs a user can switch between and, for the current one, what the navigation shows."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    orgs = list(organizations_for(user).distinct())
    slug = getattr(request, "resolver_match", None) and request.resolver_match.kwargs.get("org_slug")
    current = next((o for o in orgs if o.slug == slug), orgs[0] if orgs else None)
    show_monitor = False
    if current is not None:
        show_monitor = current.automations_enabled and access_for(user, current).can_manage_actions
    return {"nav_orgs": orgs, "current_org": current, "nav_show_monitor": show_monitor}
