from django.contrib.auth.decorators import login_required
from django.http import HttpResponsePermanentRedirect
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.urls import reverse

from .permissions import organizations_for


@login_required
def home(request):
    """Landing page after sign-in: the user's organizations; ``?org=<slug>`` switches to one."""
    slug = request.GET.get("org")
    if slug and organizations_for(request.user).filter(slug=slug).exists():
        return redirect(reverse("monitor:agents", kwargs={"org_slug": slug}))
    return render(request, "home.html")


def favicon(request):
    """Browsers ask for /favicon.ico whatever the page links; the icon is one of our static files."""
    return HttpResponsePermanentRedirect(static("favicon.svg"))
