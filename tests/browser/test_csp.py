"""No page the operator opens breaks the content security policy: the runs page with the panel
open, the browsable API and Swagger UI all run under the site-wide policy without violations."""

import pytest
from django.utils import timezone

from automation.models import RunEvent
from tests.factories import AgentRunFactory

pytestmark = pytest.mark.browser

RUNS = "/orgs/acme/agents/monitor/automation-runs/"

# Collects every violation the page reports, from the first byte on (an init script runs before
# the page's own scripts), plus the console lines Chromium writes for a refused inline resource.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(e.violatedDirective + " " + (e.blockedURI || "inline") + " " + (e.sourceFile || "") + ":" + e.lineNumber);
});
"""


@pytest.fixture
def watched(page):
    page.add_init_script(RECORD_VIOLATIONS)
    console = []
    page.on(
        "console",
        lambda msg: (
            console.append(msg.text)
            if msg.type == "error" and "Content Security Policy" in msg.text
            else None
        ),
    )
    page.csp_console = console
    return page


def violations(page) -> list[str]:
    return page.evaluate("window.__cspViolations") + page.csp_console


def test_runs_page_with_the_panel_open_has_no_violations(watched, sign_in, roster):
    now = timezone.now()
    run = AgentRunFactory(
        agent=roster.agent,
        run_as=roster.member,
        status="failed",
        started_at=now,
        completed_at=now,
        attempt=1,
        last_error="Traceback (most recent call last):\nValueError: boom",
        input_snapshot={"prompt": "x" * 50, "lines": list(range(40))},
    )
    RunEvent.objects.create(run=run, kind="failed", detail={"error": "boom"})
    sign_in("owner")
    watched.goto(RUNS)
    # the panel as htmx swaps it in, then every control it offers
    watched.locator(f"#run-{run.pk} td a.mono").click()
    panel = watched.locator("#detail-panel")
    panel.locator("pre.error-text").wait_for()
    panel.locator("details.json-block summary", has_text="Input snapshot").click()
    panel.get_by_role("button", name="Copy the run id").click()
    panel.get_by_role("button", name="Retry as a new run").click()
    watched.locator("#flash").get_by_text("Retry queued").wait_for()
    watched.wait_for_load_state("networkidle")
    assert violations(watched) == []


def test_browsable_api_has_no_violations(watched, sign_in, roster):
    sign_in("owner")
    watched.goto("/api/orgs/acme/agent-runs", wait_until="networkidle")
    # the filters button is there (it used to carry a style attribute)
    assert watched.get_by_role("button", name="Filters").is_visible()
    assert watched.locator(".response-info pre").inner_text().startswith("HTTP 200")
    assert violations(watched) == []


def test_swagger_ui_has_no_violations(watched, sign_in, roster):
    sign_in("owner")
    watched.goto("/api/docs/", wait_until="networkidle")
    watched.locator(".swagger-ui .info").wait_for()
    assert violations(watched) == []
