"""Threads are told apart: titles say what they are about, ids are shown, runs on a context link up."""

import re

import pytest

from automation.services.runs import run_create
from automation.states import RunSource
from tests.factories import AgentRunFactory, ScheduleFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    from automation.services import runs

    monkeypatch.setattr(runs, "dispatch_run", lambda *, run_id, **_: True)


def start(roster, **kw):
    return run_create(agent=roster.agent, run_as=roster.member, prompt="!reply hi", **kw)


def test_new_threads_are_titled_by_context_or_origin_and_time(roster):
    on_ticket = start(roster, source=RunSource.PROVIDER_EVENT, context_type="ticket", context_key="T-UX1")
    assert on_ticket.thread.title == "ticket: T-UX1"
    manual = start(roster, source=RunSource.MANUAL)
    assert re.fullmatch(r"Manual run, \d{4}-\d\d-\d\d \d\d:\d\d UTC", manual.thread.title)
    schedule = ScheduleFactory(agent=roster.agent, run_as=roster.member, name="Nightly digest")
    scheduled = start(roster, source=RunSource.SCHEDULE, schedule=schedule)
    assert scheduled.thread.title.startswith("Schedule 'Nightly digest', ")


def test_the_panel_lists_other_runs_on_the_context_in_scope(client, roster, runs_url):
    first = start(roster, source=RunSource.MANUAL, context_type="ticket", context_key="T-2")
    first.status = "completed"
    first.save()
    second = start(roster, source=RunSource.MANUAL, context_type="ticket", context_key="T-2")
    theirs = AgentRunFactory(
        agent=roster.agent,
        run_as=roster.member2,
        status="completed",
        context_type="ticket",
        context_key="T-2",
    )
    client.force_login(roster.member)
    page = client.get(f"{runs_url}{second.pk}/").content.decode()
    block = page.split('class="context-runs">', 1)[1].split("</dd>", 1)[0]
    assert str(first.pk)[:8] in block and str(theirs.pk)[:8] not in block
    assert f"thread #{second.thread_id}" in page


def test_the_thread_page_shows_its_id_and_links_to_its_runs(client, roster, runs_url):
    run = start(roster, source=RunSource.MANUAL)
    client.force_login(roster.member)
    page = client.get(f"/orgs/acme/threads/{run.thread_id}/").content.decode()
    assert f"thread #{run.thread_id}" in page
    assert f"{runs_url}?thread={run.thread_id}" in page
    assert f"{runs_url}{run.pk}/" in page
