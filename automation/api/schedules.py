"""API for schedules (filled in by its issue)."""

urlpatterns: list = []
