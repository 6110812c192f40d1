"""The runs page's filters beyond agent/source/status: thread and a custom from/to."""

import re
from datetime import UTC, datetime

import pytest
from django.utils import timezone

from automation.models import AgentRun
from tests.factories import ThreadFactory

pytestmark = pytest.mark.django_db


def row_ids(html: str) -> set[str]:
    return set(re.findall(r'<tr id="run-([0-9a-f-]{36})"', html))


def test_thread_and_custom_range(client, roster, runs_url, make_run):
    thread = ThreadFactory(agent=roster.agent)
    in_thread = make_run(thread=thread)
    early = make_run()
    AgentRun.objects.filter(pk=early.pk).update(created_at=datetime(2026, 1, 5, 10, 30, tzinfo=UTC))
    client.force_login(roster.owner)

    assert row_ids(client.get(runs_url, {"thread": thread.pk}).content.decode()) == {str(in_thread.pk)}
    page = client.get(runs_url, {"created_after": "2026-01-05T10:00", "created_before": "2026-01-05T11:00"})
    assert row_ids(page.content.decode()) == {str(early.pk)}
    # the range survives into the links the page draws (cards, pager, panel)
    assert "created_after=2026-01-05T10%3A00%3A00" in page.content.decode()


def test_a_backwards_range_is_reported(client, roster, runs_url, make_run):
    make_run()
    client.force_login(roster.owner)
    now = timezone.now()
    page = client.get(
        runs_url, {"created_after": now.strftime("%Y-%m-%dT%H:%M"), "created_before": "2020-01-01T00:00"}
    ).content.decode()
    assert "Must be after From." in page


def test_a_member_filtering_by_another_users_thread_sees_nothing(client, roster, runs_url, make_run):
    thread = ThreadFactory(agent=roster.agent)
    make_run(thread=thread, run_as=roster.member2)
    client.force_login(roster.member)
    assert row_ids(client.get(runs_url, {"thread": thread.pk}).content.decode()) == set()
