"""When a schedule fires: pure functions over its cadence fields, no database (DESIGN §5).

Wall-clock cadences (daily, weekly, cron) are computed on naive local wall times in the
schedule's IANA timezone and only then turned into instants:

- a wall time that does not exist (the spring-forward gap) fires at the first valid
  instant after it, which is the moment the clocks jump;
- a wall time that occurs twice (the fall-back overlap) fires once, at its first occurrence.

Intervals are counted in absolute time from a fixed anchor (``run_at``), so a late tick
never shifts the following slots and daylight saving does not stretch them.

Every moment and step a person can enter is bounded (``EARLIEST_RUN_AT``, ``LATEST_RUN_AT``,
``MAX_INTERVAL_MINUTES``) far inside what a ``datetime`` holds in any time zone; a stored row
outside them makes these functions raise ``CadenceError`` rather than an arithmetic error.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from cron_descriptor import FormatException, Options, get_description
from croniter import CroniterBadDateError, croniter

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Time zones are at most 14 hours from UTC: any instant in this range is a valid wall time
# everywhere, and a year of steps past it still fits in a datetime.
EARLIEST_RUN_AT = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_RUN_AT = datetime(3000, 1, 1, tzinfo=UTC)
MAX_INTERVAL_MINUTES = 366 * 24 * 60


class CadenceError(ValueError):
    """A stored schedule whose fire times cannot be computed (a moment out of range, an
    unknown zone or cron expression); the message says what to fix."""


@contextmanager
def _computable(spec):
    try:
        yield
    except CadenceError:
        raise
    except (ArithmeticError, ValueError, ZoneInfoNotFoundError) as exc:
        raise CadenceError(
            f"The {spec.cadence} settings (time zone {spec.timezone}) cannot be computed: {exc}. "
            "Edit the schedule to fix them."
        ) from exc


def run_at_out_of_range(moment: datetime) -> str:
    """Why ``moment`` cannot be a schedule's run time, or an empty string."""
    if EARLIEST_RUN_AT <= moment < LATEST_RUN_AT:
        return ""
    return f"Must be between {EARLIEST_RUN_AT:%Y-%m-%d} and {LATEST_RUN_AT:%Y-%m-%d} (UTC)."


class CadenceFields(Protocol):
    """What the functions read; a ``Schedule`` satisfies it."""

    cadence: str
    time_of_day: time | None
    weekdays: list[str]
    interval_minutes: int | None
    run_at: datetime | None
    cron_expression: str
    timezone: str


@cache
def known_timezones() -> frozenset[str]:
    return frozenset(available_timezones())


def is_valid_cron(expression: str) -> bool:
    """Five fields (minute to weekday; a seconds field would undercut the minimum interval)
    that match some date ("0 0 30 2 *" parses but never fires)."""
    if len(expression.split()) != 5 or not croniter.is_valid(expression):
        return False
    try:
        croniter(expression, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterBadDateError:
        return False
    return True


def describe_cron(expression: str) -> str:
    options = Options()
    options.use_24hour_time_format = True
    try:
        return get_description(expression, options)
    except FormatException:  # croniter accepts a few forms the describer does not know
        return expression


def describe(spec: CadenceFields) -> str:
    """One line a person reads to know when the schedule fires."""
    with _computable(spec):
        return _describe(spec)


def _describe(spec: CadenceFields) -> str:
    at = spec.time_of_day.strftime("%H:%M") if spec.time_of_day else ""
    match spec.cadence:
        case "daily":
            text = f"Every day at {at}"
        case "weekly":
            days = ", ".join(d.capitalize() for d in WEEKDAYS if d in spec.weekdays)
            text = f"Every {days} at {at}"
        case "interval":
            text = f"Every {spec.interval_minutes} minutes"
        case "once":
            local = spec.run_at.astimezone(ZoneInfo(spec.timezone)) if spec.run_at else None
            text = f"Once, at {local:%Y-%m-%d %H:%M}" if local else "Once"
        case "cron":
            text = describe_cron(spec.cron_expression)
        case _:
            raise ValueError(f"Unknown cadence {spec.cadence!r}")
    return f"{text} ({spec.timezone})"


def next_fire_time(spec: CadenceFields, after: datetime) -> datetime | None:
    """The first instant strictly after ``after`` at which the schedule fires, in UTC;
    ``None`` when it never fires again (a ``once`` schedule whose moment passed)."""
    with _computable(spec):
        return _next_fire_time(spec, after.astimezone(UTC))


def _next_fire_time(spec: CadenceFields, after: datetime) -> datetime | None:
    match spec.cadence:
        case "interval":
            return _next_interval(spec.run_at, timedelta(minutes=spec.interval_minutes), after)
        case "once":
            return spec.run_at.astimezone(UTC) if spec.run_at > after else None
        case "daily" | "weekly" | "cron":
            zone = ZoneInfo(spec.timezone)
            start = after.astimezone(zone).replace(tzinfo=None)
            for wall in _wall_times(spec, start):
                instant = resolve_wall_time(wall, zone)
                if instant > after:
                    return instant
            return None
        case _:
            raise ValueError(f"Unknown cadence {spec.cadence!r}")


def next_fire_times(spec: CadenceFields, after: datetime, n: int) -> list[datetime]:
    """The next ``n`` fire times after ``after`` (fewer when the cadence ends)."""
    times: list[datetime] = []
    while len(times) < n:
        after = next_fire_time(spec, after)
        if after is None:
            break
        times.append(after)
    return times


@dataclass(frozen=True)
class DueSlots:
    """The slots of a schedule that came due by some moment, oldest first ``since``."""

    latest: datetime
    earlier: int  # slots before ``latest`` that get no run of their own
    previous: datetime | None  # the slot just before ``latest``


def due_slots(spec: CadenceFields, since: datetime, until: datetime) -> DueSlots:
    """``since`` is a slot that is due at ``until``: which slot is the latest by then, and
    how many came before it. Cost follows the number of slots passed, not the schedule count."""
    with _computable(spec):
        return _due_slots(spec, since, until)


def _due_slots(spec: CadenceFields, since: datetime, until: datetime) -> DueSlots:
    if spec.cadence == "interval":
        step = timedelta(minutes=spec.interval_minutes)
        passed = (until - since) // step
        latest = since + passed * step
        return DueSlots(latest=latest, earlier=passed, previous=latest - step if passed else None)
    latest, earlier, previous = since, 0, None
    while (following := next_fire_time(spec, latest)) is not None and following <= until:
        latest, earlier, previous = following, earlier + 1, latest
    return DueSlots(latest=latest, earlier=earlier, previous=previous)


def resolve_wall_time(wall: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant of a naive local wall time: its first occurrence when it happens
    twice, the moment the clocks jump when it falls in a gap."""
    first = wall.replace(tzinfo=zone, fold=0)
    instant = first.astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == wall:
        return instant
    # In a gap, fold=0 reads the wall time with the offset from before the jump and fold=1
    # with the offset from after it; the jump lies between the two readings.
    # Offsets change on whole seconds, so a search over seconds finds the jump exactly.
    lo = int(wall.replace(tzinfo=zone, fold=1).timestamp())
    hi = int(instant.timestamp())
    offset_after = instant.astimezone(zone).utcoffset()
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, zone).utcoffset() == offset_after:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


def _next_interval(anchor: datetime, step: timedelta, after: datetime) -> datetime:
    if after < anchor:
        return anchor
    return anchor + ((after - anchor) // step + 1) * step


def _wall_times(spec: CadenceFields, start: datetime) -> Iterator[datetime]:
    """Naive local wall times at or after ``start``'s day, in increasing order."""
    if spec.cadence == "cron":
        # croniter on naive datetimes is pure wall-clock arithmetic: no DST surprises.
        yield from croniter(spec.cron_expression, start).all_next(datetime)
        return
    days = {WEEKDAYS.index(d) for d in spec.weekdays} if spec.cadence == "weekly" else set(range(7))
    if not days:
        return
    day: date = start.date()
    while True:
        if day.weekday() in days:
            yield datetime.combine(day, spec.time_of_day)
        day += timedelta(days=1)
