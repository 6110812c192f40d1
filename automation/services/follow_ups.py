"""Self-scheduled follow-ups (DESIGN §6). Implemented in issue 5."""


def tools_for_run(*, run, lease_token) -> list:
    return []


def settle_follow_up(*, run) -> None:
    return None


def fire_due_follow_ups() -> int:
    return 0


def repair_bookkeeping() -> int:
    return 0
