"""Finding rows by what an operator types: a full or short run id, a thread id, a context
key, an event id. Every lookup runs inside the caller's scope (``selectors``), so a value
from outside it finds nothing rather than revealing that it exists."""

import re
import uuid
from dataclasses import dataclass, field

from agentpress.orgs.permissions import Access
from automation import selectors
from automation.models import AgentRun

# The console shows eight hex digits; fewer than six would match too much to be a name.
SHORT_ID_MIN = 6
_HEX = re.compile(r"[0-9a-f]+")
SEARCH_LIMIT = 20


class AmbiguousRef(Exception):
    """A short id that more than one run in scope starts with."""


def run_id_range(ref: str) -> tuple[uuid.UUID, uuid.UUID] | None:
    """The ids a short id (a prefix of the hex digits) stands for, as an index range."""
    digits = ref.strip().lower().replace("-", "")
    if not SHORT_ID_MIN <= len(digits) <= 32 or not _HEX.fullmatch(digits):
        return None
    return uuid.UUID(digits.ljust(32, "0")), uuid.UUID(digits.ljust(32, "f"))


def runs_by_ref(access: Access, ref: str, *, limit: int = 2) -> list[AgentRun]:
    """Runs in scope whose id is ``ref`` or starts with it (at most ``limit``)."""
    bounds = run_id_range(ref)
    if bounds is None:
        return []
    return list(selectors.runs_for(access).filter(pk__range=bounds).order_by("pk")[:limit])


def run_by_ref(access: Access, ref: str) -> AgentRun | None:
    """The one run in scope that ``ref`` names; ``AmbiguousRef`` when a short id names several."""
    found = runs_by_ref(access, ref)
    if len(found) > 1:
        raise AmbiguousRef(f"{ref} is the start of more than one run id; give more of it.")
    return found[0] if found else None


@dataclass
class SearchResult:
    query: str
    runs: list = field(default_factory=list)
    threads: list = field(default_factory=list)
    context_runs: list = field(default_factory=list)
    events: list = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.runs) + len(self.threads) + len(self.context_runs) + len(self.events)


def search(access: Access, query: str) -> SearchResult:
    """Everything in scope that ``query`` names exactly: run ids (full or short), a thread id,
    runs on a context key, provider events with that event id."""
    query = query.strip()[:255]
    result = SearchResult(query=query)
    if not query:
        return result
    result.runs = list(
        selectors.runs_list(access).filter(
            pk__in=[r.pk for r in runs_by_ref(access, query, limit=SEARCH_LIMIT)]
        )
    )
    number = query.removeprefix("#")
    if number.isdigit() and len(number) < 19:
        result.threads = list(selectors.threads_for(access).select_related("agent").filter(pk=int(number)))
    agents = selectors.agents_for(access).values("pk")
    result.context_runs = list(
        selectors.runs_list(access).filter(agent__in=agents, context_key=query)[:SEARCH_LIMIT]
    )
    result.events = list(
        selectors.provider_events_for(access)
        .filter(action__in=selectors.actions_for(access).values("pk"), event_id=query)
        .select_related("action")[:SEARCH_LIMIT]
    )
    return result
