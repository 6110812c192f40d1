"""Admin for schedules (filled in by its issue)."""
