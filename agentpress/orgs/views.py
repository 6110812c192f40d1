from django.contrib.auth.decorators import login_required
from django.shortcuts import render


@login_required
def home(request):
    """Landing page after sign-in: the user's organizations and where to go from here."""
    return render(request, "home.html")
