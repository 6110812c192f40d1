"""Each part of the domain adds its demo rows to ``seed_demo`` here.

Each ``seed(command, *, acme, globex, agents, users)`` must be idempotent.
"""

from . import follow_ups, provider_events, schedules

seed_extensions = [schedules.seed, follow_ups.seed, provider_events.seed]
