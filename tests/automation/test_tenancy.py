"""Tenant safety (issue 13, defects 1, 2, 3, 9, 10, 11): the invariant of ``automation/scope.py``.

Nothing of user A reaches a page, an API answer or a thread that member B can read; a
context is one run-as user's work; a run has one retry; a disabled agent and a removed
member start nothing. Each test is named after the defect it closes.
"""

import html
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction
from django.test import RequestFactory
from rest_framework.test import APIClient

from agentpress.agents.models import MessageRole, Thread
from agentpress.orgs.admin import owner_admin_site
from agentpress.orgs.models import Membership
from automation import scope
from automation.models import AgentRun, FollowUp, ProviderEvent, Schedule
from automation.services import follow_ups, provider_events, runs, schedules, settlement
from automation.services.provider_events import InboundEvent, ingest_event
from automation.states import FollowUpStatus, InvalidTransition, ProviderEventStatus, RunSource, RunStatus
from tests.factories import ActionFactory, AgentRunFactory, FollowUpFactory, ThreadFactory
from tests.support.concurrency import run_concurrently
from tests.support.services import require_postgres

API = "/api/orgs/acme/agent-runs"
RUNS_PAGE = "/orgs/acme/agents/monitor/automation-runs"
T0 = datetime(2030, 1, 1, 8, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    monkeypatch.setattr(runs, "dispatch_run", lambda *, run_id, **_: True)


@pytest.fixture
def api():
    return APIClient()


def event(n, key="T-1", context_type="ticket") -> InboundEvent:
    return InboundEvent(
        event_id=f"evt-{n}",
        context_type=context_type,
        context_key=key,
        payload={"ticket": {"id": key}, "n": n},
        content=f"secret content of event {n}",
    )


def finish(run, status=RunStatus.COMPLETED):
    lease = runs.claim_run(run_id=run.pk, worker="w1")
    assert lease is not None
    if status == RunStatus.COMPLETED:
        assert settlement.complete_run(
            run=lease.run, lease_token=lease.token, messages=[], tool_calls=[], worker="w1"
        )
    else:
        assert settlement.fail_run(run=lease.run, lease_token=lease.token, error="boom", worker="w1")


def manual(api, user, **body):
    api.force_authenticate(user)
    return api.post(API, body, format="json")


# --- defect 1: a member reads another user's conversation through threadId ----------------------


def test_defect1_member_cannot_attach_a_run_to_the_owners_thread(api, roster, client):
    owners = AgentRunFactory(agent=roster.agent, run_as=roster.owner, status=RunStatus.COMPLETED)
    owners.thread.messages.create(role=MessageRole.ASSISTANT, content="the owner's private answer")

    response = manual(
        api, roster.member, agentId=roster.agent.pk, prompt="!reply hi", threadId=owners.thread_id
    )

    assert response.status_code == 400, response.content
    assert "threadId" in response.json()
    assert not roster.member.agent_runs.exists()
    client.force_login(roster.member)
    page = client.get(f"/orgs/acme/threads/{owners.thread_id}/")
    assert page.status_code == 404
    assert "private answer" not in page.content.decode()


def test_defect1_member_attaches_to_their_own_thread(api, roster):
    mine = AgentRunFactory(agent=roster.agent, run_as=roster.member, status=RunStatus.COMPLETED)
    response = manual(
        api, roster.member, agentId=roster.agent.pk, prompt="!reply again", threadId=mine.thread_id
    )
    assert response.status_code == 201, response.content
    assert response.json()["threadId"] == mine.thread_id


def test_defect1_owner_cannot_pour_a_members_run_into_the_owners_thread(api, roster):
    owners = AgentRunFactory(agent=roster.agent, run_as=roster.owner, status=RunStatus.COMPLETED)
    body = {
        "agentId": roster.agent.pk,
        "prompt": "x",
        "threadId": owners.thread_id,
        "runAsId": roster.member.pk,
    }
    response = manual(api, roster.owner, **body)
    assert response.status_code == 400 and "threadId" in response.json()
    assert not roster.member.agent_runs.exists()


def test_defect1_every_run_source_is_refused_another_users_thread(roster):
    owners_thread = ThreadFactory(agent=roster.agent, run_as=roster.owner)
    for source in RunSource.values:
        with pytest.raises(scope.ThreadOutOfScope):
            runs.run_create(
                agent=roster.agent, run_as=roster.member, source=source, prompt="x", thread=owners_thread
            )
    assert not AgentRun.objects.exists()
    assert not owners_thread.messages.exists()


def test_defect1_a_members_run_on_a_legacy_owners_thread_does_not_open_it(roster, client):
    """A thread is read by its own user only, even when another user's run ended up on it."""
    owners_thread = ThreadFactory(agent=roster.agent, run_as=roster.owner)
    owners_thread.messages.create(role=MessageRole.EVENT, content="owner's customer e-mail")
    AgentRunFactory(agent=roster.agent, run_as=roster.member, thread=owners_thread, status="failed")
    client.force_login(roster.member)
    assert client.get(f"/orgs/acme/threads/{owners_thread.pk}/").status_code == 404


def test_defect1_retry_of_a_run_on_another_users_thread_starts_its_own(roster):
    owners_thread = ThreadFactory(agent=roster.agent, run_as=roster.owner)
    failed = AgentRunFactory(agent=roster.agent, run_as=roster.member, thread=owners_thread, status="failed")
    retry = runs.retry_run(run_id=failed.pk, actor=roster.member)
    assert retry.thread_id != owners_thread.pk
    assert retry.thread.run_as == roster.member
    assert not owners_thread.messages.filter(run=retry).exists()


# --- defect 2: context squatting -----------------------------------------------------------------


def test_defect2_a_members_manual_run_does_not_capture_the_owners_events(api, roster):
    squat = manual(
        api,
        roster.member,
        agentId=roster.agent.pk,
        prompt="!sleep 600",
        contextType="ticket",
        contextKey="T-1",
    )
    assert squat.status_code == 201
    squat_run = AgentRun.objects.get(pk=squat.json()["id"])
    owners_action = ActionFactory(agent=roster.agent, run_as=roster.owner, context_type="ticket")

    outcome = ingest_event(action=owners_action, event=event(1))

    assert outcome.outcome == ProviderEventStatus.STARTED
    started = outcome.event.run
    assert started.run_as == roster.owner and started.pk != squat_run.pk
    assert started.thread.run_as == roster.owner and started.thread_id != squat_run.thread_id
    assert not squat_run.thread.messages.filter(content__contains="secret content").exists()
    assert not squat_run.deferred_events.exists()
    # and the owner's event is not written into anything the member can read
    api.force_authenticate(roster.member)
    assert "secret content" not in api.get(f"{API}/{squat_run.pk}").content.decode()


def test_defect2_a_members_action_on_the_owners_context_type_keeps_to_itself(roster):
    members_action = ActionFactory(agent=roster.agent, run_as=roster.member, context_type="ticket")
    owners_action = ActionFactory(agent=roster.agent, run_as=roster.owner, context_type="ticket")
    members_run = ingest_event(action=members_action, event=event(1)).event.run
    owners = ingest_event(action=owners_action, event=event(2))
    assert owners.outcome == ProviderEventStatus.STARTED
    assert owners.event.run.run_as == roster.owner
    assert owners.event.run.thread_id != members_run.thread_id
    # the owner's next event continues the owner's thread, never the member's
    finish(owners.event.run)
    again = ingest_event(action=owners_action, event=event(3))
    assert again.event.run.thread_id == owners.event.run.thread_id
    members_contents = set(members_run.thread.messages.values_list("content", flat=True))
    assert not {"secret content of event 2", "secret content of event 3"} & members_contents


def test_defect2_two_users_may_each_have_an_active_run_on_one_context(roster):
    """The partial unique index keys on the run-as user: neither blocks nor absorbs the other."""
    mine = runs.run_create(
        agent=roster.agent,
        run_as=roster.member,
        source=RunSource.MANUAL,
        prompt="x",
        context_type="ticket",
        context_key="T-1",
    )
    theirs = runs.run_create(
        agent=roster.agent,
        run_as=roster.owner,
        source=RunSource.MANUAL,
        prompt="y",
        context_type="ticket",
        context_key="T-1",
    )
    assert mine.status == theirs.status == RunStatus.PENDING
    with pytest.raises(runs.ContextBusy) as busy:
        runs.run_create(
            agent=roster.agent,
            run_as=roster.member,
            source=RunSource.MANUAL,
            prompt="z",
            context_type="ticket",
            context_key="T-1",
        )
    assert busy.value.active_run == mine
    with pytest.raises(IntegrityError), transaction.atomic():
        AgentRunFactory(agent=roster.agent, run_as=roster.owner, context_type="ticket", context_key="T-1")


def test_defect2_manual_runs_may_not_use_the_schedule_context(api, roster, time_machine):
    time_machine.move_to(T0, tick=False)
    schedule = schedules.schedule_create(
        organization=roster.org, agent=roster.agent, run_as=roster.owner, name="Digest", cadence="interval",
        interval_minutes=60, timezone="UTC", instructions="!reply digest",
    )  # fmt: skip
    body = {"agentId": roster.agent.pk, "prompt": "!sleep 600", "contextType": "schedule"}
    response = manual(api, roster.member, **body, contextKey=f"schedule:{schedule.pk}")
    assert response.status_code == 400
    assert "reserved for schedule runs" in response.json()["contextType"][0]
    assert manual(api, roster.owner, **body, contextKey="x").status_code == 400
    assert not AgentRun.objects.exists()
    time_machine.move_to(T0 + timedelta(hours=1, seconds=1), tick=False)
    assert schedules.fire_due_schedules() == 1  # the owner's slot is not skipped
    assert Schedule.objects.get(pk=schedule.pk).skipped_count == 0


def test_defect2_actions_may_not_use_the_schedule_context(api, roster):
    api.force_authenticate(roster.member)
    body = {"agentId": roster.agent.pk, "name": "Squat", "provider": "webhook", "contextType": "schedule"}
    response = api.post("/api/orgs/acme/actions", body, format="json")
    assert response.status_code == 400 and "contextType" in response.json()
    # an action stored so before this rule starts nothing and says why
    stored = ActionFactory(agent=roster.agent, run_as=roster.member, context_type="schedule")
    outcome = ingest_event(action=stored, event=event(1, context_type="schedule"))
    assert outcome.outcome == ProviderEventStatus.IGNORED
    assert "reserved for schedule runs" in outcome.event.reason
    assert not AgentRun.objects.exists()


def test_defect2_follow_ups_do_not_wait_behind_another_users_run(roster, time_machine):
    time_machine.move_to(T0, tick=False)
    AgentRunFactory(agent=roster.agent, run_as=roster.owner, context_type="ticket", context_key="T-1")
    thread = ThreadFactory(agent=roster.agent, run_as=roster.member, context_type="ticket", context_key="T-1")
    follow_up = FollowUpFactory(
        agent=roster.agent, run_as=roster.member, thread=thread, context_type="ticket", context_key="T-1",
        scheduled_for=T0 - timedelta(seconds=1),
    )  # fmt: skip
    assert follow_ups.fire_due_follow_ups() == 1
    follow_up.refresh_from_db()
    assert follow_up.status == FollowUpStatus.RUNNING and follow_up.run.run_as == roster.member


# --- defect 3: the drain coalesces per action ---------------------------------------------------


def test_defect3_deferred_events_of_two_actions_start_in_turn_under_their_own_action(roster):
    triage = ActionFactory(agent=roster.agent, run_as=roster.owner, instructions="Triage the ticket.")
    billing = ActionFactory(agent=roster.agent, run_as=roster.owner, instructions="Bill the customer.")
    owner_run = ingest_event(action=triage, event=event(1)).event.run
    ingest_event(action=billing, event=InboundEvent("b-2", "ticket", "T-1", {"n": 2}, "event b-2"))
    ingest_event(action=triage, event=event(3))
    ingest_event(action=billing, event=InboundEvent("b-4", "ticket", "T-1", {"n": 4}, "event b-4"))

    finish(owner_run)

    # the action of the earliest deferred event goes first, with only its own events
    billed = AgentRun.objects.get(previous_run=owner_run)
    assert billed.action == billing and billed.prompt.startswith("Bill the customer.")
    assert billed.input_snapshot["event_ids"] == ["b-2", "b-4"]
    waiting = ProviderEvent.objects.get(event_id="evt-3")
    assert (waiting.status, waiting.deferred_behind_id) == ("deferred", billed.pk)

    finish(billed)

    triaged = AgentRun.objects.get(previous_run=billed)
    assert triaged.action == triage and triaged.prompt.startswith("Triage the ticket.")
    assert triaged.input_snapshot["event_ids"] == ["evt-3"]
    assert sorted(ProviderEvent.objects.values_list("status", flat=True)) == [
        "coalesced", "coalesced", "coalesced", "started",
    ]  # fmt: skip


def test_defect3_actions_of_different_run_as_users_never_coalesce(roster):
    owners = ActionFactory(agent=roster.agent, run_as=roster.owner, instructions="Owner's hook.")
    members = ActionFactory(agent=roster.agent, run_as=roster.member, instructions="Member's hook.")
    owner_run = ingest_event(action=owners, event=event(1)).event.run
    ingest_event(action=owners, event=event(2))
    member_event = ingest_event(action=members, event=InboundEvent("m-3", "ticket", "T-1", {"n": 3}, "m-3"))
    assert member_event.outcome == ProviderEventStatus.STARTED  # not deferred behind the owner's run
    finish(owner_run)
    follow = AgentRun.objects.get(previous_run=owner_run)
    assert follow.run_as == roster.owner and follow.input_snapshot["event_ids"] == ["evt-2"]


def test_defect3_the_recovery_sweep_also_keeps_actions_apart(roster):
    first_action = ActionFactory(agent=roster.agent, run_as=roster.owner, instructions="Triage.")
    second_action = ActionFactory(agent=roster.agent, run_as=roster.owner, instructions="Bill.")
    owner_run = ingest_event(action=first_action, event=event(1)).event.run
    ingest_event(action=second_action, event=InboundEvent("b-2", "ticket", "T-1", {"n": 2}, "b-2"))
    ingest_event(action=first_action, event=event(3))
    # the run ends without draining (a crash between its end and the drain)
    AgentRun.objects.filter(pk=owner_run.pk).update(status=RunStatus.FAILED)

    assert provider_events.drain_missed_contexts() == 1

    started = AgentRun.objects.exclude(pk=owner_run.pk).get()
    assert started.action == second_action and started.input_snapshot["event_ids"] == ["b-2"]
    assert ProviderEvent.objects.get(event_id="evt-3").deferred_behind == started


# --- defect 9: one retry per run -----------------------------------------------------------------


def test_defect9_a_second_api_retry_is_409_naming_the_first(api, roster):
    failed = AgentRunFactory(agent=roster.agent, run_as=roster.member, status=RunStatus.FAILED)
    api.force_authenticate(roster.owner)
    first = api.post(f"{API}/{failed.pk}/retry")
    assert first.status_code == 201
    second = api.post(f"{API}/{failed.pk}/retry")
    assert second.status_code == 409
    assert second.json()["retryRunId"] == first.json()["id"]
    assert first.json()["id"] in second.json()["detail"]
    assert AgentRun.objects.filter(retry_of=failed).count() == 1


def test_defect9_console_and_admin_retries_after_a_first_retry_are_refused(roster, client):
    failed = AgentRunFactory(agent=roster.agent, run_as=roster.owner, status=RunStatus.FAILED)
    first = runs.retry_run(run_id=failed.pk, actor=roster.owner)
    client.force_login(roster.owner)
    page = client.post(f"{RUNS_PAGE}/{failed.pk}/retry/", follow=True).content.decode()
    assert f"already retried as run {first.pk}" in page
    admin = owner_admin_site._registry[AgentRun]
    request = RequestFactory().post("/admin/")
    request.user = roster.superuser
    request._messages = _Messages()
    admin.retry_runs(request, AgentRun.objects.filter(pk=failed.pk))
    assert AgentRun.objects.filter(retry_of=failed).count() == 1


def test_defect9_the_database_refuses_a_second_retry(roster):
    failed = AgentRunFactory(agent=roster.agent, run_as=roster.owner, status=RunStatus.FAILED)
    AgentRunFactory(agent=roster.agent, run_as=roster.owner, retry_of=failed, status=RunStatus.FAILED)
    with pytest.raises(IntegrityError), transaction.atomic():
        AgentRunFactory(agent=roster.agent, run_as=roster.owner, retry_of=failed)


@pytest.mark.django_db(transaction=True)
def test_defect9_two_concurrent_retries_make_one_run_and_the_loser_names_it(roster):
    require_postgres()
    failed = AgentRunFactory(agent=roster.agent, run_as=roster.owner, status=RunStatus.FAILED)

    def attempt():
        try:
            return str(runs.retry_run(run_id=failed.pk).pk)
        except runs.AlreadyRetried as refused:
            return f"refused, retried as {refused.retry.pk}"

    results = run_concurrently(attempt)

    (retry,) = AgentRun.objects.filter(retry_of=failed)
    assert sorted(results) == sorted([str(retry.pk), f"refused, retried as {retry.pk}"])


class _Messages:
    def __init__(self):
        self.sent = []

    def add(self, level, message, extra_tags=""):
        self.sent.append(str(message))


# --- defect 10: a disabled agent does not run ---------------------------------------------------


def test_defect10_manual_run_and_retry_of_a_disabled_agent_are_409(api, roster, client):
    failed = AgentRunFactory(agent=roster.agent, run_as=roster.owner, status=RunStatus.FAILED)
    roster.agent.enabled = False
    roster.agent.save()
    response = manual(api, roster.owner, agentId=roster.agent.pk, prompt="!reply hi")
    assert response.status_code == 409 and "disabled" in response.json()["detail"]
    assert api.post(f"{API}/{failed.pk}/retry").status_code == 409
    client.force_login(roster.owner)
    page = client.post(f"{RUNS_PAGE}/{failed.pk}/retry/", follow=True).content.decode()
    assert "is disabled" in page
    assert AgentRun.objects.count() == 1


def test_defect10_schedules_follow_ups_and_events_of_a_disabled_agent_start_nothing(roster, time_machine):
    time_machine.move_to(T0, tick=False)
    schedule = schedules.schedule_create(
        organization=roster.org, agent=roster.agent, run_as=roster.owner, name="Digest", cadence="interval",
        interval_minutes=60, timezone="UTC", instructions="!reply digest",
    )  # fmt: skip
    follow_up = FollowUpFactory(
        agent=roster.agent, run_as=roster.owner, scheduled_for=T0 + timedelta(minutes=1)
    )
    action = ActionFactory(agent=roster.agent, run_as=roster.owner)
    roster.agent.enabled = False
    roster.agent.save()
    time_machine.move_to(T0 + timedelta(hours=1, seconds=1), tick=False)

    assert schedules.fire_due_schedules() == 0
    assert follow_ups.fire_due_follow_ups() == 0
    outcome = ingest_event(action=action, event=event(1))

    assert Schedule.objects.get(pk=schedule.pk).blocked_reason == "The agent is disabled."
    follow_up.refresh_from_db()
    assert follow_up.status == FollowUpStatus.CANCELLED and "disabled" in follow_up.cancel_reason
    assert outcome.outcome == ProviderEventStatus.IGNORED and outcome.event.reason == "The agent is disabled."
    assert not AgentRun.objects.exists()
    with pytest.raises(runs.AgentDisabled):
        runs.run_create(agent=roster.agent, run_as=roster.owner, source=RunSource.SCHEDULE, prompt="x")


# --- defect 11: a removed member's work stops firing -------------------------------------------


def members_work(roster):
    schedule = schedules.schedule_create(
        organization=roster.org, agent=roster.agent, run_as=roster.member, name="Member digest",
        cadence="interval", interval_minutes=60, timezone="UTC", instructions="!reply digest",
    )  # fmt: skip
    follow_up = FollowUpFactory(
        agent=roster.agent, run_as=roster.member, scheduled_for=T0 + timedelta(minutes=1)
    )
    action = ActionFactory(agent=roster.agent, run_as=roster.member)
    failed = AgentRunFactory(agent=roster.agent, run_as=roster.member, status=RunStatus.FAILED)
    return schedule, follow_up, action, failed


def end_membership(roster, how):
    if how == "removed":
        Membership.objects.filter(organization=roster.org, user=roster.member).delete()
    elif how == "lost_permission":
        Membership.objects.filter(organization=roster.org, user=roster.member).update(permissions=[])
    else:
        roster.member.is_active = False
        roster.member.save()


@pytest.mark.parametrize(
    "how, reason",
    [
        ("removed", "member is no longer a member of the organization."),
        ("lost_permission", "member no longer holds the actions:manage permission."),
        ("deactivated", "member's account is deactivated."),
    ],
)
def test_defect11_an_ended_membership_stops_the_members_work_with_the_reason(
    roster, time_machine, client, how, reason
):
    time_machine.move_to(T0, tick=False)
    schedule, follow_up, action, failed = members_work(roster)
    end_membership(roster, how)
    client.force_login(roster.owner)
    page = html.unescape(client.get(f"{RUNS_PAGE}/schedules/").content.decode())
    assert reason in page  # the operator sees why before the next slot is due
    time_machine.move_to(T0 + timedelta(hours=1, seconds=1), tick=False)

    assert schedules.fire_due_schedules() == 0
    assert follow_ups.fire_due_follow_ups() == 0
    outcome = ingest_event(action=action, event=event(1))
    with pytest.raises(InvalidTransition, match=re.escape(reason)):
        runs.retry_run(run_id=failed.pk, actor=roster.owner)

    schedule = Schedule.objects.get(pk=schedule.pk)
    assert schedule.enabled and reason in schedule.blocked_reason  # kept, not deleted
    follow_up.refresh_from_db()
    assert follow_up.status == FollowUpStatus.CANCELLED and reason in follow_up.cancel_reason
    assert outcome.outcome == ProviderEventStatus.IGNORED and reason in outcome.event.reason
    assert AgentRun.objects.filter(run_as=roster.member).count() == 1  # only the old failed run
    api = APIClient()
    api.force_authenticate(roster.owner)
    body = api.get(f"/api/orgs/acme/agent-run-schedules/{schedule.pk}").json()
    assert reason in body["blockedReason"]
    assert reason in api.get("/api/orgs/acme/agent-run-follow-ups", {"status": "cancelled"}).content.decode()
    assert reason in api.get("/api/orgs/acme/provider-events").content.decode()
    actions = {row["id"]: row["blockedReason"] for row in api.get("/api/orgs/acme/actions").json()["results"]}
    assert reason in actions[str(action.pk)]


def test_defect11_a_re_admitted_member_fires_again(roster, time_machine):
    time_machine.move_to(T0, tick=False)
    schedule, _, action, _ = members_work(roster)
    membership = Membership.objects.get(organization=roster.org, user=roster.member)
    role, permissions = membership.role, membership.permissions
    membership.delete()
    time_machine.move_to(T0 + timedelta(hours=1, seconds=1), tick=False)
    assert schedules.fire_due_schedules() == 0

    Membership.objects.create(organization=roster.org, user=roster.member, role=role, permissions=permissions)
    time_machine.move_to(T0 + timedelta(hours=2, seconds=1), tick=False)

    assert schedules.fire_due_schedules() == 1  # the next slot, no burst of the missed one
    assert Schedule.objects.get(pk=schedule.pk).blocked_reason == ""
    assert ingest_event(action=action, event=event(2)).outcome == ProviderEventStatus.STARTED
    api = APIClient()
    api.force_authenticate(roster.owner)
    actions = {row["id"]: row["blockedReason"] for row in api.get("/api/orgs/acme/actions").json()["results"]}
    assert actions[str(action.pk)] == ""


def test_defect11_a_manual_run_as_a_member_without_the_permission_is_refused(api, roster):
    Membership.objects.filter(organization=roster.org, user=roster.member).update(permissions=[])
    response = manual(api, roster.owner, agentId=roster.agent.pk, prompt="x", runAsId=roster.member.pk)
    assert response.status_code == 400
    assert "actions:manage" in response.json()["runAsId"][0]
    assert not AgentRun.objects.exists()


# --- threads are created as their run-as user's ---------------------------------------------------


def test_new_threads_belong_to_the_work_that_made_them(roster):
    run = runs.run_create(agent=roster.agent, run_as=roster.member, source=RunSource.MANUAL, prompt="x")
    action = ActionFactory(agent=roster.agent, run_as=roster.owner)
    event_run = ingest_event(action=action, event=event(1)).event.run
    assert run.thread.run_as == roster.member and event_run.thread.run_as == roster.owner
    assert Thread.objects.filter(run_as__isnull=True).count() == 0


def test_follow_up_fire_keeps_the_run_as_users_thread(roster, time_machine):
    time_machine.move_to(T0, tick=False)
    thread = ThreadFactory(agent=roster.agent, run_as=roster.member)
    FollowUpFactory(
        agent=roster.agent, run_as=roster.member, thread=thread, scheduled_for=T0 - timedelta(seconds=1)
    )
    assert follow_ups.fire_due_follow_ups() == 1
    assert FollowUp.objects.get().run.thread == thread


def test_defect2_and_10_start_run_refuses_the_schedule_context_and_a_disabled_agent(roster):
    args = ["start_run", "--org", "acme", "--agent", str(roster.agent.pk), "--as", "member", "--prompt", "x"]
    with pytest.raises(CommandError, match="reserved for schedule runs"):
        call_command(*args, "--context-type", "schedule", "--context-key", "schedule:1")
    roster.agent.enabled = False
    roster.agent.save()
    with pytest.raises(CommandError, match="is disabled"):
        call_command(*args)
    assert not AgentRun.objects.exists()
