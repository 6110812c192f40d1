"""Schedules (DESIGN §5). Implemented in issue 4."""


def fire_due_schedules() -> int:
    return 0


def release_buffered_slot(*, run) -> None:
    return None
