"""API for follow-ups (filled in by its issue)."""

urlpatterns: list = []
