"""API for provider-events (filled in by its issue)."""

urlpatterns: list = []
