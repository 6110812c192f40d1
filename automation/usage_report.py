"""Read side of usage: runs, tokens and cost per day, per agent and per schedule.

Each grouping is one ``GROUP BY`` statement over the runs' totals (``input_tokens``,
``output_tokens``, ``cost``, which the model-call recording keeps), whatever the number of
runs, days, agents or schedules. A run counts on the day it was created, in the
organization's reporting time zone (``Organization.timezone``), the same ``created_at`` the
runs list filters on. The caller passes runs already scoped (``selectors.runs_for``), so a
member's report holds only their own runs and never another organization's.
"""

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db.models import Count, F, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDate

from automation.models import AgentRun

GROUPS = ("day", "agent", "schedule")
# Agents and schedules beyond this many (the largest by cost, then tokens) are left out and
# the report says so; days are bounded by the range.
MAX_GROUP_ROWS = 200
NO_SCHEDULE = "No schedule (manual, provider event, follow-up)"


@dataclass(frozen=True)
class UsageRow:
    """One group's totals. ``key`` is the day, the agent id or the schedule id (``None``: runs
    without a schedule); ``label`` says it in words."""

    key: object
    label: str
    runs: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = Decimal(0)
    agent_id: int | None = None

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def key_text(self) -> str | None:
        """The key as JSON and HTML attributes carry it: an ISO date or an id."""
        if self.key is None:
            return None
        return self.key.isoformat() if isinstance(self.key, date) else str(self.key)


@dataclass(frozen=True)
class UsageReport:
    group_by: str
    rows: list[UsageRow]
    truncated: bool

    @property
    def total(self) -> UsageRow:
        return UsageRow(
            key=None,
            label="Total",
            runs=sum(r.runs for r in self.rows),
            input_tokens=sum(r.input_tokens for r in self.rows),
            output_tokens=sum(r.output_tokens for r in self.rows),
            cost=sum((r.cost for r in self.rows), Decimal(0)),
        )


def zone_of(tz_name: str) -> ZoneInfo:
    """The organization's reporting zone; an unknown name counts in UTC."""
    try:
        return ZoneInfo(tz_name or "UTC")
    except (KeyError, ValueError):
        return ZoneInfo("UTC")


def last_days(zone: ZoneInfo, now: datetime, days: int) -> tuple[datetime, datetime]:
    """From local midnight ``days - 1`` days ago to local midnight tomorrow, in ``zone``."""
    today = now.astimezone(zone).date()
    return _midnight(today - timedelta(days=days - 1), zone), _midnight(today + timedelta(days=1), zone)


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone)


_TOTALS = {
    "runs": Count("*"),
    "input": Coalesce(Sum("input_tokens"), 0),
    "output": Coalesce(Sum("output_tokens"), 0),
    "spent": Coalesce(Sum("cost"), Decimal(0)),
}


def _row(key, label, values, agent_id=None) -> UsageRow:
    return UsageRow(
        key=key,
        label=label,
        runs=values["runs"],
        input_tokens=values["input"],
        output_tokens=values["output"],
        cost=Decimal(values["spent"]),
        agent_id=agent_id,
    )


def usage_report(
    runs: QuerySet[AgentRun], *, group_by: str, start: datetime, end: datetime, zone: ZoneInfo
) -> UsageReport:
    """Totals of ``runs`` created in ``[start, end)`` grouped ``by`` day (every day of the
    range in ``zone``, empty ones included, oldest first), agent or schedule (largest cost
    first). One statement."""
    if group_by not in GROUPS:
        raise ValueError(f"group_by must be one of {', '.join(GROUPS)}.")
    runs = runs.filter(created_at__gte=start, created_at__lt=end).order_by()
    if group_by == "day":
        found = {
            values["day"]: values
            for values in runs.annotate(day=TruncDate("created_at", tzinfo=zone))
            .values("day")
            .annotate(**_TOTALS)
        }
        first = start.astimezone(zone).date()
        last = (end - timedelta(microseconds=1)).astimezone(zone).date()
        rows = []
        for offset in range((last - first).days + 1):
            day = first + timedelta(days=offset)
            values = found.get(day)
            rows.append(
                _row(day, day.isoformat(), values) if values else UsageRow(key=day, label=day.isoformat())
            )
        return UsageReport(group_by, rows, truncated=False)
    if group_by == "agent":
        keys = {"key": F("agent_id"), "name": F("agent__name"), "owner": F("agent_id")}
    else:
        keys = {"key": F("schedule_id"), "name": F("schedule__name"), "owner": F("schedule__agent_id")}
    grouped = list(
        runs.values(**keys)
        .annotate(**_TOTALS)
        .order_by("-spent", "-input", "-output", "name", "key")[: MAX_GROUP_ROWS + 1]
    )
    rows = [
        _row(values["key"], values["name"] or NO_SCHEDULE, values, agent_id=values["owner"])
        for values in grouped[:MAX_GROUP_ROWS]
    ]
    return UsageReport(group_by, rows, truncated=len(grouped) > MAX_GROUP_ROWS)
