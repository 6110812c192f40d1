"""The run panel as an operator reads it: what went wrong first, big JSON folded, ids copyable,
relative times in the table, and a layout that stays readable with the panel open and on a phone."""

import json
import re
from datetime import UTC, timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from automation.models import AgentRun, RunEvent
from tests.factories import AgentRunFactory, ThreadFactory

pytestmark = pytest.mark.browser

RUNS = "/orgs/acme/agents/monitor/automation-runs/"
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/app/agentpress/agents/runtime/scripted.py", line 88, in invoke\n'
    "    raise TimeoutError(message)\n"
    "TimeoutError: the CRM did not answer within 30 s"
)


@pytest.fixture
def runs(roster):
    """A running run with a fresh heartbeat beside a failed run with a long input snapshot."""
    now = timezone.now()
    thread = ThreadFactory(agent=roster.agent, title="Ticket T-42", context_type="ticket", context_key="T-42")
    failed = AgentRunFactory(
        agent=roster.agent,
        run_as=roster.member,
        status="failed",
        source="provider_event",
        thread=thread,
        context_type="ticket",
        context_key="T-42",
        started_at=now - timedelta(minutes=3),
        completed_at=now - timedelta(minutes=2),
        attempt=1,
        last_error=TRACEBACK,
        input_snapshot={"prompt": "Summarise ticket T-42", "history": [f"message {i}" for i in range(30)]},
        metadata={"trigger": "webhook"},
    )
    AgentRun.objects.filter(pk=failed.pk).update(created_at=now - timedelta(minutes=3, seconds=5))
    RunEvent.objects.create(run=failed, kind="created", detail={"source": "provider_event"})
    RunEvent.objects.create(run=failed, kind="failed", detail={"error": "TimeoutError"})
    running = AgentRunFactory(
        agent=roster.agent,
        run_as=roster.member,
        status="running",
        source="manual",
        started_at=now - timedelta(seconds=40),
        heartbeat_at=now - timedelta(seconds=5),
        lease_owner="w1@worker-1",
        lease_expires_at=now + timedelta(seconds=55),
        attempt=1,
        input_snapshot={"prompt": "Draft the weekly report", "sections": [f"part {i}" for i in range(20)]},
    )
    failed.refresh_from_db()
    return failed, running


def box(locator):
    found = locator.bounding_box()
    assert found is not None, locator
    return found


def test_panel_puts_the_error_and_timeline_before_folded_json(page, sign_in, runs):
    failed, _ = runs
    sign_in("owner")
    page.goto(f"{RUNS}{failed.pk}/")
    panel = page.locator("#detail-panel")
    headings = panel.locator("h3").all_inner_texts()
    order = [h.strip().lower() for h in headings]
    assert order.index("last error") < order.index("timeline") < order.index("input and metadata")
    assert "TimeoutError: the CRM did not answer" in panel.locator("pre.error-text").inner_text()

    snapshot = panel.locator("details.json-block", has_text="Input snapshot")
    assert snapshot.get_attribute("open") is None
    assert not snapshot.locator("pre").is_visible()
    snapshot.locator("summary").click()
    assert json.loads(snapshot.locator("pre").inner_text())["prompt"] == "Summarise ticket T-42"
    # a short value is not hidden behind a click
    assert panel.locator("details.json-block", has_text="Metadata").get_attribute("open") == ""


def test_an_opened_json_block_stays_open_while_the_panel_polls(page, sign_in, runs):
    from monitor.views.runs import POLL_SECONDS

    _, running = runs
    sign_in("owner")
    page.goto(f"{RUNS}{running.pk}/")
    snapshot = page.locator("#detail-panel details.json-block", has_text="Input snapshot")
    snapshot.locator("summary").click()
    # mark this panel; the next poll replaces the whole element
    page.locator("#detail-panel").evaluate("panel => panel.setAttribute('data-before-poll', '')")
    page.locator("#detail-panel:not([data-before-poll])").wait_for(timeout=POLL_SECONDS * 3 * 1000)
    snapshot = page.locator("#detail-panel details.json-block", has_text="Input snapshot")
    # monitor.js restores the fold once htmx has settled the new panel
    expect(snapshot).to_have_attribute("open", "", timeout=POLL_SECONDS * 1000)
    expect(snapshot.locator("pre")).to_be_visible()


def test_copy_buttons_copy_each_id(page, sign_in, runs):
    failed, _ = runs
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    sign_in("owner")
    page.goto(f"{RUNS}{failed.pk}/")
    panel = page.locator("#detail-panel")
    for label, value in [
        ("Copy the run id", str(failed.pk)),
        ("Copy the thread id", str(failed.thread_id)),
        ("Copy the context key", "T-42"),
    ]:
        button = panel.get_by_role("button", name=label)
        button.click()
        expect(button).to_have_text("Copied")  # the clipboard write has finished
        assert page.evaluate("navigator.clipboard.readText()") == value


def test_without_javascript_ids_are_text_and_json_still_folds(chromium, live_server, runs):
    from tests.browser.conftest import PASSWORD

    failed, _ = runs
    context = chromium.new_context(base_url=live_server.url, java_script_enabled=False)
    page = context.new_page()
    try:
        page.goto("/accounts/login/")
        page.get_by_label("Username").fill("owner")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.goto(f"{RUNS}{failed.pk}/")
        panel = page.locator("#detail-panel")
        assert panel.locator(".copy-value", has_text=str(failed.pk)).is_visible()
        assert panel.locator("button.copy-button:visible").count() == 0
        snapshot = panel.locator("details.json-block", has_text="Input snapshot")
        assert not snapshot.locator("pre").is_visible()
        snapshot.locator("summary").click()
        assert snapshot.locator("pre").is_visible()
        # relative times come from the server, with the absolute time beside them
        created = page.locator(f"#run-{failed.pk} td.col-time time").first
        assert re.fullmatch(r"\d+ min( \d+ s)? ago", created.inner_text())
        assert created.get_attribute("title").endswith("UTC")
        assert created.get_attribute("datetime").startswith(str(timezone.now().year))
    finally:
        context.close()


def test_table_shows_relative_times_with_the_absolute_time(page, sign_in, runs):
    failed, running = runs
    sign_in("owner")
    page.goto(RUNS)
    created = page.locator(f"#run-{failed.pk} td.col-time time").first
    assert re.fullmatch(r"\d+ min( \d+ s)? ago", created.inner_text())
    expected = failed.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert created.get_attribute("title") == expected
    heartbeat = page.locator(f"#run-{running.pk} td.col-time time").last
    assert heartbeat.inner_text().endswith(" s ago")


def test_columns_stay_readable_with_the_panel_open_at_1280(page, sign_in, runs):
    failed, _ = runs
    page.set_viewport_size({"width": 1280, "height": 800})
    sign_in("owner")
    page.goto(f"{RUNS}{failed.pk}/")
    panel = box(page.locator("#detail-panel"))
    frame = box(page.locator(".table-wrap"))
    assert frame["x"] + frame["width"] <= panel["x"]
    for name in ("Created", "Started", "Duration", "Heartbeat"):
        header = box(page.get_by_role("columnheader", name=name, exact=True))
        assert header["x"] >= frame["x"] and header["x"] + header["width"] <= frame["x"] + frame["width"], (
            name
        )
    # nothing in the row is cut off or needs a sideways scroll
    assert page.evaluate(
        "(() => { const w = document.querySelector('.table-wrap'); return w.scrollWidth <= w.clientWidth; })()"
    )
    started = page.locator(f"#run-{failed.pk} td.col-time").nth(1)
    assert started.evaluate("td => td.scrollWidth <= td.clientWidth")


def test_on_a_390px_screen_the_panel_is_the_first_block(page, sign_in, runs):
    failed, _ = runs
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in("owner")
    page.goto(f"{RUNS}{failed.pk}/")
    panel = box(page.locator("#detail-panel"))
    table = box(page.locator(".table-wrap"))
    assert panel["y"] < table["y"]
    assert panel["y"] < 844  # it starts on the first screen
    assert panel["x"] >= 0 and panel["x"] + panel["width"] <= 390
    # the page itself does not scroll sideways; the table scrolls inside its frame
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert page.evaluate(
        "(() => { const w = document.querySelector('.table-wrap'); return w.scrollWidth > w.clientWidth; })()"
    )
