"""Hooks through which each part of the domain adds its demo rows to ``seed_demo``.

Each extension is ``fn(command, *, acme, globex, agents, users)`` and must be idempotent.
"""

seed_extensions: list = []
