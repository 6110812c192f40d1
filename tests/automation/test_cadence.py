"""Property tests of ``cadence``: right wall time, strictly later, once per local day across DST."""

from datetime import UTC, date, datetime, time, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from automation import cadence

pytestmark = pytest.mark.sqlite

DST_ZONES = ["America/New_York", "Europe/London", "Australia/Lord_Howe"]
zones = st.one_of(st.sampled_from(DST_ZONES), st.sampled_from(sorted(cadence.known_timezones())))
instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2036, 12, 31), timezones=st.just(UTC)
)
# Wall times inside the gaps and overlaps of the three zones, beside arbitrary ones.
wall_clock = st.one_of(
    st.sampled_from(
        [time(0, 30), time(1, 0), time(1, 30), time(1, 45), time(2, 0), time(2, 15), time(2, 30)]
    ),
    st.times().map(lambda t: t.replace(second=0, microsecond=0)),
)


def spec(**fields):
    base = dict(
        cadence="daily", time_of_day=None, weekdays=[], interval_minutes=None, run_at=None, cron_expression="",
        timezone="UTC",
    )  # fmt: skip
    return SimpleNamespace(**{**base, **fields})


def wall(instant, zone):
    return instant.astimezone(zone).replace(tzinfo=None)


def is_jump(instant, zone) -> bool:
    """The clocks jumped forward exactly at ``instant``."""
    before = (instant - timedelta(seconds=1)).astimezone(zone)
    return before.utcoffset() < instant.astimezone(zone).utcoffset()


def assert_right_wall_time(fired, target: datetime, zone):
    """At the wall time itself (its first occurrence), or, when the wall time does not
    exist, at the first valid instant after it."""
    local = fired.astimezone(zone)
    if local.replace(tzinfo=None) == target:
        assert local.fold == 0, "an ambiguous wall time fires at its first occurrence"
    else:
        assert is_jump(fired, zone), f"{fired} is neither {target} nor the jump after it"
        assert wall(fired - timedelta(seconds=1), zone) < target < local.replace(tzinfo=None)


@settings(max_examples=300, deadline=None)
@given(zone=zones, at=wall_clock, after=instants)
def test_daily_fires_strictly_after_at_the_wall_time(zone, at, after):
    tz = ZoneInfo(zone)
    fired = cadence.next_fire_time(spec(time_of_day=at, timezone=zone), after)
    assert fired > after
    assert fired - after <= timedelta(hours=27)
    assert_right_wall_time(fired, datetime.combine(fired.astimezone(tz).date(), at), tz)


@settings(max_examples=200, deadline=None)
@given(
    zone=zones,
    at=wall_clock,
    after=instants,
    days=st.lists(st.sampled_from(cadence.WEEKDAYS), min_size=1, unique=True),
)
def test_weekly_fires_on_a_chosen_day(zone, at, after, days):
    tz = ZoneInfo(zone)
    fired = cadence.next_fire_time(
        spec(cadence="weekly", time_of_day=at, weekdays=days, timezone=zone), after
    )
    assert fired > after
    local_day = fired.astimezone(tz).date()
    assert cadence.WEEKDAYS[local_day.weekday()] in days
    assert_right_wall_time(fired, datetime.combine(local_day, at), tz)
    assert fired - after <= timedelta(days=7, hours=3)


@settings(max_examples=200, deadline=None)
@given(
    zone=st.sampled_from(DST_ZONES),
    after=instants,
    expression=st.sampled_from(["*/10 * * * *", "0 2 * * *", "15 1,2 * * 0", "30 9 1 * *", "0 */3 * * 1-5"]),
)
def test_cron_fires_strictly_after_on_a_matching_wall_time(zone, after, expression):
    tz = ZoneInfo(zone)
    fired = cadence.next_fire_time(spec(cadence="cron", cron_expression=expression, timezone=zone), after)
    assert fired > after
    assert croniter.match(expression, wall(fired, tz)) or is_jump(fired, tz)


@settings(max_examples=200, deadline=None)
@given(
    anchor=instants,
    after=instants,
    minutes=st.integers(min_value=5, max_value=10_000),
    zone=st.sampled_from(DST_ZONES),
)
def test_interval_is_anchored_and_never_drifts(anchor, after, minutes, zone):
    step = timedelta(minutes=minutes)
    schedule = spec(cadence="interval", interval_minutes=minutes, run_at=anchor, timezone=zone)
    fired = cadence.next_fire_time(schedule, after)
    assert fired > after
    assert (fired - anchor) % step == timedelta(0)
    assert fired - after <= step or fired == anchor
    later = cadence.next_fire_times(schedule, fired + timedelta(seconds=37), 3)
    assert [b - a for a, b in zip([fired, *later], later, strict=False)] == [step] * 3


@settings(max_examples=60, deadline=None)
@given(zone=st.sampled_from(DST_ZONES), at=wall_clock, year=st.integers(min_value=2001, max_value=2035))
def test_daily_fires_exactly_once_per_local_day_across_both_dst_changes(zone, at, year):
    tz = ZoneInfo(zone)
    start = datetime(year, 1, 1, tzinfo=tz).astimezone(UTC) - timedelta(seconds=1)
    fired = cadence.next_fire_times(spec(time_of_day=at, timezone=zone), start, 400)
    days = [f.astimezone(tz).date() for f in fired if f.astimezone(tz).year == year]
    expected = [
        date(year, 1, 1) + timedelta(days=n) for n in range((date(year + 1, 1, 1) - date(year, 1, 1)).days)
    ]
    assert days == expected
    assert fired == sorted(set(fired))


@pytest.mark.parametrize(
    "zone, at, after, expected",
    [
        # New York springs forward at 02:00 → 03:00: 02:30 does not exist, fires at the jump.
        ("America/New_York", time(2, 30), datetime(2024, 3, 9, 12, tzinfo=UTC), datetime(2024, 3, 10, 7, tzinfo=UTC)),
        # and falls back at 02:00 → 01:00: 01:30 happens twice, fires at the first (EDT).
        ("America/New_York", time(1, 30), datetime(2024, 11, 2, 12, tzinfo=UTC), datetime(2024, 11, 3, 5, 30, tzinfo=UTC)),
        ("Europe/London", time(1, 15), datetime(2024, 3, 30, 12, tzinfo=UTC), datetime(2024, 3, 31, 1, tzinfo=UTC)),
        # Lord Howe shifts by 30 minutes: 02:00 → 02:30 (+10:30 → +11).
        ("Australia/Lord_Howe", time(2, 15), datetime(2024, 10, 5, tzinfo=UTC), datetime(2024, 10, 5, 15, 30, tzinfo=UTC)),
        ("Australia/Lord_Howe", time(1, 45), datetime(2024, 4, 6, tzinfo=UTC), datetime(2024, 4, 6, 14, 45, tzinfo=UTC)),
    ],
)  # fmt: skip
def test_known_dst_edges(zone, at, after, expected):
    assert cadence.next_fire_time(spec(time_of_day=at, timezone=zone), after) == expected


def test_ambiguous_wall_time_fires_once_on_the_fall_back_day():
    tz = ZoneInfo("America/New_York")
    fired = cadence.next_fire_times(
        spec(cadence="cron", cron_expression="30 1 * * *", timezone="America/New_York"),
        datetime(2024, 11, 2, 12, tzinfo=UTC),
        3,
    )
    assert [f.astimezone(tz).date() for f in fired] == [
        date(2024, 11, 3),
        date(2024, 11, 4),
        date(2024, 11, 5),
    ]


def test_once_fires_once():
    moment = datetime(2030, 5, 1, 9, tzinfo=UTC)
    once = spec(cadence="once", run_at=moment)
    assert cadence.next_fire_time(once, moment - timedelta(days=3)) == moment
    assert cadence.next_fire_time(once, moment) is None
    assert cadence.next_fire_times(once, moment - timedelta(days=3), 5) == [moment]


def test_due_slots_counts_what_a_stopped_dispatcher_passed():
    hourly = spec(cadence="cron", cron_expression="0 * * * *")
    since = datetime(2030, 1, 1, 9, tzinfo=UTC)
    slots = cadence.due_slots(hourly, since, since + timedelta(hours=3, minutes=5))
    assert (slots.latest, slots.earlier, slots.previous) == (
        since + timedelta(hours=3),
        3,
        since + timedelta(hours=2),
    )
    interval = spec(cadence="interval", interval_minutes=60, run_at=since)
    assert cadence.due_slots(interval, since, since + timedelta(hours=3, minutes=5)) == slots


def test_descriptions():
    assert cadence.describe(spec(time_of_day=time(9, 0), timezone="Europe/London")) == (
        "Every day at 09:00 (Europe/London)"
    )
    assert cadence.describe(spec(cadence="cron", cron_expression="30 9 * * 1-5")) == (
        "At 09:30, Monday through Friday (UTC)"
    )
    assert not cadence.is_valid_cron("61 * * * *") and not cadence.is_valid_cron("* * * * * *")
    assert not cadence.is_valid_cron("0 0 30 2 *")  # parses, but no February has a 30th
