"""Follow-ups tab, conversation page, agents, Capabilities and schedules pages."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from agentpress.agents.models import Agent
from automation.models import AgentRun, FollowUp, Schedule
from automation.states import FollowUpStatus
from tests.factories import (
    AgentRunFactory,
    FollowUpFactory,
    MessageFactory,
    ScheduleFactory,
    ThreadFactory,
)

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def follow_ups_url(roster):
    return f"/orgs/{roster.org.slug}/agents/monitor/automation-runs/follow-ups/"


def follow_up(roster, status="pending", run_as=None, **fields):
    return FollowUpFactory(agent=roster.agent, run_as=run_as or roster.member, status=status, **fields)


def follow_up_rows(html: str) -> set[int]:
    return {int(pk) for pk in re.findall(r'<tr id="follow-up-(\d+)"', html)}


# --- follow-ups -----------------------------------------------------------------------------


def test_follow_ups_tab_shows_active_by_default_and_filters_by_status(client, roster, follow_ups_url):
    pending = follow_up(
        roster, stop_conditions=[{"type": "reply_received", "description": "the customer answered"}]
    )
    running = follow_up(roster, status="running")
    done = follow_up(roster, status="completed")
    failed = follow_up(roster, status="failed", last_error="RuntimeError: nope")
    theirs = follow_up(roster, run_as=roster.member2)
    client.force_login(roster.member)

    html = client.get(follow_ups_url).content.decode()
    assert follow_up_rows(html) == {pending.pk, running.pk}
    assert "the customer answered" in html
    assert follow_up_rows(client.get(f"{follow_ups_url}?status=completed").content.decode()) == {done.pk}
    failed_html = client.get(f"{follow_ups_url}?status=failed").content.decode()
    assert follow_up_rows(failed_html) == {failed.pk} and "RuntimeError: nope" in failed_html
    assert follow_up_rows(client.get(f"{follow_ups_url}?status=all").content.decode()) == {
        pending.pk,
        running.pk,
        done.pk,
        failed.pk,
    }
    client.force_login(roster.owner)
    assert theirs.pk in follow_up_rows(client.get(follow_ups_url).content.decode())


def test_cancel_a_pending_follow_up(client, roster, follow_ups_url):
    pending = follow_up(roster)
    running = follow_up(roster, status="running")
    client.force_login(roster.member)

    response = client.post(f"{follow_ups_url}{pending.pk}/cancel/", follow=True)
    assert FollowUp.objects.get(pk=pending.pk).status == FollowUpStatus.CANCELLED
    assert f"Follow-up #{pending.pk} cancelled" in response.content.decode()

    response = client.post(f"{follow_ups_url}{running.pk}/cancel/", follow=True)
    assert "was not cancelled" in response.content.decode()
    assert FollowUp.objects.get(pk=running.pk).status == FollowUpStatus.RUNNING


def test_cancel_with_htmx_answers_the_row(client, roster, follow_ups_url):
    pending = follow_up(roster)
    client.force_login(roster.owner)
    html = client.post(f"{follow_ups_url}{pending.pk}/cancel/?status=active", **HTMX).content.decode()
    assert html.lstrip().startswith(f'<tr id="follow-up-{pending.pk}">')
    assert "status-cancelled" in html
    assert '<template><div id="flash" aria-live="polite" hx-swap-oob="true">' in html


def test_follow_up_outside_the_scope_is_404(client, roster, follow_ups_url):
    theirs = follow_up(roster, run_as=roster.member2)
    client.force_login(roster.member)
    assert client.post(f"{follow_ups_url}{theirs.pk}/cancel/").status_code == 404
    assert FollowUp.objects.get(pk=theirs.pk).status == FollowUpStatus.PENDING


def test_follow_ups_page_query_count(client, roster, follow_ups_url, django_assert_max_num_queries):
    for status in ["pending", "completed"]:
        for _ in range(100):
            follow_up(roster, status=status, thread=ThreadFactory(agent=roster.agent), previous_run=None)
    client.force_login(roster.owner)
    with django_assert_max_num_queries(30):
        assert client.get(f"{follow_ups_url}?status=all").status_code == 200


# --- conversation ---------------------------------------------------------------------------


def test_conversation_page_lists_messages_in_order_with_their_runs(client, roster):
    thread = ThreadFactory(agent=roster.agent, title="Ticket T-1", run_as=roster.member)
    run = AgentRunFactory(agent=roster.agent, run_as=roster.member, thread=thread, status="completed")
    MessageFactory(thread=thread, role="user", content="first question", author=roster.member)
    MessageFactory(thread=thread, role="assistant", content="the answer", run=run)
    url = f"/orgs/acme/threads/{thread.pk}/"

    client.force_login(roster.member)
    html = client.get(url).content.decode()
    assert html.index("first question") < html.index("the answer")
    assert f"/automation-runs/{run.pk}/" in html
    assert "by member" in html

    client.force_login(roster.member2)
    assert client.get(url).status_code == 404
    client.force_login(roster.other_owner)
    assert client.get(url).status_code == 404
    client.force_login(roster.owner)
    assert client.get(url).status_code == 200


def test_conversation_query_count(client, roster, django_assert_max_num_queries):
    thread = ThreadFactory(agent=roster.agent)
    for i in range(200):
        run = AgentRunFactory(agent=roster.agent, run_as=roster.member, thread=thread, status="completed")
        MessageFactory(thread=thread, role="assistant", content=f"reply {i}", run=run)
    client.force_login(roster.owner)
    with django_assert_max_num_queries(20):
        assert client.get(f"/orgs/acme/threads/{thread.pk}/").status_code == 200


# --- agents, capabilities, schedules ---------------------------------------------------------


def capabilities_url(roster) -> str:
    return f"/orgs/acme/agents/{roster.agent.pk}/capabilities/"


def test_capabilities_toggles_are_for_owners_and_admins(client, roster):
    client.force_login(roster.admin)
    client.post(capabilities_url(roster), {"scheduled_runs_enabled": "on"})
    agent = Agent.objects.get(pk=roster.agent.pk)
    assert agent.scheduled_runs_enabled and not agent.self_reschedule_enabled

    client.force_login(roster.member)
    response = client.post(capabilities_url(roster), {"self_reschedule_enabled": "on"}, follow=True)
    assert "Only owners and admins" in response.content.decode()
    assert not Agent.objects.get(pk=roster.agent.pk).self_reschedule_enabled
    assert client.get(f"/orgs/acme/agents/{roster.other_agent.pk}/capabilities/").status_code == 404


def test_schedules_list_says_when_and_why_not(client, roster):
    roster.agent.scheduled_runs_enabled = False
    roster.agent.save()
    ScheduleFactory(
        agent=roster.agent,
        run_as=roster.member,
        name="Nightly digest",
        next_run_at=timezone.now() + timedelta(hours=2),
        missed_count=3,
    )
    client.force_login(roster.owner)
    html = client.get(capabilities_url(roster)).content.decode()
    assert "Nightly digest" in html and "Every 60 minutes" in html
    assert "The agent&#x27;s Scheduled runs capability is off." in html
    assert "<td>3</td>" in html
    tab = client.get("/orgs/acme/agents/monitor/automation-runs/schedules/").content.decode()
    assert "Nightly digest" in tab


def test_create_an_interval_schedule_shows_its_next_run(client, roster):
    client.force_login(roster.member)
    url = f"/orgs/acme/agents/{roster.agent.pk}/schedules/new/"
    assert client.get(url).status_code == 200
    form = {
        "name": "Every half hour",
        "cadence": "interval",
        "interval_minutes": "30",
        "timezone": "Europe/Berlin",
        "instructions": "!reply checking in",
        "run_as": roster.member.pk,
        "enabled": "on",
        "catchup_window": "60",
        "overlap_policy": "skip",
    }
    preview = client.post(url, {**form, "preview": "1"}).content.decode()
    assert preview.count("(Europe/Berlin;") == 5
    assert not Schedule.objects.exists()

    response = client.post(url, form, follow=True)
    schedule = Schedule.objects.get(name="Every half hour")
    assert schedule.run_as == roster.member and schedule.next_run_at is not None
    assert response.redirect_chain[-1][0].endswith(f"#schedule-{schedule.pk}")
    assert "Schedule “Every half hour” saved." in response.content.decode()


def test_schedule_form_shows_service_validation(client, roster):
    client.force_login(roster.owner)
    url = f"/orgs/acme/agents/{roster.agent.pk}/schedules/new/"
    base = {
        "name": "Bad",
        "timezone": "UTC",
        "instructions": "x",
        "run_as": roster.owner.pk,
        "catchup_window": "60",
        "overlap_policy": "skip",
    }
    html = client.post(url, {**base, "cadence": "interval", "interval_minutes": "1"}).content.decode()
    assert "Must be at least 5 minutes." in html
    html = client.post(url, {**base, "cadence": "weekly", "time_of_day": "09:00"}).content.decode()
    assert "Choose at least one weekday." in html
    html = client.post(url, {**base, "cadence": "cron", "cron_expression": "nope"}).content.decode()
    assert "Not a valid cron expression" in html
    assert not Schedule.objects.exists()
    preview = client.get(
        f"/orgs/acme/agents/{roster.agent.pk}/schedules/preview/",
        {**base, "cadence": "daily", "time_of_day": "09:30", "timezone": "America/New_York"},
        **HTMX,
    ).content.decode()
    assert preview.count("09:30 E") == 5


def test_member_may_only_schedule_as_themselves(client, roster):
    client.force_login(roster.member)
    html = client.get(f"/orgs/acme/agents/{roster.agent.pk}/schedules/new/").content.decode()
    assert f'<option value="{roster.member.pk}" selected>member</option>' in html
    assert ">owner</option>" not in html


def test_edit_enable_disable_and_run_now(client, roster):
    schedule = ScheduleFactory(agent=roster.agent, run_as=roster.owner, name="Hourly")
    client.force_login(roster.owner)
    base = f"/orgs/acme/agents/{roster.agent.pk}/schedules/{schedule.pk}/"
    html = client.get(f"{base}edit/").content.decode()
    assert 'value="Hourly"' in html
    client.post(
        f"{base}edit/",
        {
            "name": "Every two hours",
            "cadence": "interval",
            "interval_minutes": "120",
            "timezone": "UTC",
            "instructions": "!reply hi",
            "run_as": roster.owner.pk,
            "enabled": "on",
            "catchup_window": "60",
            "overlap_policy": "skip",
        },
    )
    schedule.refresh_from_db()
    assert schedule.name == "Every two hours" and schedule.interval_minutes == 120

    client.post(f"{base}disable/")
    schedule.refresh_from_db()
    assert not schedule.enabled and schedule.next_run_at is None
    response = client.post(f"{base}run-now/", follow=True)
    assert "did not start a run" in response.content.decode()
    client.post(f"{base}enable/")
    schedule.refresh_from_db()
    assert schedule.enabled and schedule.next_run_at is not None
    response = client.post(f"{base}run-now/", {"back": "schedules"}, follow=True)
    assert "started a run now" in response.content.decode()
    assert response.redirect_chain[-1][0].endswith("/automation-runs/schedules/")
    assert AgentRun.objects.filter(schedule=schedule).count() == 1
    assert client.post(f"{base}explode/").status_code == 404


def test_schedule_pages_query_count(client, roster, django_assert_max_num_queries):
    for i in range(200):
        ScheduleFactory(agent=roster.agent, run_as=roster.member, name=f"Schedule {i:03}")
    client.force_login(roster.owner)
    with django_assert_max_num_queries(100):
        html = client.get("/orgs/acme/agents/monitor/automation-runs/schedules/").content.decode()
    assert html.count('<tr id="schedule-') == 200
    with django_assert_max_num_queries(100):
        assert client.get(capabilities_url(roster)).status_code == 200


def test_agents_list(client, roster):
    client.force_login(roster.member)
    html = client.get("/orgs/acme/agents/").content.decode()
    assert "Support agent" in html and "Globex agent" not in html
