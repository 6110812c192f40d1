"""The runs page, detail panel and bulk actions: scope, gating, counts, filters and actions."""

import re

import pytest

from automation.models import AgentRun, RunEvent
from automation.states import RunStatus
from tests.factories import AgentFactory, AgentRunFactory, UserFactory

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def card_count(html: str, key: str) -> int:
    return int(re.search(rf'data-card="{key}">(\d+)<', html).group(1))


def row_ids(html: str) -> set[str]:
    return set(re.findall(r'<tr id="run-([0-9a-f-]{36})"', html))


# --- who may see the page ------------------------------------------------------------------


def test_owner_sees_the_whole_org_and_a_member_only_their_own_runs(client, roster, runs_url, make_run):
    mine = make_run(run_as=roster.member)
    theirs = make_run(run_as=roster.member2)
    elsewhere = AgentRunFactory(agent=roster.other_agent, run_as=roster.other_owner)

    client.force_login(roster.owner)
    owner_rows = row_ids(client.get(runs_url).content.decode())
    assert owner_rows == {str(mine.pk), str(theirs.pk)}

    client.force_login(roster.member)
    html = client.get(runs_url).content.decode()
    assert row_ids(html) == {str(mine.pk)}
    assert card_count(html, "pending") == 1
    assert str(elsewhere.pk) not in html


def test_a_run_outside_the_scope_is_404(client, roster, runs_url, make_run):
    theirs = make_run(run_as=roster.member2)
    elsewhere = AgentRunFactory(agent=roster.other_agent, run_as=roster.other_owner)
    client.force_login(roster.owner)
    assert client.get(f"{runs_url}{elsewhere.pk}/").status_code == 404
    assert client.post(f"{runs_url}{elsewhere.pk}/cancel/").status_code == 404
    client.force_login(roster.member)
    assert client.get(f"{runs_url}{theirs.pk}/").status_code == 404
    assert client.post(f"{runs_url}{theirs.pk}/cancel/").status_code == 404
    assert AgentRun.objects.get(pk=theirs.pk).status == RunStatus.PENDING


@pytest.mark.parametrize(
    "path",
    [
        "agents/monitor/automation-runs/",
        "agents/monitor/automation-runs/follow-ups/",
        "agents/monitor/automation-runs/schedules/",
    ],
)
def test_non_member_404_without_permission_403(client, roster, path):
    url = f"/orgs/acme/{path}"
    client.force_login(roster.outsider)
    assert client.get(url).status_code == 404
    client.force_login(roster.other_owner)
    assert client.get(url).status_code == 404
    client.force_login(roster.viewer)
    response = client.get(url)
    assert response.status_code == 403
    assert "actions:manage" in response.content.decode()
    assert client.get("/orgs/nope/agents/monitor/automation-runs/").status_code == 404


def test_signed_out_visitors_are_sent_to_sign_in(client, runs_url):
    response = client.get(runs_url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_feature_off_says_so_and_leaves_the_navigation(client, roster, runs_url):
    client.force_login(roster.owner)
    assert 'id="nav-automation-runs"' in client.get(runs_url).content.decode()
    roster.org.automations_enabled = False
    roster.org.save()
    response = client.get(runs_url)
    assert response.status_code == 404
    assert "Agent Run Automations are off for Acme" in response.content.decode()
    assert 'id="nav-automation-runs"' not in response.content.decode()
    assert 'id="nav-automation-runs"' not in client.get("/").content.decode()


# --- cards, filters, pagination -------------------------------------------------------------


def test_cards_count_the_scope_and_link_to_their_filter(client, roster, runs_url, make_run):
    wanted = {"pending": 3, "running": 2, "completed": 4, "failed": 1, "cancelled": 2, "interrupted": 1}
    for status, n in wanted.items():
        for _ in range(n):
            make_run(status=status)
    make_run(status="failed", run_as=roster.member2)
    client.force_login(roster.member)
    html = client.get(f"{runs_url}?status=failed").content.decode()
    for status, n in wanted.items():
        assert card_count(html, status) == n
    assert card_count(html, "scheduled") == 0
    assert card_count(html, "follow-ups") == 0
    # the active card is marked and every status card is a real link that applies its filter
    assert re.search(
        r'class="summary-card card-failed is-active" href="[^"]*\?status=failed" aria-current', html
    )
    assert f'href="{runs_url}?status=pending"' in html
    client.force_login(roster.owner)
    assert card_count(client.get(runs_url).content.decode(), "failed") == 2


def test_filters_combine_and_bad_values_are_reported(client, roster, runs_url, make_run):
    other_agent = AgentFactory(organization=roster.org, name="Billing agent")
    match = make_run(status="failed", context_type="ticket", context_key="T-1")
    make_run(status="failed", context_type="ticket", context_key="T-2")
    make_run(status="completed", context_type="ticket", context_key="T-1")
    make_run(status="failed", agent=other_agent)
    client.force_login(roster.owner)

    html = client.get(f"{runs_url}?status=failed&context_type=ticket&context_key=T-1").content.decode()
    assert row_ids(html) == {str(match.pk)}
    assert len(row_ids(client.get(f"{runs_url}?agent={other_agent.pk}").content.decode())) == 1
    assert len(row_ids(client.get(f"{runs_url}?source=schedule").content.decode())) == 0
    assert "No runs match these filters" in client.get(f"{runs_url}?source=schedule").content.decode()

    bad = client.get(f"{runs_url}?status=exploded&created=24h").content.decode()
    assert "Select a valid choice" in bad
    assert len(row_ids(bad)) == 4


def test_time_range_filter(client, roster, runs_url, make_run, time_machine):
    old = make_run()
    AgentRun.objects.filter(pk=old.pk).update(created_at=old.created_at.replace(year=2000))
    fresh = make_run()
    client.force_login(roster.owner)
    assert row_ids(client.get(f"{runs_url}?created=24h").content.decode()) == {str(fresh.pk)}


def test_cursor_pagination_walks_every_row_once(client, roster, runs_url, make_run):
    made = {str(make_run().pk) for _ in range(60)}
    client.force_login(roster.owner)
    html = client.get(f"{runs_url}?limit=25").content.decode()
    assert "all 60 runs matching this filter" in html
    seen, pages = row_ids(html), [len(row_ids(html))]
    while match := re.search(r'<a href="([^"]*)"[^>]*>Older', html):
        html = client.get(match.group(1).replace("&amp;", "&")).content.decode()
        assert not row_ids(html) & seen
        seen |= row_ids(html)
        pages.append(len(row_ids(html)))
    assert seen == made
    assert pages == [25, 25, 10]
    newer = re.search(r'<a href="([^"]*)"[^>]*>← Newer', html).group(1).replace("&amp;", "&")
    assert len(row_ids(client.get(newer).content.decode())) == 25


def test_empty_state_says_what_to_do(client, roster, runs_url):
    client.force_login(roster.owner)
    html = client.get(runs_url).content.decode()
    assert "No automation runs yet" in html
    assert "Capabilities page" in html


# --- detail panel, cancel, retry ------------------------------------------------------------


def test_detail_panel_shows_every_field_and_the_timeline(client, roster, runs_url, make_run):
    previous = make_run(status="completed")
    run = make_run(
        status="failed",
        previous_run=previous,
        last_error="RuntimeError: the tool exploded\n\nTraceback (most recent call last): ...",
        metadata={"note": "from a test"},
        context_type="ticket",
        context_key="T-9",
    )
    RunEvent.objects.create(run=run, kind="claimed", detail={"worker": "w1@host"})
    client.force_login(roster.owner)
    html = client.get(f"{runs_url}{run.pk}/").content.decode()
    assert 'id="detail-panel"' in html
    assert "RuntimeError: the tool exploded" in html
    assert "&quot;note&quot;: &quot;from a test&quot;" in html
    assert "worker=w1@host" in html
    assert f"{runs_url}{previous.pk}/" in html
    assert "Retry as a new run" in html
    for label in ["Runs as", "Sent to a worker", "Last heartbeat", "Lease expires", "Worker (lease owner)"]:
        assert label in html
    panel = client.get(f"{runs_url}{run.pk}/", HTTP_HX_TARGET="detail-panel", **HTMX)
    assert panel.content.decode().lstrip().startswith('<aside id="detail-panel"')


def test_stale_lease_is_highlighted(client, roster, runs_url, make_run):
    from django.utils import timezone

    run = make_run(
        status="running",
        started_at=timezone.now(),
        heartbeat_at=timezone.now(),
        lease_owner="w9@gone",
        lease_expires_at=timezone.now().replace(year=2001),
    )
    client.force_login(roster.owner)
    html = client.get(f"{runs_url}{run.pk}/").content.decode()
    assert "recovery will interrupt this run" in html
    assert 'class="stale"' in html


def test_cancel_and_retry_through_the_services(client, roster, runs_url, make_run):
    pending = make_run(status="pending")
    failed = make_run(status="failed", last_error="boom")
    done = make_run(status="completed")
    client.force_login(roster.member)

    response = client.post(f"{runs_url}{pending.pk}/cancel/?status=pending", follow=True)
    assert AgentRun.objects.get(pk=pending.pk).status == RunStatus.CANCELLED
    assert response.redirect_chain[0][0] == f"{runs_url}{pending.pk}/?status=pending"
    assert "Run cancelled" in response.content.decode()
    assert RunEvent.objects.filter(run=pending, kind="cancelled", detail__by="member").exists()

    response = client.post(f"{runs_url}{failed.pk}/retry/", follow=True)
    retry = AgentRun.objects.get(retry_of=failed)
    assert retry.status == RunStatus.PENDING
    assert response.redirect_chain[0][0] == f"{runs_url}{retry.pk}/"

    response = client.post(f"{runs_url}{done.pk}/cancel/", follow=True)
    assert "Not cancelled: Only pending or running runs can be cancelled" in response.content.decode()
    assert AgentRun.objects.get(pk=done.pk).status == RunStatus.COMPLETED


def test_cancel_with_htmx_answers_the_panel_and_nudges_the_table(client, roster, runs_url, make_run):
    run = make_run(status="pending")
    client.force_login(roster.owner)
    response = client.post(f"{runs_url}{run.pk}/cancel/", **HTMX)
    html = response.content.decode()
    assert response["HX-Trigger"] == "runs-changed"
    assert html.lstrip().startswith('<aside id="detail-panel"')
    assert 'hx-swap-oob="true"' in html and "Run cancelled" in html


def test_only_post_changes_a_run(client, roster, runs_url, make_run):
    run = make_run(status="pending")
    client.force_login(roster.owner)
    assert client.get(f"{runs_url}{run.pk}/cancel/").status_code == 405
    assert AgentRun.objects.get(pk=run.pk).status == RunStatus.PENDING


# --- polling --------------------------------------------------------------------------------


def test_polling_refreshes_cards_and_live_rows_then_slows_to_the_idle_check(
    client, roster, runs_url, make_run
):
    run = make_run(status="running")
    client.force_login(roster.owner)
    page = client.get(runs_url).content.decode()
    assert 'hx-trigger="every 3s"' in page
    assert f'class="live-id" name="live" value="{run.pk}"' in page
    since = re.search(r'name="since" value="([^"]+)"', page).group(1)

    poll = {"HTTP_HX_TARGET": "summary-cards", "HTTP_HX_TRIGGER": "summary-cards", **HTMX}
    response = client.get(runs_url, {"live": run.pk, "since": since}, **poll)
    assert response.status_code == 200
    assert "HX-Request" in response["Vary"]
    assert "HX-Trigger" not in response
    assert f'<tr id="run-{run.pk}" class="run-row" hx-swap-oob="true">' in response.content.decode()

    AgentRun.objects.filter(pk=run.pk).update(status=RunStatus.COMPLETED)
    response = client.get(runs_url, {"live": run.pk, "since": since}, **poll)
    html = response.content.decode()
    assert card_count(html, "running") == 0 and card_count(html, "completed") == 1
    assert "every 3s" not in html and 'hx-trigger="every 30s"' in html
    assert "status-completed" in html
    # idle and nothing new: the check answers without a body, so nothing is swapped
    assert client.get(runs_url, {"since": since}, **poll).status_code == 204


def test_a_new_run_refreshes_the_first_page_and_is_announced_on_later_ones(
    client, roster, runs_url, make_run
):
    make_run(status="completed")
    client.force_login(roster.owner)
    page = client.get(runs_url).content.decode()
    since = re.search(r'name="since" value="([^"]+)"', page).group(1)
    poll = {"HTTP_HX_TARGET": "summary-cards", "HTTP_HX_TRIGGER": "summary-cards", **HTMX}
    make_run(status="pending", run_as=roster.member2)

    response = client.get(runs_url, {"since": since}, **poll)
    assert response["HX-Trigger"] == "runs-changed"
    assert card_count(response.content.decode(), "pending") == 1

    response = client.get(runs_url, {"since": since, "cursor": "x"}, **poll)
    assert "HX-Trigger" not in response
    assert "1 new run — show" in response.content.decode()

    # a filter that the new run does not match announces nothing
    response = client.get(runs_url, {"since": since, "status": "completed"}, **poll)
    assert "HX-Trigger" not in response

    # a member is not told about runs outside their scope
    client.force_login(roster.member)
    page = client.get(runs_url).content.decode()
    since = re.search(r'name="since" value="([^"]+)"', page).group(1)
    make_run(status="pending", run_as=roster.member2)
    assert client.get(runs_url, {"since": since}, **poll).status_code == 204


def test_the_table_refreshing_itself_keeps_the_open_panel(client, roster, runs_url, make_run):
    make_run(status="pending")
    client.force_login(roster.owner)
    refresh = client.get(runs_url, HTTP_HX_TARGET="runs-region", HTTP_HX_TRIGGER="runs-region", **HTMX)
    assert 'id="detail-panel"' not in refresh.content.decode()
    by_filter = client.get(runs_url, HTTP_HX_TARGET="runs-region", HTTP_HX_TRIGGER="run-filters", **HTMX)
    assert '<aside id="detail-panel" class="panel is-empty"' in by_filter.content.decode()


def test_the_detail_panel_stops_polling_once_the_run_ended(client, roster, runs_url, make_run):
    run = make_run(status="completed")
    client.force_login(roster.owner)
    headers = {"HTTP_HX_TARGET": "detail-panel", "HTTP_HX_TRIGGER": "detail-panel", **HTMX}
    assert client.get(f"{runs_url}{run.pk}/", **headers).status_code == 286


# --- bulk actions ---------------------------------------------------------------------------


def test_bulk_cancel_of_selected_rows_confirms_then_reports(client, roster, runs_url, make_run):
    pending = [make_run(status="pending") for _ in range(3)]
    done = make_run(status="completed")
    theirs = make_run(status="pending", run_as=roster.member2)
    ids = [str(r.pk) for r in [*pending, done, theirs]]
    client.force_login(roster.member)

    confirm = client.post(f"{runs_url}bulk/", {"action": "cancel", "run": ids})
    html = confirm.content.decode()
    assert "Cancel 5 runs?" in html
    assert "3 of them can be cancelled now" in html
    assert "(1 are not in your scope)" in html
    assert AgentRun.objects.filter(status=RunStatus.CANCELLED).count() == 0

    response = client.post(f"{runs_url}bulk/", {"action": "cancel", "run": ids, "confirm": "1"}, follow=True)
    html = response.content.decode()
    assert "Cancelled 3 runs." in html
    assert "Not changed:" in html and "1 already finished" in html and "1 not in your scope" in html
    assert AgentRun.objects.filter(status=RunStatus.CANCELLED).count() == 3
    assert AgentRun.objects.get(pk=theirs.pk).status == RunStatus.PENDING


def test_bulk_on_all_matching_the_filter_works_in_batches(client, roster, runs_url, make_run, monkeypatch):
    from monitor.views import bulk

    monkeypatch.setattr(bulk, "BATCH_SIZE", 4)
    for _ in range(10):
        make_run(status="pending")
    keep = make_run(status="failed")
    client.force_login(roster.owner)
    data = {"action": "cancel", "all_matching": "1", "status": "pending"}
    assert "Cancel 10 runs?" in client.post(f"{runs_url}bulk/", data).content.decode()
    response = client.post(f"{runs_url}bulk/", {**data, "confirm": "1"}, follow=True)
    assert response.redirect_chain[-1][0] == f"{runs_url}?status=pending"
    assert "Cancelled 10 runs." in response.content.decode()
    assert AgentRun.objects.filter(status=RunStatus.CANCELLED).count() == 10
    assert AgentRun.objects.get(pk=keep.pk).status == RunStatus.FAILED


def test_bulk_retry_skips_runs_it_cannot_retry(client, roster, runs_url, make_run):
    failed = make_run(status="failed")
    interrupted = make_run(status="interrupted")
    running = make_run(status="running")
    client.force_login(roster.owner)
    ids = [str(failed.pk), str(interrupted.pk), str(running.pk)]
    data = {"action": "retry", "run": ids, "confirm": "1"}
    html = client.post(f"{runs_url}bulk/", data, follow=True).content.decode()
    assert "Retried 2 runs." in html and "1 still pending or running" in html
    assert AgentRun.objects.filter(retry_of__in=[failed, interrupted]).count() == 2
    html = client.post(f"{runs_url}bulk/", data, follow=True).content.decode()
    assert "Retried 0 runs." in html and "2 already retried" in html


def test_bulk_without_a_selection_says_so(client, roster, runs_url):
    client.force_login(roster.owner)
    html = client.post(f"{runs_url}bulk/", {"action": "cancel"}, follow=True).content.decode()
    assert "Select at least one run" in html


# --- queries --------------------------------------------------------------------------------


def seed_many(roster, n: int):
    from django.utils import timezone

    users = [UserFactory(username=f"bulk{i}") for i in range(5)]
    runs = [
        AgentRunFactory.build(
            agent=roster.agent,
            organization=roster.org,
            run_as=users[i % 5],
            thread=None,
            status=["pending", "running", "completed", "failed"][i % 4],
            started_at=timezone.now(),
            heartbeat_at=timezone.now(),
        )
        for i in range(n)
    ]
    AgentRun.objects.bulk_create(runs)
    return runs


def test_runs_page_queries_do_not_grow_with_rows(client, roster, runs_url, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    seed_many(roster, 10)
    client.force_login(roster.owner)
    with CaptureQueriesContext(connection) as small:
        client.get(f"{runs_url}?limit=200")
    seed_many(roster, 190)
    with django_assert_max_num_queries(100), CaptureQueriesContext(connection) as large:
        response = client.get(f"{runs_url}?limit=200")
    assert len(row_ids(response.content.decode())) == 200
    assert len(large) == len(small)


def test_detail_page_query_count(client, roster, runs_url, make_run, django_assert_max_num_queries):
    seed_many(roster, 200)
    run = make_run(status="failed")
    AgentRunFactory(agent=roster.agent, run_as=roster.member, retry_of=run, status="failed")
    for i in range(30):
        RunEvent.objects.create(run=run, kind=f"event{i}")
        AgentRunFactory(agent=roster.agent, run_as=roster.member, previous_run=run, status="completed")
    client.force_login(roster.owner)
    with django_assert_max_num_queries(100):
        assert client.get(f"{runs_url}{run.pk}/?limit=200").status_code == 200
