from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from automation import tools
from automation.models import AgentRun, FollowUp
from automation.services import follow_ups, recovery, runs, settlement
from automation.services.execution import execute_run
from automation.states import FollowUpStatus, InvalidTransition, RunSource, RunStatus
from tests.factories import AgentRunFactory, FollowUpFactory, MessageFactory
from tests.support.concurrency import run_concurrently
from tests.support.model_stub import ModelStub, Reply, completion, tool_call
from tests.support.services import require_postgres

START = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
TWO_DAYS = "!follow_up 172800 check back on the refund\n!stop_when reply_received"


@pytest.fixture
def clock(time_machine):
    time_machine.move_to(START, tick=True)
    return time_machine


def run_script(roster, prompt, **kw):
    run = runs.run_create(
        agent=roster.agent, run_as=roster.member, source=RunSource.MANUAL, prompt=prompt, **kw
    )
    assert execute_run(run_id=run.pk, worker="test") == "completed"
    run.refresh_from_db()
    return run


def kinds(run):
    return list(run.events.values_list("kind", flat=True))


def running_lease(roster, **kw):
    run = AgentRunFactory(agent=roster.agent, run_as=roster.member, **kw)
    return runs.claim_run(run_id=run.pk, worker="test")


@pytest.mark.sqlite
def test_scripted_follow_up_fires_once_two_days_later_in_the_same_thread(roster, clock):
    first = run_script(roster, TWO_DAYS, context_type="email_thread", context_key="conv-1")
    follow_up = FollowUp.objects.get()
    assert (follow_up.status, follow_up.thread_id, follow_up.previous_run_id) == (
        FollowUpStatus.PENDING,
        first.thread_id,
        first.pk,
    )
    assert (follow_up.run_as, follow_up.context_key) == (roster.member, "conv-1")
    assert follow_up.stop_conditions == [
        {
            "type": "reply_received",
            "description": follow_ups.stop_conditions.DEFAULT_DESCRIPTIONS["reply_received"],
        }
    ]
    assert follow_ups.fire_due_follow_ups() == 0  # not due yet

    clock.move_to(START + timedelta(days=2, minutes=1), tick=True)
    assert follow_ups.fire_due_follow_ups() == 1
    assert follow_ups.fire_due_follow_ups() == 0
    second = AgentRun.objects.get(source=RunSource.FOLLOW_UP)
    assert (second.thread_id, second.previous_run_id, second.follow_up_id) == (
        first.thread_id,
        first.pk,
        follow_up.pk,
    )
    assert second.prompt.startswith("check back on the refund")
    assert "reply_received" in second.prompt and f"Previous run {first.pk} ended completed" in second.prompt
    follow_up.refresh_from_db()
    assert (follow_up.status, follow_up.run_id) == (
        FollowUpStatus.RUNNING,
        second.pk,
    ) and follow_up.claimed_at

    assert execute_run(run_id=second.pk, worker="test") == "completed"
    follow_up.refresh_from_db()
    second.refresh_from_db()
    assert (second.status, follow_up.status) == (RunStatus.COMPLETED, FollowUpStatus.COMPLETED)
    assert follow_up.completed_at is not None
    assert "follow_up_settled" in kinds(second)
    assert {"follow_up_scheduled", "follow_up_fired"} <= set(kinds(first))
    assert AgentRun.objects.filter(source=RunSource.FOLLOW_UP).count() == 1


@pytest.mark.sqlite
def test_an_inbound_reply_cancels_the_follow_up_naming_the_message(roster, clock):
    first = run_script(roster, TWO_DAYS)
    clock.move_to(START + timedelta(hours=5), tick=True)
    reply = MessageFactory(thread=first.thread, role="event", content="Refund received, thanks!")
    clock.move_to(START + timedelta(days=2, minutes=1), tick=True)
    assert follow_ups.fire_due_follow_ups() == 0
    follow_up = FollowUp.objects.get()
    assert follow_up.status == FollowUpStatus.CANCELLED and follow_up.cancelled_at
    assert "reply_received" in follow_up.cancel_reason and f"message {reply.pk}" in follow_up.cancel_reason
    assert not AgentRun.objects.filter(source=RunSource.FOLLOW_UP).exists()


@pytest.mark.sqlite
def test_the_openai_runtime_schedules_through_tool_calling(roster, settings):
    stub = ModelStub().start()
    settings.AUTOMATION_MODEL_ENDPOINTS = {"stub": {"base_url": stub.url}}
    arguments = {
        "delay_seconds": 3600,
        "continuation_prompt": "Ask again",
        "stop_conditions": [{"type": "reply_received"}],
    }
    stub.replies = [
        Reply(body=completion(None, tool_calls=[tool_call("schedule_follow_up", arguments)])),
        Reply(body=completion("I will check back in an hour.")),
    ]
    roster.agent.runtime, roster.agent.runtime_config = "openai", {"endpoint": "stub", "model": "m"}
    roster.agent.save()
    try:
        run = run_script(roster, "Quote sent; follow up if they stay silent.")
    finally:
        stub.stop()
    assert stub.requests[0]["body"]["tools"][0]["function"]["name"] == "schedule_follow_up"
    follow_up = FollowUp.objects.get()
    assert (follow_up.previous_run_id, follow_up.continuation_prompt) == (run.pk, "Ask again")
    assert run.thread.messages.filter(role="assistant", content="I will check back in an hour.").exists()


@pytest.mark.sqlite
def test_capability_off_the_call_is_refused_and_nothing_is_stored(roster):
    roster.agent.self_reschedule_enabled = False
    roster.agent.save()
    run = run_script(roster, TWO_DAYS)
    assert not FollowUp.objects.exists()
    refusal = run.thread.messages.get(role="tool")
    assert refusal.content.startswith("Follow-up refused")


@pytest.mark.sqlite
@pytest.mark.parametrize("switch", ["org", "agent"])
def test_capability_turned_off_during_the_run_refuses_with_the_reason(roster, switch):
    lease = running_lease(roster)
    (tool,) = tools.tools_for_run(run=lease.run, lease_token=lease.token)
    target = roster.org if switch == "org" else roster.agent
    target.automations_enabled = target.self_reschedule_enabled = False
    target.save()
    result = tool.call({"delay_seconds": "3600", "continuation_prompt": "later"})
    assert result["ok"] is False
    assert ("Agent Run Automations" if switch == "org" else "Self-reschedule") in result["error"]
    assert not FollowUp.objects.exists()
    assert "follow_up_refused" in kinds(lease.run)


@pytest.mark.sqlite
@pytest.mark.parametrize("switch", ["org", "agent"])
def test_capability_turned_off_after_scheduling_cancels_at_fire_time(roster, clock, switch):
    run_script(roster, TWO_DAYS)
    target = roster.org if switch == "org" else roster.agent
    target.automations_enabled = target.self_reschedule_enabled = False
    target.save()
    clock.move_to(START + timedelta(days=2, minutes=1), tick=True)
    assert follow_ups.fire_due_follow_ups() == 0
    follow_up = FollowUp.objects.get()
    assert follow_up.status == FollowUpStatus.CANCELLED
    assert ("Agent Run Automations" if switch == "org" else "Self-reschedule") in follow_up.cancel_reason
    assert not AgentRun.objects.filter(source=RunSource.FOLLOW_UP).exists()


@pytest.mark.sqlite
@pytest.mark.parametrize(
    "arguments, reason",
    [
        ({"delay_seconds": "10", "continuation_prompt": "x"}, "at least 60 seconds"),
        ({"delay_seconds": 91 * 86400, "continuation_prompt": "x"}, "beyond that horizon"),
        ({"delay_seconds": "soon", "continuation_prompt": "x"}, "must be a number"),
        ({"continuation_prompt": "x"}, "exactly one of delay_seconds"),
        ({"delay_seconds": 120, "at": "2030-01-01T00:00:00Z", "continuation_prompt": "x"}, "exactly one"),
        ({"delay_seconds": 120}, "continuation_prompt is required"),
        ({"delay_seconds": 120, "continuation_prompt": "x", "stop_conditions": [{"type": "moon"}]}, "unknown type"),
        ({"delay_seconds": 120, "continuation_prompt": "x", "stop_conditions": ["reply"]}, "must be an object"),
        ({"delay_seconds": 120, "continuation_prompt": "x", "stop_conditions": [{"type": "deadline"}]}, "needs 'at'"),
        (
            {"delay_seconds": 120, "continuation_prompt": "x", "stop_conditions": [{"type": "deadline", "at": "tomorrow"}]},
            "not an ISO 8601",
        ),
        (
            {"delay_seconds": 7200, "continuation_prompt": "x", "stop_conditions": [{"type": "deadline", "at": "2000-01-01T00:00:00Z"}]},
            "could never run",
        ),
        (
            {"delay_seconds": 120, "continuation_prompt": "x", "stop_conditions": [{"type": "reply_received", "at": "x"}]},
            "does not take at",
        ),
        ("not an object", "must be an object"),
    ],
)  # fmt: skip
def test_bad_requests_are_refused_with_a_reason_and_store_nothing(roster, arguments, reason):
    lease = running_lease(roster)
    result = follow_ups.schedule_follow_up(run_id=lease.run.pk, lease_token=lease.token, arguments=arguments)
    assert result["ok"] is False and reason in result["error"], result
    assert not FollowUp.objects.exists()


@pytest.mark.sqlite
def test_a_moment_and_a_deadline_are_accepted(roster):
    lease = running_lease(roster)
    at = timezone.now() + timedelta(hours=3)
    result = follow_ups.schedule_follow_up(
        run_id=lease.run.pk,
        lease_token=lease.token,
        arguments={
            "at": at.isoformat(),
            "continuation_prompt": "ping",
            "stop_conditions": [
                {"type": "deadline", "at": (at + timedelta(hours=1)).isoformat(), "description": "EOD"}
            ],
        },
    )
    assert result["ok"] is True
    follow_up = FollowUp.objects.get(pk=result["follow_up_id"])
    assert follow_up.scheduled_for == at and follow_up.stop_conditions[0]["description"] == "EOD"


@pytest.mark.sqlite
def test_too_many_pending_follow_ups_for_the_context_are_refused(roster, settings):
    settings.AUTOMATION_FOLLOW_UP_MAX_PENDING_PER_CONTEXT = 2
    lease = running_lease(roster, context_type="ticket", context_key="T-9")
    call = {"delay_seconds": 600, "continuation_prompt": "again"}
    results = [
        follow_ups.schedule_follow_up(run_id=lease.run.pk, lease_token=lease.token, arguments=call)
        for _ in range(3)
    ]
    assert [r["ok"] for r in results] == [True, True, False]
    assert "already has 2 pending follow-ups" in results[2]["error"]
    assert FollowUp.objects.count() == 2


@pytest.mark.sqlite
def test_a_run_that_lost_its_lease_cannot_schedule(roster):
    lease = running_lease(roster)
    settlement.cancel_run(run_id=lease.run.pk, reason="test")
    result = follow_ups.schedule_follow_up(
        run_id=lease.run.pk,
        lease_token=lease.token,
        arguments={"delay_seconds": 600, "continuation_prompt": "x"},
    )
    assert result["ok"] is False and "no longer holds its lease" in result["error"]
    assert not FollowUp.objects.exists()


@pytest.mark.sqlite
def test_a_busy_context_makes_the_follow_up_wait_then_fire(roster, clock, settings):
    first = run_script(roster, TWO_DAYS, context_type="ticket", context_key="T-1")
    clock.move_to(START + timedelta(days=2, minutes=1), tick=True)
    busy = AgentRunFactory(
        agent=roster.agent,
        run_as=roster.member,
        context_type="ticket",
        context_key="T-1",
        thread=first.thread,
    )
    AgentRun.objects.filter(pk=busy.pk).update(
        created_at=START
    )  # started before the follow-up: no stop condition
    assert follow_ups.fire_due_follow_ups() == 0
    follow_up = FollowUp.objects.get()
    assert follow_up.status == FollowUpStatus.PENDING
    assert follow_up.scheduled_for >= timezone.now() + timedelta(
        seconds=settings.AUTOMATION_FOLLOW_UP_WAIT_RETRY_SECONDS - 1
    )
    waits = first.events.filter(kind="follow_up_waiting")
    assert waits.count() == 1 and waits.get().detail["active_run_id"] == str(busy.pk)

    settlement.cancel_run(run_id=busy.pk, reason="done elsewhere")
    clock.move_to(START + timedelta(days=2, minutes=2), tick=True)
    assert follow_ups.fire_due_follow_ups() == 1
    assert AgentRun.objects.get(source=RunSource.FOLLOW_UP).previous_run_id == first.pk


@pytest.mark.sqlite
def test_context_active_and_deadline_cancel_with_their_evidence(roster, clock):
    first = run_script(
        roster,
        "!follow_up 3600 nudge\n!stop_when context_active\n!follow_up 7200 last call\n!stop_when deadline 7300",
        context_type="ticket",
        context_key="T-2",
    )
    clock.move_to(START + timedelta(minutes=30), tick=True)
    other = run_script(roster, "!reply handled by a person", context_type="ticket", context_key="T-2")
    clock.move_to(START + timedelta(hours=3), tick=True)
    assert follow_ups.fire_due_follow_ups() == 0
    nudge, last_call = FollowUp.objects.order_by("scheduled_for")
    assert nudge.status == last_call.status == FollowUpStatus.CANCELLED
    assert "context_active" in nudge.cancel_reason and str(other.pk) in nudge.cancel_reason
    assert "deadline" in last_call.cancel_reason
    assert first.events.filter(kind="follow_up_cancelled").count() == 2


@pytest.mark.sqlite
@pytest.mark.parametrize(
    "prompt, run_status, follow_up_status",
    [("!fail upstream 503", RunStatus.FAILED, FollowUpStatus.FAILED), ("!reply ok", RunStatus.CANCELLED, FollowUpStatus.CANCELLED)],
)  # fmt: skip
def test_the_follow_up_ends_with_its_run(roster, run_status, prompt, follow_up_status):
    follow_up = FollowUpFactory(
        agent=roster.agent, run_as=roster.member, scheduled_for=timezone.now(), continuation_prompt=prompt
    )
    assert follow_ups.fire_due_follow_ups() == 1
    run = AgentRun.objects.get(follow_up=follow_up)
    if run_status == RunStatus.CANCELLED:
        settlement.cancel_run(run_id=run.pk, reason="test")
    else:
        execute_run(run_id=run.pk, worker="test")
    follow_up.refresh_from_db()
    assert follow_up.status == follow_up_status
    if follow_up_status == FollowUpStatus.FAILED:
        assert follow_up.last_error == "upstream 503"


@pytest.mark.sqlite
def test_cancel_follow_up_only_while_pending(roster):
    pending = FollowUpFactory(agent=roster.agent, run_as=roster.member)
    cancelled = follow_ups.cancel_follow_up(follow_up_id=pending.pk, actor=roster.owner)
    assert cancelled.status == FollowUpStatus.CANCELLED and cancelled.cancel_reason == "Cancelled by owner."
    assert cancelled.cancelled_at is not None
    with pytest.raises(InvalidTransition):
        follow_ups.cancel_follow_up(follow_up_id=pending.pk, actor=roster.owner)
    due = FollowUpFactory(agent=roster.agent, run_as=roster.member, scheduled_for=timezone.now())
    follow_ups.fire_due_follow_ups()
    with pytest.raises(InvalidTransition, match="running"):
        follow_ups.cancel_follow_up(follow_up_id=due.pk, actor=roster.owner)


@pytest.mark.sqlite
def test_sweep_settles_a_follow_up_left_running_after_a_crash(roster, monkeypatch):
    follow_up = FollowUpFactory(agent=roster.agent, run_as=roster.member, scheduled_for=timezone.now())
    follow_ups.fire_due_follow_ups()
    run = AgentRun.objects.get(follow_up=follow_up)
    with monkeypatch.context() as patch:
        patch.setattr(follow_ups, "settle_follow_up", lambda *, run: None)  # the crash: settling never ran
        assert execute_run(run_id=run.pk, worker="test") == "completed"
    follow_up.refresh_from_db()
    assert follow_up.status == FollowUpStatus.RUNNING

    assert recovery.sweep()["follow_ups_repaired"] == 1
    follow_up.refresh_from_db()
    assert follow_up.status == FollowUpStatus.COMPLETED and follow_up.completed_at
    assert "follow_up_repaired" in kinds(run)
    assert recovery.sweep()["follow_ups_repaired"] == 0


@pytest.mark.sqlite
def test_sweep_interrupts_a_run_whose_follow_up_bookkeeping_broke(roster):
    follow_up = FollowUpFactory(agent=roster.agent, run_as=roster.member, scheduled_for=timezone.now())
    follow_ups.fire_due_follow_ups()
    run = AgentRun.objects.get(follow_up=follow_up)
    FollowUp.objects.filter(pk=follow_up.pk).update(status=FollowUpStatus.CANCELLED)  # broken by hand
    assert recovery.interrupt_runs_with_broken_follow_ups() == 1
    run.refresh_from_db()
    assert run.status == RunStatus.INTERRUPTED
    assert "Follow-up bookkeeping broken" in run.last_error and str(follow_up.pk) in run.last_error
    assert "follow_up_bookkeeping_broken" in kinds(run)


@pytest.mark.sqlite
def test_sweep_fails_a_running_follow_up_whose_run_is_gone(roster):
    follow_up = FollowUpFactory(agent=roster.agent, run_as=roster.member, scheduled_for=timezone.now())
    follow_ups.fire_due_follow_ups()
    AgentRun.objects.filter(follow_up=follow_up).delete()
    assert follow_ups.repair_bookkeeping() == 1
    follow_up.refresh_from_db()
    assert follow_up.status == FollowUpStatus.FAILED and "no longer exists" in follow_up.last_error


@pytest.mark.sqlite
def test_a_failing_follow_up_is_kept_visible_and_does_not_block_the_queue(roster, monkeypatch):
    broken = FollowUpFactory(
        agent=roster.agent, run_as=roster.member, scheduled_for=timezone.now() - timedelta(hours=1)
    )
    fine = FollowUpFactory(agent=roster.agent, run_as=roster.member, scheduled_for=timezone.now())
    real = follow_ups.continuation_prompt

    def explode(follow_up):
        if follow_up.pk == broken.pk:
            raise RuntimeError("boom")
        return real(follow_up)

    monkeypatch.setattr(follow_ups, "continuation_prompt", explode)
    assert follow_ups.fire_due_follow_ups() == 1
    broken.refresh_from_db()
    assert broken.status == FollowUpStatus.PENDING and "boom" in broken.last_error
    assert broken.scheduled_for > timezone.now()
    assert AgentRun.objects.get(source=RunSource.FOLLOW_UP).follow_up_id == fine.pk


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_firings_over_500_due_follow_ups_start_exactly_500_runs(roster, monkeypatch):
    require_postgres()
    monkeypatch.setattr(runs, "dispatch_run", lambda *, run_id, **_: True)  # no broker needed
    due = timezone.now() - timedelta(minutes=1)
    FollowUp.objects.bulk_create(
        FollowUp(
            organization=roster.org,
            agent=roster.agent,
            run_as=roster.member,
            continuation_prompt=f"!reply {n}",
            scheduled_for=due,
            context_type="ticket",
            context_key=f"T-{n}",
        )
        for n in range(500)
    )
    started = run_concurrently(follow_ups.fire_due_follow_ups)
    assert sum(started) == 500 and all(started), started  # both shared the work
    assert AgentRun.objects.filter(source=RunSource.FOLLOW_UP).count() == 500
    assert FollowUp.objects.filter(status=FollowUpStatus.RUNNING, run__isnull=False).count() == 500
