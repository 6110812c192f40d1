"""The run panel and the runs table as the server renders them (what a reader without JavaScript gets)."""

import re
from datetime import timedelta

import time_machine
from django.utils import timezone

from automation.models import AgentRun, ProviderEvent, RunEvent
from automation.states import ProviderEventStatus
from tests.factories import ActionFactory, ThreadFactory


def test_the_panel_reads_error_then_timeline_then_folded_json(client, roster, runs_url, make_run):
    thread = ThreadFactory(agent=roster.agent, title="Ticket T-9", context_type="ticket", context_key="T-9")
    run = make_run(
        "failed",
        thread=thread,
        context_type="ticket",
        context_key="T-9",
        last_error="ValueError: boom",
        input_snapshot={"prompt": "long", "history": [f"m{i}" for i in range(20)]},
        metadata={"k": 1},
    )
    RunEvent.objects.create(run=run, kind="failed", detail={"error": "boom"})
    ProviderEvent.objects.create(
        organization=roster.org, action=ActionFactory(agent=roster.agent, run_as=roster.member), agent=roster.agent,
        event_id="evt_T9_1", context_type="ticket", context_key="T-9", status=ProviderEventStatus.STARTED, run=run,
    )  # fmt: skip
    client.force_login(roster.owner)
    page = client.get(f"{runs_url}{run.pk}/").content.decode()
    panel = page[page.index('id="detail-panel"') : page.index("</aside>")]
    assert panel.index("Last error") < panel.index("Timeline") < panel.index("Input snapshot")
    assert panel.index("Timeline") < panel.index("Times and lease")
    snapshot = re.search(
        r'<details class="json-block" id="json-input-snapshot-[\w-]+"( open)?><summary>Input snapshot', panel
    )
    metadata = re.search(
        r'<details class="json-block" id="json-metadata-[\w-]+"( open)?><summary>Metadata', panel
    )
    assert snapshot.group(1) is None and metadata.group(1) == " open"
    for value in (str(run.pk), str(thread.pk), "T-9", "evt_T9_1"):
        assert f'<span class="mono copy-value">{value}</span>' in panel
        assert f'data-copy="{value}"' in panel
    assert "<script" not in panel and " style=" not in panel and not re.search(r" on[a-z]+=", panel)


def test_the_table_says_how_long_ago_with_the_absolute_time_beside(client, roster, runs_url, make_run):
    now = timezone.now().replace(microsecond=0)
    with time_machine.travel(now, tick=False):
        run = make_run(
            "completed", started_at=now - timedelta(minutes=12), completed_at=now - timedelta(minutes=11)
        )
        AgentRun.objects.filter(pk=run.pk).update(created_at=now - timedelta(minutes=12, seconds=30))
        client.force_login(roster.owner)
        page = client.get(runs_url).content.decode()
    row = page[page.index(f'id="run-{run.pk}"') :]
    created = (now - timedelta(minutes=12, seconds=30)).astimezone(timezone.get_fixed_timezone(0))
    assert (
        f'<time datetime="{created.isoformat()}" title="{created:%Y-%m-%d %H:%M:%S} UTC" data-relative>12 min ago</time>'
        in row
    )
    assert ">12 min ago</time>" in row.split("</tr>")[0]
