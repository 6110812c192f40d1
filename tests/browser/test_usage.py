"""Tokens and cost on the runs page and the detail panel, and a suppressed send on the
conversation page (issue 17), in a real browser."""

from decimal import Decimal

import pytest

from automation.models import ModelCall, ToolCall
from automation.states import RunSource, RunStatus
from tests.factories import AgentRunFactory, ScheduleFactory, ThreadFactory

pytestmark = pytest.mark.browser

RUNS = "/orgs/acme/agents/monitor/automation-runs/"


def test_tokens_cost_and_a_suppressed_send_are_visible(page, sign_in, roster):
    thread = ThreadFactory(agent=roster.agent, title="Printer ticket T-9")
    run = AgentRunFactory(
        agent=roster.agent, run_as=roster.owner, thread=thread, source=RunSource.FOLLOW_UP,
        status=RunStatus.COMPLETED, input_tokens=1200, output_tokens=80, cost=Decimal("0.0032"),
    )  # fmt: skip
    ModelCall.objects.create(
        run=run, organization=roster.org, agent=roster.agent, endpoint="openai", model="gpt-stub",
        input_tokens=1200, output_tokens=80, latency_ms=850, cost=Decimal("0.0032"), status_code=200,
    )  # fmt: skip
    ToolCall.objects.create(
        run=run, organization=roster.org, tool="send_reply", idempotency_key="k-1",
        arguments={"text": "Any news?"}, outcome=ToolCall.Outcome.SUPPRESSED,
        result={"ok": False, "suppressed": True, "error": "Not done: Stop condition reply_received met"},
        evidence={"condition": "reply_received", "reason": "Stop condition reply_received met: event message 7 arrived"},
    )  # fmt: skip
    sign_in("owner")
    page.goto(RUNS)
    row = page.locator("tr", has=page.locator(f'a[href^="{RUNS}{run.pk}/"]'))
    assert "1280 · 0.0032" in row.locator("td.run-usage").inner_text()
    row.get_by_role("link", name=str(run.pk)[:8]).click()
    panel = page.locator("#detail-panel .run-usage")
    panel.wait_for()
    assert panel.inner_text().startswith("1200 in / 80 out · cost 0.0032")
    page.goto(f"/orgs/acme/threads/{thread.pk}/")
    suppressed = page.locator(".role-tool-call.outcome-suppressed")
    assert "Suppressed by a stop condition" in suppressed.inner_text()
    assert "reply_received met: event message 7 arrived" in suppressed.inner_text()
    model_call = page.locator(".role-model-call")
    assert "1200 tokens in, 80 out" in model_call.inner_text() and "850 ms" in model_call.inner_text()


def test_usage_per_day_agent_and_schedule_on_the_agent_page_and_trends(page, sign_in, roster):
    nightly = ScheduleFactory(agent=roster.agent, run_as=roster.owner, name="Nightly digest")
    AgentRunFactory(
        agent=roster.agent, run_as=roster.owner, schedule=nightly, source=RunSource.SCHEDULE,
        status=RunStatus.COMPLETED, input_tokens=1200, output_tokens=80, cost=Decimal("0.0032"),
    )  # fmt: skip
    sign_in("owner")
    page.goto(f"/orgs/acme/agents/{roster.agent.pk}/capabilities/")
    today = page.locator("#usage-by-day tbody tr").last
    assert today.locator("td").all_inner_texts() == ["1", "1200", "80", "1280", "0.0032"]
    by_schedule = page.locator("#usage-by-schedule tbody tr", has_text="Nightly digest")
    assert "1280" in by_schedule.inner_text()
    page.goto(f"{RUNS}trends/")
    agent_row = page.locator("#usage-by-agent tbody tr", has_text="Support agent")
    assert agent_row.locator("td").all_inner_texts() == ["1", "1200", "80", "1280", "0.0032"]
    agent_row.get_by_role("link", name="Support agent").click()
    page.wait_for_url(f"**/agents/{roster.agent.pk}/capabilities/")
    assert page.locator("#usage-title").is_visible()
