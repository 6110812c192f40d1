"""Replies into an Outlook conversation through Microsoft Graph, for the ``send_reply`` tool.

The interface ``send_reply`` dispatches to for Outlook actions. Until the Graph client is
configured here it answers a clear refusal, and the agent is told that nothing was sent.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class ReplyOutcome:
    ok: bool
    detail: str  # what the agent and the timeline are told
    status_code: int | None = None


def send(*, action, run, text: str, idempotency_key: str) -> ReplyOutcome:
    """Reply to the e-mail conversation of ``run`` (its ``context_key``) as ``action``'s mailbox.
    ``idempotency_key`` is stable across retries of the run, for Graph-side deduplication."""
    return ReplyOutcome(
        ok=False, detail="Outlook replies are not configured on this platform yet; nothing was sent."
    )
