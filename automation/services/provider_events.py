"""Provider events (DESIGN §7). Implemented in issue 6."""


def drain_deferred_events(*, run) -> None:
    return None


def drain_missed_contexts() -> int:
    return 0
