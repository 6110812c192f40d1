"""The runs page stays live and stable in a real browser: new runs arrive, the panel survives its actions."""

import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from automation.models import AgentRun
from automation.services.execution import execute_run
from automation.services.runs import run_create
from automation.states import RunSource, RunStatus
from monitor.views import runs as runs_views
from tests.factories import ActionFactory, AgentRunFactory

pytestmark = pytest.mark.browser

RUNS = "/orgs/acme/agents/monitor/automation-runs/"


@pytest.fixture
def quick_idle_check(monkeypatch):
    # The idle check's interval is what this test waits on; a short one keeps the wait short.
    monkeypatch.setattr(runs_views, "IDLE_POLL_SECONDS", 1)


def test_a_run_started_while_the_page_is_open_appears(page, sign_in, roster, quick_idle_check):
    done = AgentRunFactory(agent=roster.agent, run_as=roster.member, status=RunStatus.COMPLETED)
    sign_in("owner")
    page.goto(RUNS)
    page.evaluate("window.__sameDocument = true")
    expect(page.locator("#summary-cards")).to_have_attribute("data-polling", "idle")
    assert page.locator("tr.run-row").count() == 1

    arrived = AgentRunFactory(agent=roster.agent, run_as=roster.admin, status=RunStatus.PENDING)
    expect(page.locator(f"#run-{arrived.pk} .status-pending")).to_be_visible()
    expect(page.locator('[data-card="pending"]')).to_have_text("1")
    # the run is active now: the cards poll fast until it settles
    expect(page.locator("#summary-cards")).to_have_attribute("data-polling", "active")
    assert page.locator("tr.run-row").first.get_attribute("id") == f"run-{arrived.pk}"
    assert page.locator(f"#run-{done.pk}").is_visible()
    assert page.evaluate("window.__sameDocument") is True


def test_the_open_panel_survives_cancel_and_retry(page, sign_in, roster):
    run = AgentRunFactory(agent=roster.agent, run_as=roster.member, status=RunStatus.PENDING)
    sign_in("owner")
    page.goto(f"{RUNS}{run.pk}/")
    page.evaluate("window.__sameDocument = true")
    panel = page.locator("#detail-panel")

    panel.get_by_role("button", name="Cancel run").click()
    expect(page.locator(f"#run-{run.pk} .status-cancelled")).to_be_visible()
    expect(panel.locator(".panel-head .status-cancelled")).to_be_visible()
    expect(page.locator("#flash")).to_contain_text("Run cancelled")
    page.wait_for_load_state("networkidle")
    expect(panel.get_by_role("button", name="Retry as a new run")).to_be_visible()

    panel.get_by_role("button", name="Retry as a new run").click()
    expect(page.locator("#flash")).to_contain_text("Retry queued as a new run; this is it.")
    retry = AgentRun.objects.get(retry_of=run)
    expect(panel.locator(".panel-head .mono")).to_have_text(str(retry.pk)[:8])
    expect(page.locator(f"#run-{retry.pk}")).to_be_visible()
    page.wait_for_load_state("networkidle")
    expect(panel).to_be_visible()
    expect(panel.get_by_text(str(retry.pk))).to_be_visible()
    assert page.url.endswith(f"{RUNS}{retry.pk}/")
    assert page.evaluate("window.__sameDocument") is True


def test_slash_focuses_search_and_a_short_id_opens_the_run(page, sign_in, roster):
    run = AgentRunFactory(
        agent=roster.agent, run_as=roster.member, status=RunStatus.FAILED, last_error="boom"
    )
    AgentRunFactory(agent=roster.agent, run_as=roster.member, status=RunStatus.COMPLETED)
    sign_in("owner")
    page.goto(RUNS)
    page.keyboard.press("/")
    box = page.locator("#console-search")
    expect(box).to_be_focused()
    box.fill(str(run.pk)[:8])
    box.press("Enter")
    page.wait_for_url(f"**{RUNS}{run.pk}/")
    expect(page.locator("#detail-panel pre.error-text")).to_have_text("boom")


def test_a_refused_delivery_shows_on_the_provider_events_tab(page, sign_in, roster, live_server, screenshot):
    action = ActionFactory(agent=roster.agent, run_as=roster.member, name="Zendesk ticket webhook")
    body = b'{"ticket": {"id": "T-7"}}'
    request = urllib.request.Request(
        f"{live_server.url}/hooks/actions/{action.pk}/",
        data=body,
        headers={
            "Content-Type": "application/json",
            "webhook-id": "msg_1",
            "webhook-timestamp": "1",
            "webhook-signature": "v1,AAAA",
        },
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 401

    sign_in("owner")
    page.goto(RUNS)
    page.get_by_role("link", name="Provider events").click()
    page.get_by_role("link", name="Refused").click()
    row = page.locator("tr.refused-row").first
    expect(row).to_contain_text("Zendesk ticket webhook")
    expect(row).to_contain_text("timestamp")
    expect(row).to_contain_text("127.0.0.1")
    expect(row).to_contain_text(f"{len(body)}\xa0bytes")
    screenshot(page, "provider-events-refused.png")


def test_a_refused_follow_up_is_on_the_tab_and_the_timeline(page, sign_in, roster, screenshot):
    roster.agent.self_reschedule_enabled = False
    roster.agent.save()
    run = run_create(
        agent=roster.agent,
        run_as=roster.member,
        source=RunSource.MANUAL,
        prompt="!follow_up 7200 check the refund",
    )
    assert execute_run(run_id=run.pk, worker="browser-test") == "completed"
    sign_in("member")
    page.goto(f"{RUNS}follow-ups/")
    page.get_by_role("link", name="Refused").click()
    row = page.locator("tr.refusal-row")
    expect(row).to_contain_text("capability_off")
    expect(row).to_contain_text("Self-reschedule")
    screenshot(page, "follow-ups-refused.png")
    row.get_by_role("link", name=str(run.pk)[:8]).click()
    entry = page.locator("#detail-panel .refused-entry")
    expect(entry).to_contain_text("capability_off")
    expect(entry).to_contain_text("Self-reschedule")


def test_the_cadence_form_shows_only_its_cadences_fields(page, sign_in, roster):
    sign_in("owner")
    page.goto(f"/orgs/acme/agents/{roster.agent.pk}/schedules/new/")
    cadence = page.get_by_label("Cadence")
    fields = {
        "daily": [".field-time_of_day"],
        "weekly": [".field-time_of_day", ".field-weekdays"],
        "interval": [".field-interval_minutes", ".field-run_at"],
        "once": [".field-run_at"],
        "cron": [".field-cron_expression"],
    }
    every = {selector for shown in fields.values() for selector in shown}
    for value, shown in fields.items():
        cadence.select_option(value)
        for selector in every:
            locator = page.locator(f"#schedule-form {selector}")
            if selector in shown:
                expect(locator).to_be_visible()
            else:
                expect(locator).to_be_hidden()


def test_a_custom_range_draws_the_chart_and_the_table_stands_in_without_js(
    page, sign_in, roster, chromium, live_server, screenshot
):
    start = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    for minutes, status in ((5, RunStatus.COMPLETED), (10, RunStatus.FAILED), (70, RunStatus.COMPLETED)):
        run = AgentRunFactory(agent=roster.agent, run_as=roster.member, status=status)
        at = start + timedelta(minutes=minutes)
        AgentRun.objects.filter(pk=run.pk).update(
            created_at=at, started_at=at, completed_at=at + timedelta(seconds=12)
        )
    sign_in("owner")
    page.goto(RUNS)
    page.get_by_role("link", name="Trends").click()
    page.get_by_label("From (UTC)").fill(start.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_label("To (UTC)").fill((start + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M"))
    page.get_by_role("button", name="Show").click()
    page.wait_for_url("**/trends/?start=*")
    expect(page.locator("#trend-chart canvas")).to_be_visible()
    rows = page.locator("#trend-table tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("50 %")
    screenshot(page, "trends.png")
    url = page.url

    no_js = chromium.new_context(base_url=live_server.url, java_script_enabled=False)
    try:
        plain = no_js.new_page()
        plain.goto("/accounts/login/")
        plain.get_by_label("Username").fill("owner")
        plain.get_by_label("Password").fill("pw")
        plain.get_by_role("button", name="Sign in").click()
        plain.goto(url)
        assert plain.locator("#trend-chart canvas").count() == 0
        table = plain.locator("#trend-table tbody tr")
        assert table.count() == 2 and "50 %" in table.first.inner_text()
    finally:
        no_js.close()
