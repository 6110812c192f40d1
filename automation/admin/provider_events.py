"""Admin for provider-events (filled in by its issue)."""
