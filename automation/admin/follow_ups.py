"""Admin for follow-ups (filled in by its issue)."""
