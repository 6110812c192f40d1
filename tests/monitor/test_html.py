"""Every console page is well-formed for assistive tech: unique ids and labelled controls."""

from collections import Counter
from html.parser import HTMLParser

import pytest
from django.utils import timezone

from tests.factories import AgentRunFactory, FollowUpFactory, MessageFactory, ScheduleFactory

pytestmark = pytest.mark.django_db

UNLABELLED_OK = {"hidden", "submit", "button"}


class Audit(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: Counter = Counter()
        self.label_for: set[str] = set()
        self.controls: list[dict] = []
        self.label_depth = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids[attrs["id"]] += 1
        if tag == "label":
            self.label_depth += 1
            if attrs.get("for"):
                self.label_for.add(attrs["for"])
        if tag in ("input", "select", "textarea") and attrs.get("type") not in UNLABELLED_OK:
            self.controls.append({**attrs, "_wrapped": self.label_depth > 0, "_tag": tag})

    def handle_endtag(self, tag):
        if tag == "label":
            self.label_depth -= 1

    def problems(self) -> list[str]:
        out = [f"duplicate id {i!r}" for i, n in self.ids.items() if n > 1]
        for c in self.controls:
            if not (c["_wrapped"] or c.get("aria-label") or c.get("id") in self.label_for):
                out.append(f"unlabelled {c['_tag']} {c.get('name')!r}")
        return out


def audit(html: str) -> list[str]:
    parser = Audit()
    parser.feed(html)
    return parser.problems()


def test_console_pages_have_unique_ids_and_labelled_controls(client, roster):
    thread_run = AgentRunFactory(agent=roster.agent, run_as=roster.owner, status="failed", last_error="x")
    AgentRunFactory(agent=roster.agent, run_as=roster.owner, status="running", heartbeat_at=timezone.now())
    MessageFactory(thread=thread_run.thread, run=thread_run, role="assistant")
    FollowUpFactory(agent=roster.agent, run_as=roster.owner)
    schedule = ScheduleFactory(agent=roster.agent, run_as=roster.owner)
    runs = "/orgs/acme/agents/monitor/automation-runs/"
    agent = f"/orgs/acme/agents/{roster.agent.pk}/"
    pages = [
        runs,
        f"{runs}?status=failed",
        f"{runs}{thread_run.pk}/",
        f"{runs}follow-ups/",
        f"{runs}schedules/",
        f"/orgs/acme/threads/{thread_run.thread_id}/",
        "/orgs/acme/agents/",
        f"{agent}capabilities/",
        f"{agent}schedules/new/",
        f"{agent}schedules/{schedule.pk}/edit/",
    ]
    client.force_login(roster.owner)
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        assert audit(response.content.decode()) == [], url
    confirm = client.post(f"{runs}bulk/", {"action": "retry", "run": [str(thread_run.pk)]})
    assert audit(confirm.content.decode()) == []
