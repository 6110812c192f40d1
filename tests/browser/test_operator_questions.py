"""The operator's questions, each answered in at most two clicks from the runs page."""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from automation.models import FollowUpRefusal, ProviderEvent, RefusedDelivery
from automation.services.settlement import cancel_run
from automation.states import ProviderEventStatus, RunStatus
from tests.factories import ActionFactory, AgentRunFactory, FollowUpFactory, ScheduleFactory, ThreadFactory

pytestmark = pytest.mark.browser

RUNS = "/orgs/acme/agents/monitor/automation-runs/"


@pytest.fixture
def day(roster):
    now = timezone.now()
    hook = ActionFactory(agent=roster.agent, run_as=roster.member, name="Ticket hook")
    thread = ThreadFactory(agent=roster.agent, title="ticket: T-9")
    failed = AgentRunFactory(
        agent=roster.agent, run_as=roster.member, status=RunStatus.FAILED, thread=thread,
        last_error="TimeoutError: the CRM did not answer", started_at=now - timedelta(minutes=5),
        completed_at=now - timedelta(minutes=4), attempt=1,
    )  # fmt: skip
    stuck = AgentRunFactory(
        agent=roster.agent, run_as=roster.member, status=RunStatus.RUNNING, started_at=now - timedelta(minutes=9),
        heartbeat_at=now - timedelta(minutes=8), lease_expires_at=now - timedelta(minutes=7), lease_owner="w1", attempt=1,
    )  # fmt: skip
    ProviderEvent.objects.create(
        organization=roster.org, action=hook, agent=roster.agent, event_id="evt_ignored",
        status=ProviderEventStatus.IGNORED, reason="No context key at /ticket/id",
    )  # fmt: skip
    RefusedDelivery.objects.create(organization=roster.org, action=hook, reason="signature", body_size=10)
    FollowUpRefusal.objects.create(
        organization=roster.org, agent=roster.agent, run=failed, run_as=roster.member,
        code="invalid_request", reason="delay_seconds must be at least 60 seconds",
    )  # fmt: skip
    ScheduleFactory(
        agent=roster.agent, run_as=roster.member, name="Nightly digest", next_run_at=now + timedelta(hours=3)
    )
    FollowUpFactory(
        agent=roster.agent,
        run_as=roster.member,
        continuation_prompt="Check the refund",
        scheduled_for=now + timedelta(hours=2),
    )
    cancelled = AgentRunFactory(agent=roster.agent, run_as=roster.member, status=RunStatus.PENDING)
    cancel_run(run_id=cancelled.pk, actor=roster.admin, reason="customer withdrew")
    return {"failed": failed, "stuck": stuck}


def test_ten_operator_questions_in_two_clicks_each(page, sign_in, roster, day):
    sign_in("owner")

    def ask(*clicks, answer):
        page.goto(RUNS)
        assert len(clicks) <= 2
        for click in clicks:
            click()
            page.wait_for_load_state("networkidle")
        expect(answer()).to_be_visible()

    runs = lambda: page.locator("tr.run-row")  # noqa: E731
    # 1. What is running right now?
    ask(
        lambda: page.locator("a.card-running").click(), answer=lambda: runs().locator(".status-running").first
    )
    # 2. Why did this run fail?
    ask(
        lambda: (page.locator("a.card-failed").click(), page.wait_for_url("**?status=failed")),
        lambda: page.locator(f"#run-{day['failed'].pk} td a.mono").click(),
        answer=lambda: page.locator("#detail-panel pre.error-text", has_text="the CRM did not answer"),
    )
    # 3. Is a worker gone quiet on a run? (flagged in the row: no click)
    ask(answer=lambda: page.locator(f"#run-{day['stuck'].pk} .stale"))
    # 4. What runs next on a schedule?
    ask(
        lambda: page.locator("a.card-scheduled").click(),
        answer=lambda: page.get_by_text("Nightly digest").first,
    )
    # 5. What has an agent queued for itself?
    ask(
        lambda: page.locator("a.card-follow-ups").click(), answer=lambda: page.get_by_text("Check the refund")
    )
    # 6. Why did a provider event not start a run?
    ask(
        lambda: page.get_by_role("link", name="Provider events").click(),
        answer=lambda: page.get_by_text("No context key at /ticket/id"),
    )
    # 7. Was a delivery refused before it was stored?
    ask(
        lambda: page.get_by_role("link", name="Provider events").click(),
        lambda: page.get_by_role("link", name="Refused").click(),
        answer=lambda: page.locator("tr.refused-row", has_text="signature"),
    )
    # 8. Did the agent ask for a follow-up that was refused?
    ask(
        lambda: page.get_by_role("link", name="Follow-ups", exact=True).click(),
        lambda: page.get_by_role("link", name="Refused").click(),
        answer=lambda: page.locator("tr.refusal-row", has_text="at least 60 seconds"),
    )
    # 9. What did the agent write in that conversation?
    ask(
        lambda: page.locator(f"#run-{day['failed'].pk}").get_by_role("link", name="ticket: T-9").click(),
        answer=lambda: page.get_by_role("heading", name="Runs in this conversation"),
    )
    # 10. Who cancelled that run, and why?
    ask(
        lambda: page.get_by_role("link", name="Audit trail").click(),
        answer=lambda: page.locator("tr.audit-row", has_text="customer withdrew"),
    )


def test_the_audit_trail_filters_by_actor(page, sign_in, roster, day, screenshot):
    sign_in("owner")
    page.goto(RUNS)
    page.get_by_role("link", name="Audit trail").click()
    expect(page.locator("tr.audit-row")).to_have_count(1)
    page.get_by_label("By (username)").fill("owner")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator(".empty")).to_contain_text("No audit entries match these filters")
    page.get_by_label("By (username)").fill("admin")
    page.get_by_role("button", name="Apply filters").click()
    row = page.locator("tr.audit-row")
    expect(row).to_contain_text("cancelled")
    expect(row).to_contain_text("customer withdrew")
    screenshot(page, "audit-trail.png")
