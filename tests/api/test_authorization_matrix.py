"""Every API route and console page, as every kind of caller (DESIGN §8).

Callers: anonymous, the owner of another org, a member without ``actions:manage``, a member
acting on their own rows and on another member's, an admin, an owner and a superuser. Each
request asserts its status code and that no row of the other org (nor, for a member, of
another member) shows up in the body. ``test_every_route_is_in_the_matrix`` fails when a
route under ``/api/`` or ``/orgs/`` is added without a row here.
"""

import json
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
from django.urls import URLResolver, get_resolver
from rest_framework.authtoken.models import Token

from automation.models import ProviderEvent, Schedule
from automation.services import schedules
from automation.states import FollowUpStatus, RunStatus
from tests.factories import (
    ActionFactory,
    AgentRunFactory,
    FollowUpFactory,
    ScheduleFactory,
)

ACME_API = "/api/orgs/acme"
RUNS_PAGE = "/orgs/acme/agents/monitor/automation-runs"


@dataclass(frozen=True)
class Route:
    """One request: ``url`` and ``data`` build it from the caller's target rows."""

    name: str
    method: str
    url: object
    ok: int
    data: object = None
    # A member acting on another member's row gets a 404, as if it did not exist.
    scoped_row: bool = False
    # What a member gets for creating something that runs as another member.
    for_another: int | None = None
    public: bool = False
    # Owners and admins only (the audit trail): a member with actions:manage gets 403.
    org_wide_only: bool = False
    query: dict = field(default_factory=dict)

    @property
    def api(self) -> bool:
        return self.name.startswith("api-")


def for_whom(rows, user) -> dict:
    """Org-wide callers act for the rows' member (a superuser is no member, so must say whom)."""
    return {} if user == rows.run_as else {"runAsId": rows.run_as.pk}


def schedule_body(rows, user):
    return {
        **for_whom(rows, user),
        "agentId": rows.agent.pk,
        "name": "Matrix schedule",
        "cadence": "interval",
        "intervalMinutes": 60,
        "timezone": "UTC",
        "instructions": "!reply matrix",
    }


def schedule_form(rows, user):
    return {
        "name": "Matrix schedule",
        "cadence": "interval",
        "interval_minutes": "60",
        "timezone": "UTC",
        "instructions": "!reply matrix",
        "run_as": str(rows.run_as.pk),
        "enabled": "on",
        "catchup_window": "60",
        "overlap_policy": "skip",
    }


ROUTES = [
    Route("schema", "get", lambda r: "/api/schema/", 200, public=True),
    Route("swagger-ui", "get", lambda r: "/api/docs/", 200, public=True),
    # API: runs
    Route("api-runs", "get", lambda r: f"{ACME_API}/agent-runs", 200),
    Route("api-runs", "get", lambda r: f"{ACME_API}/agent-runs", 200, query={"status": "failed"}),
    Route("api-runs", "get", lambda r: f"{ACME_API}/agent-runs", 200, query={"source": "manual"}),
    Route(
        "api-runs", "get", lambda r: f"{ACME_API}/agent-runs", 200, query={"agentId": "{agent}", "limit": "5"}
    ),
    Route(
        "api-runs",
        "post",
        lambda r: f"{ACME_API}/agent-runs",
        201,
        data=lambda r, u: {"agentId": r.agent.pk, "prompt": "!reply matrix", **for_whom(r, u)},
        for_another=403,
    ),
    Route(
        "api-run-detail", "get", lambda r: f"{ACME_API}/agent-runs/{r.pending_run.pk}", 200, scoped_row=True
    ),
    Route(
        "api-run-cancel",
        "post",
        lambda r: f"{ACME_API}/agent-runs/{r.pending_run.pk}/cancel",
        200,
        scoped_row=True,
    ),
    Route(
        "api-run-retry",
        "post",
        lambda r: f"{ACME_API}/agent-runs/{r.failed_run.pk}/retry",
        201,
        scoped_row=True,
    ),
    # API: schedules
    Route("api-schedules", "get", lambda r: f"{ACME_API}/agent-run-schedules", 200),
    Route(
        "api-schedules", "get", lambda r: f"{ACME_API}/agent-run-schedules", 200, query={"agentId": "{agent}"}
    ),
    Route(
        "api-schedules",
        "post",
        lambda r: f"{ACME_API}/agent-run-schedules",
        201,
        data=schedule_body,
        for_another=403,
    ),
    Route(
        "api-schedule-detail",
        "get",
        lambda r: f"{ACME_API}/agent-run-schedules/{r.schedule.pk}",
        200,
        scoped_row=True,
    ),
    Route(
        "api-schedule-detail",
        "patch",
        lambda r: f"{ACME_API}/agent-run-schedules/{r.schedule.pk}",
        200,
        data=lambda r, u: {"name": "Renamed", "enabled": True},
        scoped_row=True,
    ),
    Route(
        "api-schedule-detail",
        "delete",
        lambda r: f"{ACME_API}/agent-run-schedules/{r.schedule.pk}",
        200,
        scoped_row=True,
    ),
    Route(
        "api-schedule-run",
        "post",
        lambda r: f"{ACME_API}/agent-run-schedules/{r.schedule.pk}/run",
        201,
        scoped_row=True,
    ),
    # API: follow-ups
    Route("api-follow-ups", "get", lambda r: f"{ACME_API}/agent-run-follow-ups", 200),
    Route("api-follow-up-refusals", "get", lambda r: f"{ACME_API}/agent-run-follow-up-refusals", 200),
    Route(
        "api-follow-ups",
        "get",
        lambda r: f"{ACME_API}/agent-run-follow-ups",
        200,
        query={"statusGroup": "active", "agentId": "{agent}", "status": "pending", "contextType": "ticket"},
    ),
    Route(
        "api-follow-ups",
        "get",
        lambda r: f"{ACME_API}/agent-run-follow-ups",
        200,
        query={"contextKey": "T-1", "threadId": "{thread}"},
    ),
    Route(
        "api-follow-up-detail",
        "get",
        lambda r: f"{ACME_API}/agent-run-follow-ups/{r.follow_up.pk}",
        200,
        scoped_row=True,
    ),
    Route(
        "api-follow-up-detail",
        "delete",
        lambda r: f"{ACME_API}/agent-run-follow-ups/{r.follow_up.pk}",
        200,
        scoped_row=True,
    ),
    # API: provider events and actions
    Route("api-provider-events", "get", lambda r: f"{ACME_API}/provider-events", 200),
    Route(
        "api-provider-events",
        "get",
        lambda r: f"{ACME_API}/provider-events",
        200,
        query={"agentId": "{agent}", "status": "started", "contextKey": "T-1"},
    ),
    Route("api-actions", "get", lambda r: f"{ACME_API}/actions", 200),
    Route(
        "api-actions",
        "post",
        lambda r: f"{ACME_API}/actions",
        201,
        data=lambda r, u: {
            "agentId": r.agent.pk,
            "name": "Matrix hook",
            "provider": "webhook",
            **for_whom(r, u),
        },
        for_another=403,
    ),
    # Console pages
    Route("runs", "get", lambda r: f"{RUNS_PAGE}/", 200),
    Route("runs", "get", lambda r: f"{RUNS_PAGE}/", 200, query={"status": "failed", "source": "manual"}),
    Route("run-detail", "get", lambda r: f"{RUNS_PAGE}/{r.pending_run.pk}/", 200, scoped_row=True),
    Route("run-short", "get", lambda r: f"{RUNS_PAGE}/{str(r.pending_run.pk)[:8]}/", 302, scoped_row=True),
    Route("search", "get", lambda r: f"{RUNS_PAGE}/search/", 200),
    Route("audit", "get", lambda r: f"{RUNS_PAGE}/audit/", 200, org_wide_only=True),
    Route("trends", "get", lambda r: f"{RUNS_PAGE}/trends/", 200),
    Route("workers", "get", lambda r: f"{RUNS_PAGE}/workers/", 200, org_wide_only=True),
    Route("provider-events", "get", lambda r: f"{RUNS_PAGE}/provider-events/", 200),
    Route(
        "provider-events", "get", lambda r: f"{RUNS_PAGE}/provider-events/", 200, query={"view": "refused"}
    ),
    Route("run-cancel", "post", lambda r: f"{RUNS_PAGE}/{r.pending_run.pk}/cancel/", 302, scoped_row=True),
    Route("run-retry", "post", lambda r: f"{RUNS_PAGE}/{r.failed_run.pk}/retry/", 302, scoped_row=True),
    Route(
        "runs-bulk",
        "post",
        lambda r: f"{RUNS_PAGE}/bulk/",
        200,
        data=lambda r, u: {"action": "cancel", "run": [str(r.pending_run.pk)]},
    ),
    Route("follow-ups", "get", lambda r: f"{RUNS_PAGE}/follow-ups/", 200),
    Route("follow-ups", "get", lambda r: f"{RUNS_PAGE}/follow-ups/", 200, query={"status": "pending"}),
    Route(
        "follow-up-cancel",
        "post",
        lambda r: f"{RUNS_PAGE}/follow-ups/{r.follow_up.pk}/cancel/",
        302,
        scoped_row=True,
    ),
    Route("schedules", "get", lambda r: f"{RUNS_PAGE}/schedules/", 200),
    Route("thread", "get", lambda r: f"/orgs/acme/threads/{r.pending_run.thread_id}/", 200, scoped_row=True),
    Route("agents", "get", lambda r: "/orgs/acme/agents/", 200),
    Route("capabilities", "get", lambda r: f"/orgs/acme/agents/{r.agent.pk}/capabilities/", 200),
    Route("schedule-new", "get", lambda r: f"/orgs/acme/agents/{r.agent.pk}/schedules/new/", 200),
    # the form offers a member only themselves to run as: another member re-renders it with an error
    Route(
        "schedule-new",
        "post",
        lambda r: f"/orgs/acme/agents/{r.agent.pk}/schedules/new/",
        302,
        data=schedule_form,
        for_another=200,
    ),
    Route(
        "schedule-preview",
        "get",
        lambda r: f"/orgs/acme/agents/{r.agent.pk}/schedules/preview/",
        200,
        query={"cadence": "daily", "time_of_day": "09:00", "timezone": "UTC"},
    ),
    Route(
        "schedule-edit",
        "get",
        lambda r: f"/orgs/acme/agents/{r.agent.pk}/schedules/{r.schedule.pk}/edit/",
        200,
        scoped_row=True,
    ),
    Route(
        "schedule-edit",
        "post",
        lambda r: f"/orgs/acme/agents/{r.agent.pk}/schedules/{r.schedule.pk}/edit/",
        302,
        data=schedule_form,
        scoped_row=True,
    ),
    *[
        Route(
            "schedule-command",
            "post",
            lambda r, verb=verb: f"/orgs/acme/agents/{r.agent.pk}/schedules/{r.schedule.pk}/{verb}/",
            302,
            scoped_row=True,
        )
        for verb in ("disable", "enable", "run-now")
    ],
]

# caller → (user attribute on the roster, whose rows they act on)
CALLERS = {
    "anonymous": (None, "member2"),
    "other_org": ("other_owner", "member2"),
    "no_permission": ("viewer", "member2"),
    "member_own": ("member", "member"),
    "member_other": ("member", "member2"),
    "admin": ("admin", "member2"),
    "owner": ("owner", "member2"),
    "superuser": ("superuser", "member2"),
}


def expected_status(route: Route, caller: str) -> int:
    if route.public:
        return route.ok
    if caller == "anonymous":
        return 401 if route.api else 302
    if caller == "other_org":
        return 404
    if caller == "no_permission":
        return 403
    if route.org_wide_only and caller.startswith("member"):
        return 403
    if caller == "member_other" and route.scoped_row:
        return 404
    if caller == "member_other" and route.for_another is not None:
        return route.for_another
    return route.ok


def rows_of(roster, user):
    """Fresh rows in acme that run as ``user``: each caller acts on its own copy."""
    pending = AgentRunFactory(agent=roster.agent, run_as=user, status=RunStatus.PENDING)
    failed = AgentRunFactory(agent=roster.agent, run_as=user, status=RunStatus.FAILED, thread=pending.thread)
    action = ActionFactory(agent=roster.agent, run_as=user)
    ProviderEvent.objects.create(
        organization=roster.org,
        action=action,
        agent=roster.agent,
        event_id=f"evt-{pending.pk}",
        context_type="ticket",
        context_key="T-1",
        status="started",
        run=pending,
    )
    return SimpleNamespace(
        agent=roster.agent,
        pending_run=pending,
        failed_run=failed,
        run_as=user,
        schedule=schedules.schedule_create(
            organization=roster.org,
            agent=roster.agent,
            run_as=user,
            name="Hourly",
            cadence="interval",
            interval_minutes=60,
            timezone="UTC",
            instructions="!reply hourly",
        ),
        follow_up=FollowUpFactory(
            agent=roster.agent,
            run_as=user,
            status=FollowUpStatus.PENDING,
            context_type="ticket",
            context_key="T-1",
            thread=pending.thread,
        ),
        action=action,
    )


@pytest.fixture
def foreign(roster):
    """Rows of the other org; none of their ids may appear in an answer about acme."""
    run = AgentRunFactory(agent=roster.other_agent, run_as=roster.other_owner, status=RunStatus.FAILED)
    action = ActionFactory(agent=roster.other_agent, run_as=roster.other_owner)
    return SimpleNamespace(
        uuids={str(run.pk), str(action.pk)},
        ids={
            "api-schedule": ScheduleFactory(agent=roster.other_agent, run_as=roster.other_owner).pk,
            "api-follow-up": FollowUpFactory(agent=roster.other_agent, run_as=roster.other_owner).pk,
            "api-provider-event": ProviderEvent.objects.create(
                organization=roster.other_org,
                action=action,
                agent=roster.other_agent,
                event_id="evt-globex",
                status="ignored",
            ).pk,
        },
    )


def row_ids(body) -> set:
    """The ``id`` of the resource answered, or of each one in a page."""
    if isinstance(body, dict) and "results" in body:
        return {row["id"] for row in body["results"]}
    return {body["id"]} if isinstance(body, dict) and "id" in body else set()


def call(client, route: Route, rows, user):
    url = route.url(rows)
    query = {
        k: v.format(agent=rows.agent.pk, thread=rows.pending_run.thread_id) for k, v in route.query.items()
    }
    data = route.data(rows, user) if route.data else None
    if route.method == "get":
        return client.get(url, query)
    if route.api:
        return getattr(client, route.method)(url, json.dumps(data or {}), content_type="application/json")
    return client.post(url, data or {})


def authenticate(client, user, route: Route) -> None:
    client.logout()
    client.defaults.pop("HTTP_AUTHORIZATION", None)
    if user is None:
        return
    if route.api:
        token, _ = Token.objects.get_or_create(user=user)
        client.defaults["HTTP_AUTHORIZATION"] = f"Token {token.key}"
    else:
        client.force_login(user)


def route_id(route: Route) -> str:
    return f"{route.method.upper()} {route.name}" + (f" {sorted(route.query)}" if route.query else "")


@pytest.mark.parametrize("route", ROUTES, ids=route_id)
def test_route_answers_each_caller(route, roster, foreign, client):
    member2_rows = None
    for caller, (attr, owner_attr) in CALLERS.items():
        user = getattr(roster, attr) if attr else None
        rows = rows_of(roster, getattr(roster, owner_attr))
        if caller == "member_own":
            member2_rows = rows_of(roster, roster.member2)
        authenticate(client, user, route)
        response = call(client, route, rows, user)
        expected = expected_status(route, caller)
        assert response.status_code == expected, (caller, response.status_code, response.content[:400])
        if caller == "anonymous" and not route.api and not route.public:
            assert response["Location"].startswith("/accounts/login/")
        body = response.content.decode(errors="replace")
        leaked = {u for u in foreign.uuids if u in body}
        assert not leaked, (caller, "foreign row in body", leaked)
        if route.api and response["Content-Type"].startswith("application/json"):
            foreign_ids = {pk for prefix, pk in foreign.ids.items() if route.name.startswith(prefix)}
            assert not row_ids(response.json()) & foreign_ids, (caller, "foreign row in body")
        # the bulk confirmation echoes the ids the caller sent; the confirmed POST is checked below
        if caller == "member_other" and route.name != "runs-bulk":
            assert str(rows.pending_run.pk) not in body, ("member sees another member's run", route.name)
            assert str(rows.action.pk) not in body, ("member sees another member's action", route.name)
        if caller == "member_own":
            hidden = {
                str(member2_rows.pending_run.pk),
                str(member2_rows.failed_run.pk),
                str(member2_rows.action.pk),
            }
            assert not {u for u in hidden if u in body}, ("member sees another member's row", route.name)


def walk(patterns, prefix=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
        else:
            yield prefix + str(pattern.pattern), pattern.name


def test_every_route_is_in_the_matrix():
    routes = {name for path, name in walk(get_resolver().url_patterns) if path.startswith(("api/", "orgs/"))}
    listed = {route.name for route in ROUTES}
    assert routes - listed == set(), "routes missing from the authorization matrix"
    assert listed - routes == set(), "matrix rows for routes that no longer exist"


def test_confirmed_bulk_cancel_leaves_another_members_runs_alone(roster, client):
    theirs = AgentRunFactory(agent=roster.agent, run_as=roster.member2, status=RunStatus.PENDING)
    client.force_login(roster.member)
    data = {"action": "cancel", "run": [str(theirs.pk)], "confirm": "1"}
    response = client.post(f"{RUNS_PAGE}/bulk/", data, follow=True)
    assert response.status_code == 200
    assert "1 not in your scope" in response.content.decode()
    theirs.refresh_from_db()
    assert theirs.status == RunStatus.PENDING


# --- mass assignment ---------------------------------------------------------------------------


@pytest.fixture
def member_api(roster, client):
    client.force_login(roster.member)
    return client


def test_schedule_create_ignores_fields_the_caller_may_not_set(roster, member_api):
    body = {
        **schedule_body(SimpleNamespace(agent=roster.agent, run_as=roster.member), roster.member),
        "organization": roster.other_org.pk,
        "organizationId": roster.other_org.pk,
        "missedCount": 99,
        "skippedCount": 7,
        "nextRunAt": "2000-01-01T00:00:00Z",
        "lastRunAt": "2000-01-01T00:00:00Z",
        "bufferedSlot": "2000-01-01T00:00:00Z",
        "blockedReason": "forged",
        "createdBy": roster.owner.pk,
        "id": 424242,
    }
    response = member_api.post(f"{ACME_API}/agent-run-schedules", body, content_type="application/json")
    assert response.status_code == 201, response.content
    stored = Schedule.objects.get(pk=response.json()["id"])
    assert stored.pk != 424242
    assert stored.organization_id == roster.org.pk
    assert (stored.missed_count, stored.skipped_count, stored.buffered_slot, stored.blocked_reason) == (
        0,
        0,
        None,
        "",
    )
    assert stored.last_run_at is None and stored.next_run_at.year > 2000
    assert (stored.run_as_id, stored.created_by_id) == (roster.member.pk, roster.member.pk)


def test_a_member_cannot_schedule_or_run_as_another_user(roster, member_api):
    body = {
        **schedule_body(SimpleNamespace(agent=roster.agent, run_as=roster.member), roster.member),
        "runAsId": roster.member2.pk,
    }
    assert member_api.post(
        f"{ACME_API}/agent-run-schedules", body, content_type="application/json"
    ).status_code in (
        400,
        403,
    )
    mine = ScheduleFactory(agent=roster.agent, run_as=roster.member)
    url = f"{ACME_API}/agent-run-schedules/{mine.pk}"
    refused = member_api.patch(url, {"runAsId": roster.member2.pk}, content_type="application/json")
    assert refused.status_code in (400, 403)
    mine.refresh_from_db()
    assert mine.run_as_id == roster.member.pk
    run = {"agentId": roster.agent.pk, "prompt": "!reply hi", "runAsId": roster.member2.pk}
    assert member_api.post(f"{ACME_API}/agent-runs", run, content_type="application/json").status_code == 403
    assert not roster.member2.agent_runs.exists()


def test_schedule_update_ignores_counters_lease_and_organization(roster, member_api):
    mine = ScheduleFactory(agent=roster.agent, run_as=roster.member, missed_count=3)
    url = f"{ACME_API}/agent-run-schedules/{mine.pk}"
    body = {"name": "Renamed", "missedCount": 0, "organization": roster.other_org.pk, "agentName": "x"}
    assert member_api.patch(url, body, content_type="application/json").status_code == 200
    mine.refresh_from_db()
    assert (mine.name, mine.missed_count, mine.organization_id) == ("Renamed", 3, roster.org.pk)


def test_manual_run_ignores_status_lease_and_organization(roster, member_api):
    body = {
        "agentId": roster.agent.pk,
        "prompt": "!reply hi",
        "status": "completed",
        "organization": roster.other_org.pk,
        "leaseOwner": "forged-worker",
        "leaseExpiresAt": "2100-01-01T00:00:00Z",
        "leaseToken": "00000000-0000-0000-0000-000000000000",
        "attempt": 9,
        "source": "schedule",
        "scheduleId": ScheduleFactory(agent=roster.agent, run_as=roster.member).pk,
    }
    response = member_api.post(f"{ACME_API}/agent-runs", body, content_type="application/json")
    assert response.status_code == 201, response.content
    run = roster.member.agent_runs.get(pk=response.json()["id"])
    assert (run.status, run.organization_id, run.source, run.schedule_id) == (
        "pending",
        roster.org.pk,
        "manual",
        None,
    )
    assert (run.lease_owner, run.lease_expires_at, run.attempt) == ("", None, run.attempt)
    assert run.attempt != 9


def test_action_create_ignores_organization_and_refuses_another_run_as(roster, member_api):
    body = {
        "agentId": roster.agent.pk,
        "name": "Hook",
        "provider": "webhook",
        "organization": roster.other_org.pk,
    }
    response = member_api.post(f"{ACME_API}/actions", body, content_type="application/json")
    assert response.status_code == 201, response.content
    assert response.json()["runAsId"] == roster.member.pk
    other = {**body, "runAsId": roster.member2.pk}
    assert member_api.post(f"{ACME_API}/actions", other, content_type="application/json").status_code == 403
