"""The monitor console in a real browser: cards, filters, detail, follow-ups, schedules, bulk, live updates."""

import re
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from agentpress.orgs.permissions import access_for
from automation import selectors
from automation.models import AgentRun, FollowUp, RunEvent
from automation.services.runs import claim_run
from automation.services.settlement import complete_run
from automation.states import FollowUpStatus, RunStatus
from tests.factories import (
    ActionFactory,
    AgentFactory,
    AgentRunFactory,
    FollowUpFactory,
    ScheduleFactory,
    ThreadFactory,
)

pytestmark = pytest.mark.browser

RUNS = "/orgs/acme/agents/monitor/automation-runs/"
ERROR = "TimeoutError: the CRM did not answer within 30 s"


@pytest.fixture
def seeded(roster):
    """A day of automation in Acme: every status, every source, threads, a schedule and follow-ups."""
    now = timezone.now()
    billing = AgentFactory(organization=roster.org, name="Billing agent")
    hook = ActionFactory(agent=roster.agent, run_as=roster.member, name="Zendesk ticket webhook")
    digest = ScheduleFactory(
        agent=billing,
        run_as=roster.admin,
        name="Nightly invoice digest",
        next_run_at=now + timedelta(hours=5),
    )
    made = []
    plan = [
        ("completed", "schedule", billing, roster.admin, {"schedule": digest}),
        ("completed", "provider_event", roster.agent, roster.member, {"action": hook}),
        ("failed", "provider_event", roster.agent, roster.member, {"action": hook, "last_error": ERROR}),
        ("failed", "manual", billing, roster.owner, {"last_error": "ValueError: unknown invoice INV-7"}),
        ("running", "follow_up", roster.agent, roster.member, {}),
        ("pending", "manual", roster.agent, roster.member2, {}),
        ("pending", "schedule", billing, roster.admin, {"schedule": digest}),
        ("pending", "provider_event", roster.agent, roster.member, {"action": hook}),
        ("cancelled", "manual", billing, roster.owner, {}),
        ("interrupted", "provider_event", roster.agent, roster.member, {"last_error": "Lease expired on w2"}),
    ]
    for i, (status, source, agent, user, extra) in enumerate(plan):
        started = now - timedelta(minutes=50 - i * 4)
        thread = ThreadFactory(agent=agent, title=f"Ticket T-{100 + i}", context_type="ticket")
        run = AgentRunFactory(
            agent=agent,
            run_as=user,
            status=status,
            source=source,
            thread=thread,
            context_type="ticket" if source == "provider_event" else "",
            context_key=f"T-{100 + i}" if source == "provider_event" else "",
            started_at=None if status == "pending" else started,
            heartbeat_at=now if status == "running" else None,
            lease_owner="w1@worker-1" if status == "running" else "",
            lease_expires_at=now + timedelta(seconds=60) if status == "running" else None,
            completed_at=started + timedelta(seconds=20 + i)
            if status not in ("pending", "running")
            else None,
            attempt=0 if status == "pending" else 1,
            input_snapshot={"prompt": f"Handle ticket T-{100 + i}", "runtime": "scripted"},
            **extra,
        )
        AgentRun.objects.filter(pk=run.pk).update(created_at=started - timedelta(seconds=5))
        RunEvent.objects.create(run=run, kind="created", detail={"source": source})
        if status != "pending":
            RunEvent.objects.create(run=run, kind="claimed", detail={"worker": "w1@worker-1", "attempt": 1})
        if status == "failed":
            RunEvent.objects.create(run=run, kind="failed", detail={"error": run.last_error})
        made.append(run)
    follow_up = FollowUpFactory(
        agent=roster.agent,
        run_as=roster.member,
        previous_run=made[1],
        thread=made[1].thread,
        continuation_prompt="Check whether the customer confirmed the refund.",
        stop_conditions=[{"type": "reply_received", "description": "the customer wrote back"}],
        scheduled_for=now + timedelta(hours=2),
    )
    return SimpleNamespace(runs=made, follow_up=follow_up, billing=billing, **vars(roster))


def card(page, key: str):
    return page.locator(f'[data-card="{key}"]')


def test_cards_filter_detail_and_screenshots(page, sign_in, seeded, screenshot):
    sign_in("owner")
    page.get_by_text("Agents", exact=True).click()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Automation Runs").click()
    page.wait_for_url(f"**{RUNS}")

    summary = selectors.runs_summary(access_for(seeded.owner, seeded.org))
    for status in RunStatus.values:
        assert card(page, status).inner_text() == str(summary[status])
    assert card(page, "scheduled").inner_text() == str(summary["scheduled"])
    assert card(page, "follow-ups").inner_text() == str(summary["active_follow_ups"])
    assert page.locator("tr.run-row").count() == len(seeded.runs)
    # the table says how long ago, with the absolute UTC time on hover
    first_time = page.locator("tr.run-row time").first
    assert first_time.inner_text().endswith(" ago")
    assert first_time.get_attribute("title").endswith("UTC")
    screenshot(page, "runs.png")

    page.locator("a.card-failed").click()
    page.wait_for_url(re.compile(r"\?status=failed$"))
    assert page.locator("a.card-failed").get_attribute("aria-current") == "true"
    rows = page.locator("tr.run-row")
    assert rows.count() == 2
    assert rows.locator(".status-failed").count() == 2

    failed = next(r for r in seeded.runs if r.last_error == ERROR)
    page.locator(f"#run-{failed.pk} td a.mono").click()
    page.wait_for_url(f"**{RUNS}{failed.pk}/?status=failed")
    panel = page.locator("#detail-panel")
    assert ERROR in panel.locator("pre.error-text").inner_text()
    expect(panel.get_by_text("Zendesk ticket webhook")).to_be_visible()
    # the panel's absolute times are shown in the viewer's timezone, with UTC on hover
    created = panel.locator("time:not([data-relative])").first
    assert created.inner_text().endswith(("CET", "CEST", "GMT+1", "GMT+2"))
    assert created.get_attribute("title").endswith("UTC")
    screenshot(page, "run-detail.png")

    page.go_back()
    page.wait_for_url(re.compile(r"\?status=failed$"))


def test_cancel_a_pending_follow_up_in_place(page, sign_in, seeded):
    sign_in("member")
    page.goto(f"{RUNS}follow-ups/")
    page.evaluate("window.__sameDocument = true")
    row = page.locator(f"#follow-up-{seeded.follow_up.pk}")
    assert "the customer wrote back" in row.inner_text()
    row.get_by_role("button", name=f"Cancel follow-up {seeded.follow_up.pk}").click()
    page.locator(f"#follow-up-{seeded.follow_up.pk} .status-cancelled").wait_for()
    assert page.evaluate("window.__sameDocument") is True
    assert "cancelled" in page.locator("#flash").inner_text()
    assert FollowUp.objects.get(pk=seeded.follow_up.pk).status == FollowUpStatus.CANCELLED


def test_create_an_interval_schedule_shows_its_next_run(page, sign_in, seeded):
    sign_in("admin")
    page.goto(f"/orgs/acme/agents/{seeded.agent.pk}/capabilities/")
    page.get_by_role("link", name="New schedule").click()
    page.get_by_label("Name").fill("Inbox sweep")
    page.get_by_label("Cadence").select_option("interval")
    page.get_by_label("Every (minutes)").fill("15")
    page.get_by_label("Timezone").select_option("Europe/Berlin")
    page.get_by_label("Instructions (the prompt)").fill("!reply swept the inbox")
    page.locator("#preview li").nth(4).wait_for()
    page.get_by_role("button", name="Create schedule").click()
    page.wait_for_url(re.compile(r"/capabilities/#schedule-\d+$"))
    schedule = seeded.agent.schedules.get(name="Inbox sweep")
    row = page.locator(f"#schedule-{schedule.pk}")
    assert "Every 15 minutes (Europe/Berlin)" in row.inner_text()
    assert row.locator(".next-run time").get_attribute("datetime") == schedule.next_run_at.isoformat()


def test_bulk_cancel_all_pending_runs_of_a_filter(page, sign_in, seeded):
    pending = AgentRun.objects.filter(status=RunStatus.PENDING).count()
    sign_in("owner")
    page.goto(f"{RUNS}?status=pending")
    page.get_by_label(re.compile(r"all \d+ runs? matching this filter")).check()
    page.get_by_role("button", name="Cancel…").click()
    assert page.get_by_role("heading", name=f"Cancel {pending} runs?").is_visible()
    page.get_by_role("button", name=f"Yes, cancel {pending} runs").click()
    page.wait_for_url(re.compile(r"\?status=pending$"))
    assert f"Cancelled {pending} runs." in page.locator("#flash").inner_text()
    assert AgentRun.objects.filter(status=RunStatus.PENDING).count() == 0
    assert card(page, "pending").inner_text() == "0"


def test_a_completed_run_updates_the_cards_without_reloading(page, sign_in, roster):
    run = AgentRunFactory(agent=roster.agent, run_as=roster.member, status="pending")
    lease = claim_run(run_id=run.pk, worker="browser-test")
    sign_in("owner")
    page.goto(RUNS)
    page.evaluate("window.__sameDocument = true")
    assert card(page, "running").inner_text() == "1"
    assert card(page, "completed").inner_text() == "0"

    assert complete_run(
        run=lease.run, lease_token=lease.token, messages=[], tool_calls=[], worker="browser-test"
    )
    expect(card(page, "completed")).to_have_text("1", timeout=15000)
    assert card(page, "running").inner_text() == "0"
    assert page.locator(f"#run-{run.pk} .status-completed").is_visible()
    assert page.evaluate("window.__sameDocument") is True
    # nothing is active any more: the fast poll stopped, only the idle arrival check is left
    assert page.locator("#summary-cards").get_attribute("data-polling") == "idle"
