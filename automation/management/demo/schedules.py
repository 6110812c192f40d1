"""Demo schedules for seed_demo (filled in by its issue)."""


def seed(command, *, acme, globex, agents, users):
    """Idempotent."""
