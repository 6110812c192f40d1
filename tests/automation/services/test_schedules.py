from datetime import UTC, datetime, time, timedelta

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from automation.models import AgentRun, Schedule
from automation.services import runs, schedules, settlement
from automation.states import RunSource, RunStatus
from tests.factories import AgentRunFactory
from tests.support.concurrency import run_concurrently
from tests.support.services import require_postgres

T0 = datetime(2030, 1, 1, 8, 30, tzinfo=UTC)


@pytest.fixture
def clock():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def make(roster, **fields):
    defaults = dict(
        name="Hourly digest",
        cadence="interval",
        interval_minutes=60,
        timezone="UTC",
        instructions="!reply digest",
    )
    return schedules.schedule_create(
        organization=roster.org, agent=roster.agent, run_as=roster.owner, **{**defaults, **fields}
    )


def schedule_runs(schedule):
    return list(AgentRun.objects.filter(schedule=schedule).order_by("scheduled_for"))


def reload(schedule):
    return Schedule.objects.get(pk=schedule.pk)


@pytest.mark.sqlite
def test_a_due_slot_becomes_one_run_and_the_schedule_moves_on(roster, clock):
    schedule = make(roster)
    assert schedule.next_run_at == T0 + timedelta(hours=1)  # anchored at creation, no drift
    assert schedules.fire_due_schedules() == 0
    clock.move_to(T0 + timedelta(hours=1, seconds=4))
    assert schedules.fire_due_schedules() == 1
    assert schedules.fire_due_schedules() == 0  # a repeated tick creates nothing
    (run,) = schedule_runs(schedule)
    assert run.source == RunSource.SCHEDULE and run.status == RunStatus.PENDING
    assert run.scheduled_for == T0 + timedelta(hours=1) and run.run_as == roster.owner
    assert (run.context_type, run.context_key) == ("schedule", f"schedule:{schedule.pk}")
    assert run.prompt == "!reply digest"
    schedule = reload(schedule)
    assert schedule.next_run_at == T0 + timedelta(hours=2)
    assert schedule.last_run_at == T0 + timedelta(hours=1, seconds=4)
    assert (schedule.missed_count, schedule.blocked_reason) == (0, "")


@pytest.mark.sqlite
def test_a_slot_that_already_has_a_run_is_not_run_again(roster, clock):
    schedule = make(roster)
    slot = T0 + timedelta(hours=1)
    AgentRunFactory(agent=roster.agent, run_as=roster.owner, schedule=schedule, scheduled_for=slot,
                    status=RunStatus.COMPLETED, source=RunSource.SCHEDULE)  # fmt: skip
    clock.move_to(slot + timedelta(seconds=2))
    assert schedules.fire_due_schedules() == 0  # the slot constraint refuses it; not an error
    assert len(schedule_runs(schedule)) == 1
    schedule = reload(schedule)
    assert schedule.next_run_at == slot + timedelta(hours=1) and schedule.blocked_reason == ""


@pytest.mark.sqlite
def test_a_stopped_dispatcher_fires_the_latest_slot_once_and_counts_the_rest_as_missed(roster, clock):
    schedule = make(roster, cadence="cron", cron_expression="0 * * * *", catchup_window=timedelta(hours=1))
    assert schedule.next_run_at == datetime(2030, 1, 1, 9, tzinfo=UTC)
    clock.move_to(datetime(2030, 1, 1, 12, 0, 30, tzinfo=UTC))  # beat was down for 09:00, 10:00, 11:00
    assert schedules.fire_due_schedules() == 1
    (run,) = schedule_runs(schedule)
    assert run.scheduled_for == datetime(2030, 1, 1, 12, tzinfo=UTC)
    schedule = reload(schedule)
    assert schedule.missed_count == 3
    assert schedule.last_missed_at == datetime(2030, 1, 1, 11, tzinfo=UTC)
    assert schedule.next_run_at == datetime(2030, 1, 1, 13, tzinfo=UTC)


@pytest.mark.sqlite
def test_a_slot_older_than_the_catch_up_window_does_not_fire_late(roster, clock):
    schedule = make(roster, cadence="daily", time_of_day=time(9, 0), catchup_window=timedelta(hours=1))
    clock.move_to(datetime(2030, 1, 1, 11, tzinfo=UTC))
    assert schedules.fire_due_schedules() == 0
    assert schedule_runs(schedule) == []
    schedule = reload(schedule)
    assert schedule.missed_count == 1 and schedule.last_missed_at == datetime(2030, 1, 1, 9, tzinfo=UTC)
    assert "catch-up window" in schedule.blocked_reason
    assert schedule.next_run_at == datetime(2030, 1, 2, 9, tzinfo=UTC)


@pytest.mark.sqlite
def test_once_fires_once(roster, clock):
    schedule = make(roster, cadence="once", run_at=T0 + timedelta(minutes=10))
    clock.move_to(T0 + timedelta(minutes=10, seconds=2))
    assert schedules.fire_due_schedules() == 1
    assert reload(schedule).next_run_at is None
    clock.move_to(T0 + timedelta(days=2))
    assert schedules.fire_due_schedules() == 0


@pytest.mark.sqlite
def test_skip_records_the_slot_while_the_previous_run_is_active(roster, clock):
    schedule = make(roster)
    clock.move_to(T0 + timedelta(hours=1))
    schedules.fire_due_schedules()
    clock.move_to(T0 + timedelta(hours=2))
    assert schedules.fire_due_schedules() == 0
    (first,) = schedule_runs(schedule)
    schedule = reload(schedule)
    assert schedule.skipped_count == 1
    assert str(first.pk) in schedule.blocked_reason
    assert schedule.next_run_at == T0 + timedelta(hours=3)
    assert first.events.filter(kind="schedule_slot_skipped").exists()


@pytest.mark.sqlite
def test_buffer_one_starts_exactly_one_run_after_the_active_one_ends(roster, clock):
    schedule = make(roster, overlap_policy="buffer_one")
    clock.move_to(T0 + timedelta(hours=1))
    schedules.fire_due_schedules()
    (first,) = schedule_runs(schedule)
    for hours in (2, 3):  # two slots pass while the first run is still going: one waits
        clock.move_to(T0 + timedelta(hours=hours))
        assert schedules.fire_due_schedules() == 0
    schedule = reload(schedule)
    assert schedule.buffered_slot == T0 + timedelta(hours=3) and schedule.skipped_count == 1
    assert len(schedule_runs(schedule)) == 1
    clock.move_to(T0 + timedelta(hours=3, minutes=20))
    settlement.cancel_run(run_id=first.pk)
    first_, second = schedule_runs(schedule)
    assert second.scheduled_for == T0 + timedelta(hours=3) and second.status == RunStatus.PENDING
    assert second.metadata["trigger"] == "buffered"
    assert reload(schedule).buffered_slot is None
    settlement.cancel_run(run_id=second.pk)  # nothing waits any more: nothing starts
    assert len(schedule_runs(schedule)) == 2


@pytest.mark.sqlite
def test_allow_starts_alongside_the_active_run(roster, clock):
    schedule = make(roster, overlap_policy="allow")
    for hours in (1, 2):
        clock.move_to(T0 + timedelta(hours=hours))
        assert schedules.fire_due_schedules() == 1
    first, second = schedule_runs(schedule)
    assert first.status == second.status == RunStatus.PENDING
    assert first.context_key != second.context_key


@pytest.mark.sqlite
@pytest.mark.parametrize("gate", ["org", "capability"])
def test_nothing_fires_while_gated_and_reopening_does_not_burst(roster, clock, gate):
    schedule = make(roster)
    target = roster.org if gate == "org" else roster.agent
    field = "automations_enabled" if gate == "org" else "scheduled_runs_enabled"
    setattr(target, field, False)
    target.save()
    for hours in range(1, 5):  # beat keeps ticking while automations are off
        clock.move_to(T0 + timedelta(hours=hours, seconds=3))
        assert schedules.fire_due_schedules() == 0
    schedule = reload(schedule)
    assert schedule_runs(schedule) == []
    assert ("turned off" if gate == "org" else "Scheduled runs") in schedule.blocked_reason
    clock.move_to(T0 + timedelta(hours=4, minutes=25))
    setattr(target, field, True)
    target.save()
    assert schedules.fire_due_schedules() == 0
    assert reload(schedule).next_run_at == T0 + timedelta(hours=5)  # the next slot from now
    clock.move_to(T0 + timedelta(hours=5, seconds=1))
    assert schedules.fire_due_schedules() == 1
    schedule = reload(schedule)
    assert schedule.missed_count == 0 and schedule.blocked_reason == ""


@pytest.mark.sqlite
def test_run_now_respects_the_overlap_policy_and_the_gates(roster, clock):
    schedule = make(roster)
    started = schedules.schedule_run_now(schedule=schedule, actor=roster.owner)
    assert started.outcome == "started" and started.run.metadata == {"trigger": "run_now", "by": "owner"}
    skipped = schedules.schedule_run_now(schedule=schedule, actor=roster.owner)
    assert skipped.outcome == "skipped" and skipped.active_run == started.run
    assert reload(schedule).skipped_count == 1
    settlement.cancel_run(run_id=started.run.pk)
    roster.org.automations_enabled = False
    roster.org.save()
    blocked = schedules.schedule_run_now(schedule=schedule, actor=roster.owner)
    assert blocked.outcome == "blocked" and "turned off" in blocked.reason
    assert AgentRun.objects.filter(schedule=schedule).count() == 1


@pytest.mark.sqlite
def test_update_and_enable_recompute_from_now_and_disable_keeps_the_row(roster, clock):
    schedule = make(roster, cadence="daily", time_of_day=time(9, 0), timezone="Europe/London")
    assert schedule.next_run_at == datetime(2030, 1, 1, 9, tzinfo=UTC)
    schedule = schedules.schedule_update(
        schedule=schedule, time_of_day=time(7, 0), timezone="America/New_York"
    )
    assert schedule.next_run_at == datetime(2030, 1, 1, 12, tzinfo=UTC)
    schedule = schedules.schedule_set_enabled(schedule=schedule, enabled=False)
    assert reload(schedule).enabled is False and reload(schedule).next_run_at is None
    clock.move_to(datetime(2030, 1, 3, 13, tzinfo=UTC))
    assert schedules.fire_due_schedules() == 0
    schedule = schedules.schedule_set_enabled(schedule=schedule, enabled=True)
    assert schedule.next_run_at == datetime(2030, 1, 4, 12, tzinfo=UTC)


@pytest.mark.sqlite
def test_checks_name_every_bad_field(roster, clock):
    with pytest.raises(ValidationError) as bad:
        make(roster, cadence="weekly", weekdays=[], timezone="Mars/Olympus", catchup_window=timedelta(0))
    assert set(bad.value.message_dict) == {"weekdays", "timezone", "time_of_day", "catchup_window"}
    with pytest.raises(ValidationError) as bad:
        make(roster, interval_minutes=1)
    assert "at least 5 minutes" in bad.value.message_dict["interval_minutes"][0]
    with pytest.raises(ValidationError) as bad:
        make(roster, cadence="cron", cron_expression="* * * * *")
    assert "more often" in bad.value.message_dict["cron_expression"][0]
    with pytest.raises(ValidationError) as bad:
        make(roster, cadence="once", run_at=T0 - timedelta(minutes=1))
    assert "future" in bad.value.message_dict["run_at"][0]
    with pytest.raises(ValidationError) as bad:
        schedules.schedule_create(
            organization=roster.org, agent=roster.agent, run_as=roster.other_owner, name="x",
            cadence="interval", interval_minutes=60, timezone="UTC", instructions="x",
        )  # fmt: skip
    assert list(bad.value.message_dict) == ["run_as"]


@pytest.mark.sqlite
def test_a_broken_schedule_is_recorded_and_the_others_still_fire(roster, clock, monkeypatch):
    broken, fine = make(roster, name="broken"), make(roster, name="fine")
    real = runs.run_build

    def run_build(**kwargs):
        if kwargs["schedule"] == broken:
            raise RuntimeError("runtime misconfigured")
        return real(**kwargs)

    monkeypatch.setattr(runs, "run_build", run_build)
    clock.move_to(T0 + timedelta(hours=1))
    assert schedules.fire_due_schedules() == 1
    assert len(schedule_runs(fine)) == 1 and schedule_runs(broken) == []
    broken = reload(broken)
    assert "runtime misconfigured" in broken.blocked_reason
    assert broken.next_run_at == T0 + timedelta(hours=2)


def test_a_tick_costs_the_same_however_many_schedules_are_not_due(roster, clock, django_assert_num_queries):
    make(roster, name="due soon")
    with django_assert_num_queries(3):  # savepoint, claim, release
        schedules.fire_due_schedules()
    Schedule.objects.bulk_create(
        Schedule(
            organization=roster.org, agent=roster.agent, run_as=roster.owner, name=f"later {n}",
            cadence="interval", interval_minutes=60, run_at=T0, timezone="UTC", instructions="x",
            next_run_at=T0 + timedelta(hours=1 + n % 24),
        )
        for n in range(3000)
    )  # fmt: skip
    with django_assert_num_queries(3):
        schedules.fire_due_schedules()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE agent_run_schedules")
        plan = (
            Schedule.objects.select_for_update(skip_locked=True, no_key=True, of=("self",))
            .filter(enabled=True, next_run_at__lte=timezone.now())
            .order_by("next_run_at", "id")[:200]
            .explain()
        )
        assert "schedules_due" in plan


@pytest.mark.django_db(transaction=True)
def test_two_dispatchers_over_a_thousand_due_schedules_create_each_slot_once(roster, monkeypatch):
    require_postgres()
    monkeypatch.setattr(runs, "dispatch_run", lambda **kwargs: True)  # no broker needed here
    slot = timezone.now().replace(microsecond=0) - timedelta(minutes=1)
    Schedule.objects.bulk_create(
        Schedule(
            organization=roster.org, agent=roster.agent, run_as=roster.owner, name=f"s{n}", cadence="interval",
            interval_minutes=60, run_at=slot, timezone="UTC", instructions="!reply tick", next_run_at=slot,
        )
        for n in range(1000)
    )  # fmt: skip
    started = run_concurrently(schedules.fire_due_schedules)
    assert sum(started) == 1000
    assert AgentRun.objects.filter(source=RunSource.SCHEDULE, scheduled_for=slot).count() == 1000
    assert AgentRun.objects.values("schedule").distinct().count() == 1000
    assert not Schedule.objects.filter(next_run_at__lte=timezone.now()).exists()
    assert schedules.fire_due_schedules() == 0
    assert AgentRun.objects.count() == 1000
