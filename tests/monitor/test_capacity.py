"""The console shows capacity and why runs wait: the runs table and detail panel, the
waiting filter (which bulk cancel follows), the agents list and the Capabilities page."""

import pytest

from automation.models import AgentRun, AuditEntry
from automation.services import runs
from automation.states import RunStatus


@pytest.fixture
def held(roster, make_run):
    roster.agent.max_concurrent_runs = 1
    roster.agent.save()
    first, second = make_run(), make_run()
    runs.claim_run(run_id=first.pk, worker="w")
    assert runs.claim_run(run_id=second.pk, worker="w") is None
    worker_waits = make_run(waiting_reason="waiting for a worker (unclaimed for 95 s)")
    return {"running": first, "held": second, "unclaimed": worker_waits}


@pytest.mark.sqlite
def test_the_runs_table_and_panel_show_the_waiting_reason_and_flag_a_missing_worker(
    client, roster, runs_url, held
):
    client.force_login(roster.owner)
    page = client.get(runs_url).content.decode()
    assert "agent at its limit (1 / 1)" in page
    assert 'class="waiting-reason warning">waiting for a worker (unclaimed for 95 s)' in page
    assert "In flight / limit: <strong>1 / ∞</strong>" in page
    panel = client.get(f"{runs_url}{held['held'].pk}/").content.decode()
    assert "<dt>Waiting</dt>" in panel and "agent at its limit (1 / 1)" in panel


@pytest.mark.sqlite
def test_the_waiting_filter_narrows_the_table_and_bulk_cancel_follows_it(client, roster, runs_url, held):
    client.force_login(roster.owner)
    page = client.get(runs_url, {"waiting": "agent_limit"}).content.decode()
    assert str(held["held"].pk)[:8] in page and str(held["unclaimed"].pk)[:8] not in page
    client.post(
        f"{runs_url}bulk/",
        {"action": "cancel", "all_matching": "1", "waiting": "agent_limit", "confirm": "1"},
    )
    statuses = dict(AgentRun.objects.values_list("pk", "status"))
    assert statuses[held["held"].pk] == RunStatus.CANCELLED
    assert statuses[held["unclaimed"].pk] == RunStatus.PENDING
    assert statuses[held["running"].pk] == RunStatus.RUNNING


@pytest.mark.sqlite
def test_a_bad_waiting_filter_is_reported_not_applied(client, roster, runs_url, held):
    client.force_login(roster.owner)
    response = client.get(runs_url, {"waiting": "nonsense"})
    assert response.status_code == 200
    assert str(held["unclaimed"].pk)[:8] in response.content.decode()


@pytest.mark.sqlite
def test_agents_list_and_capabilities_show_in_flight_against_the_limit(client, roster, held):
    client.force_login(roster.owner)
    agents = client.get(f"/orgs/{roster.org.slug}/agents/").content.decode()
    assert '<td class="capacity">1 / 1</td>' in agents
    caps = client.get(f"/orgs/{roster.org.slug}/agents/{roster.agent.pk}/capabilities/").content.decode()
    assert '<strong class="capacity">1 / 1</strong>' in caps and "Today (UTC): 1 runs" in caps


@pytest.mark.sqlite
def test_an_owner_raises_the_limit_on_capabilities_and_the_held_run_is_sent(
    client, roster, held, monkeypatch, django_capture_on_commit_callbacks
):
    sent = []
    monkeypatch.setattr(runs, "dispatch_run", lambda *, run_id, **_: sent.append(run_id) or True)
    client.force_login(roster.owner)
    url = f"/orgs/{roster.org.slug}/agents/{roster.agent.pk}/capabilities/"
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            url,
            {
                "section": "limits",
                "max_concurrent_runs": "3",
                "daily_run_limit": "",
                "max_tokens_per_run": "900",
            },
        )
    assert response.status_code == 302
    roster.agent.refresh_from_db()
    assert (roster.agent.max_concurrent_runs, roster.agent.max_tokens_per_run) == (3, 900)
    assert held["held"].pk in sent
    entry = AuditEntry.objects.get(verb="limits_changed")
    assert entry.detail["max_concurrent_runs"] == {"from": 1, "to": 3}


@pytest.mark.sqlite
def test_bad_limits_are_refused_with_a_message_and_nothing_changes(client, roster, held):
    client.force_login(roster.owner)
    url = f"/orgs/{roster.org.slug}/agents/{roster.agent.pk}/capabilities/"
    response = client.post(url, {"section": "limits", "max_concurrent_runs": "-2", "daily_cost_limit": "abc"})
    assert response.status_code == 400
    assert "Ensure this value is greater than or equal to 1." in response.content.decode()
    roster.agent.refresh_from_db()
    assert roster.agent.max_concurrent_runs == 1


@pytest.mark.sqlite
def test_a_member_cannot_change_limits(client, roster, held):
    client.force_login(roster.member)
    url = f"/orgs/{roster.org.slug}/agents/{roster.agent.pk}/capabilities/"
    client.post(url, {"section": "limits", "max_concurrent_runs": "50"})
    roster.agent.refresh_from_db()
    assert roster.agent.max_concurrent_runs == 1


@pytest.mark.sqlite
def test_runs_held_by_the_daily_budget_are_cancelled_in_bulk_and_nothing_else(
    client, roster, runs_url, make_run
):
    roster.org.daily_run_limit = 1
    roster.org.save()
    done = make_run(run_as=roster.owner)
    lease = runs.claim_run(run_id=done.pk, worker="w")
    held = [make_run(run_as=roster.owner), make_run(run_as=roster.member)]
    for run in held:
        assert runs.claim_run(run_id=run.pk, worker="w") is None
    other_org = make_run(agent=roster.other_agent, run_as=roster.other_owner)
    other_org_reason = "daily budget reached (organization globex: 1 / 1 runs today), resumes at tomorrow"
    AgentRun.objects.filter(pk=other_org.pk).update(waiting_reason=other_org_reason)
    for run in held:
        run.refresh_from_db()
        assert run.waiting_reason.startswith("daily budget reached (organization acme: 1 / 1 runs today)")
    client.force_login(roster.owner)
    page = client.get(runs_url, {"waiting": "budget"}).content.decode()
    assert all(str(run.pk)[:8] in page for run in held) and str(done.pk)[:8] not in page
    confirm = client.post(f"{runs_url}bulk/", {"action": "cancel", "all_matching": "1", "waiting": "budget"})
    assert confirm.status_code == 200 and "2" in confirm.content.decode()
    client.post(
        f"{runs_url}bulk/", {"action": "cancel", "all_matching": "1", "waiting": "budget", "confirm": "1"}
    )
    statuses = dict(AgentRun.objects.values_list("pk", "status"))
    assert [statuses[run.pk] for run in held] == [RunStatus.CANCELLED] * 2
    assert statuses[lease.run.pk] == RunStatus.RUNNING
    assert statuses[other_org.pk] == RunStatus.PENDING  # another organization's held run is not in scope
