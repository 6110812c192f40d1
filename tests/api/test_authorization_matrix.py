"""Every API route and console page, as every kind of caller (DESIGN §8).

Callers: anonymous, the owner of another org, a member without ``actions:manage``, a member
acting on their own rows and on another member's, an admin, an owner and a superuser. Each
request asserts its status code and that no row of the other org (nor, for a member, of
another member) shows up in the body. ``test_every_route_is_in_the_matrix`` fails when a
route under ``/api/`` or ``/orgs/`` is added without a row here. The second half tries a member
naming another member's ids and contexts in every input that takes one (issue 13).
"""

import html
import json
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
from django.urls import URLResolver, get_resolver
from rest_framework.authtoken.models import Token

from automation.models import (
    Action,
    AgentRun,
    FollowUp,
    FollowUpRefusal,
    ProviderEvent,
    RefusedDelivery,
    Schedule,
)
from automation.services import runs as run_services
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
    Route("api-capacity", "get", lambda r: f"{ACME_API}/capacity", 200),
    Route("api-usage", "get", lambda r: f"{ACME_API}/usage", 200),
    Route(
        "api-usage",
        "get",
        lambda r: f"{ACME_API}/usage",
        200,
        query={"groupBy": "schedule", "agentId": "{agent}"},
    ),
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
    Route("actions", "get", lambda r: "/orgs/acme/agents/actions/", 200),
    Route("action", "get", lambda r: f"/orgs/acme/agents/actions/{r.action.pk}/", 200, scoped_row=True),
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
    # the event id names the run in hex: a search page echoing it shows no row's (dashed) id
    event = ProviderEvent.objects.create(
        organization=roster.org,
        action=action,
        agent=roster.agent,
        event_id=f"evt-{pending.pk.hex}",
        context_type="ticket",
        context_key="T-1",
        status="started",
        run=pending,
    )
    refusal = FollowUpRefusal.objects.create(
        organization=roster.org,
        agent=roster.agent,
        run=pending,
        run_as=user,
        thread=pending.thread,
        context_type="ticket",
        context_key="T-1",
        code="delay_out_of_bounds",
        reason="delay too long",
    )
    refused = RefusedDelivery.objects.create(
        organization=roster.org, action=action, action_ref=str(action.pk), reason="signature"
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
        event=event,
        refusal=refusal,
        refused=refused,
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
            "api-follow-up-refusals": FollowUpRefusal.objects.create(
                organization=roster.other_org,
                agent=roster.other_agent,
                run=run,
                code="chain_too_long",
                reason="x",
            ).pk,
            "api-provider-event": ProviderEvent.objects.create(
                organization=roster.other_org,
                action=action,
                agent=roster.other_agent,
                event_id="evt-globex",
                status="ignored",
            ).pk,
        },
    )


def table_ids(name: str, by_prefix: dict) -> set:
    """The integer id in ``by_prefix`` of the table route ``name`` answers with (ids are per
    table, so only the most specific prefix counts)."""
    prefixes = sorted((p for p in by_prefix if name.startswith(p)), key=len)
    return {by_prefix[prefixes[-1]]} if prefixes else set()


def row_ids(body) -> set:
    """The ``id`` of the resource answered, or of each one in a page (a report's rows, such as
    usage per day, are no resources and have none)."""
    if isinstance(body, dict) and "results" in body:
        return {row["id"] for row in body["results"] if "id" in row}
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
            foreign_ids = table_ids(route.name, foreign.ids)
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


# --- a member names another member's ids and contexts in the input -----------------------------
#
# Every route that takes an id or a context in its input (path, body, query, form, htmx partial,
# admin) is tried by ``member`` with ``member2``'s values. Their rows must come out unchanged, none
# of their ids or conversation may show in the answer, and nothing of the member's may join their
# thread or context. ``test_every_route_is_probed_with_another_members_ids`` fails when a route is
# added without a probe here (or a reason why it takes no such input).

THEIR_SECRET = "member2's private conversation"


@dataclass(frozen=True)
class Probe:
    name: str
    method: str
    url: object  # (mine, theirs) -> str
    refused: tuple  # the statuses that count as refused (or answered without their data)
    data: object = None  # (mine, theirs) -> dict
    query: object = None  # (mine, theirs) -> dict
    htmx_target: str = ""

    @property
    def api(self) -> bool:
        return self.name.startswith("api-")


def their_filters(mine, theirs):
    return {"agentId": theirs.agent.pk, "threadId": theirs.pending_run.thread_id, "contextType": "ticket"}


PROBES = [
    Probe("api-runs", "get", lambda m, t: f"{ACME_API}/agent-runs", (200, 400), query=their_filters),
    Probe("api-runs", "get", lambda m, t: f"{ACME_API}/agent-runs", (200, 400), query=lambda m, t: {"contextKey": "T-1"}),
    Probe(
        "api-runs", "post", lambda m, t: f"{ACME_API}/agent-runs", (400,),
        data=lambda m, t: {"agentId": t.agent.pk, "prompt": "!reply x", "threadId": t.pending_run.thread_id},
    ),
    Probe(
        "api-runs", "post", lambda m, t: f"{ACME_API}/agent-runs", (403,),
        data=lambda m, t: {"agentId": t.agent.pk, "prompt": "!reply x", "runAsId": t.run_as.pk},
    ),
    # the same context key is the member's own context: allowed, and it stays apart from theirs
    Probe(
        "api-runs", "post", lambda m, t: f"{ACME_API}/agent-runs", (201,),
        data=lambda m, t: {"agentId": t.agent.pk, "prompt": "!reply x", "contextType": "ticket", "contextKey": "T-1"},
    ),
    Probe(
        "api-runs", "post", lambda m, t: f"{ACME_API}/agent-runs", (400,),
        data=lambda m, t: {
            "agentId": t.agent.pk, "prompt": "!reply x", "contextType": "schedule",
            "contextKey": t.schedule.context_key,
        },
    ),
    Probe("api-run-detail", "get", lambda m, t: f"{ACME_API}/agent-runs/{t.pending_run.pk}", (404,)),
    Probe("action", "get", lambda m, t: f"/orgs/acme/agents/actions/{t.action.pk}/", (404,)),
    Probe("api-run-cancel", "post", lambda m, t: f"{ACME_API}/agent-runs/{t.pending_run.pk}/cancel", (404,)),
    Probe("api-run-retry", "post", lambda m, t: f"{ACME_API}/agent-runs/{t.failed_run.pk}/retry", (404,)),
    Probe("api-schedules", "get", lambda m, t: f"{ACME_API}/agent-run-schedules", (200,), query=lambda m, t: {"agentId": t.agent.pk}),
    Probe(
        "api-schedules", "post", lambda m, t: f"{ACME_API}/agent-run-schedules", (403,),
        data=lambda m, t: {**schedule_body(m, m.run_as), "runAsId": t.run_as.pk},
    ),
    Probe("api-schedule-detail", "get", lambda m, t: f"{ACME_API}/agent-run-schedules/{t.schedule.pk}", (404,)),
    Probe(
        "api-schedule-detail", "patch", lambda m, t: f"{ACME_API}/agent-run-schedules/{t.schedule.pk}", (404,),
        data=lambda m, t: {"name": "Hijacked"},
    ),
    Probe(
        "api-schedule-detail", "patch", lambda m, t: f"{ACME_API}/agent-run-schedules/{m.schedule.pk}", (400, 403),
        data=lambda m, t: {"runAsId": t.run_as.pk},
    ),
    Probe("api-schedule-detail", "delete", lambda m, t: f"{ACME_API}/agent-run-schedules/{t.schedule.pk}", (404,)),
    Probe("api-schedule-run", "post", lambda m, t: f"{ACME_API}/agent-run-schedules/{t.schedule.pk}/run", (404,)),
    Probe(
        "api-follow-ups", "get", lambda m, t: f"{ACME_API}/agent-run-follow-ups", (200,),
        query=lambda m, t: {"threadId": t.pending_run.thread_id, "contextType": "ticket", "contextKey": "T-1"},
    ),
    Probe("api-follow-up-detail", "get", lambda m, t: f"{ACME_API}/agent-run-follow-ups/{t.follow_up.pk}", (404,)),
    Probe("api-follow-up-detail", "delete", lambda m, t: f"{ACME_API}/agent-run-follow-ups/{t.follow_up.pk}", (404,)),
    Probe(
        "api-follow-up-refusals", "get", lambda m, t: f"{ACME_API}/agent-run-follow-up-refusals", (200,),
        query=lambda m, t: {**their_filters(m, t), "runId": str(t.pending_run.pk), "runAsId": t.run_as.pk},
    ),
    Probe(
        "api-provider-events", "get", lambda m, t: f"{ACME_API}/provider-events", (200,),
        query=lambda m, t: {"actionId": str(t.action.pk), "contextKey": "T-1", "agentId": t.agent.pk},
    ),
    *[
        Probe(
            "api-usage", "get", lambda m, t: f"{ACME_API}/usage", (200,),
            query=lambda m, t, g=group: {"groupBy": g, "agentId": t.agent.pk},
        )
        for group in ("day", "agent", "schedule")
    ],
    Probe(
        "api-actions", "post", lambda m, t: f"{ACME_API}/actions", (403,),
        data=lambda m, t: {"agentId": t.agent.pk, "name": "Hook", "provider": "webhook", "runAsId": t.run_as.pk},
    ),
    Probe(
        "api-actions", "post", lambda m, t: f"{ACME_API}/actions", (400,),
        data=lambda m, t: {"agentId": t.agent.pk, "name": "Hook", "provider": "webhook", "contextType": "schedule"},
    ),
    Probe("runs", "get", lambda m, t: f"{RUNS_PAGE}/", (200,), query=lambda m, t: {"context_type": "ticket", "context_key": "T-1"}),
    Probe(
        "runs", "get", lambda m, t: f"{RUNS_PAGE}/", (200,), htmx_target="runs-region",
        query=lambda m, t: {"context_key": "T-1"},
    ),
    Probe(
        "runs", "get", lambda m, t: f"{RUNS_PAGE}/", (200, 286), htmx_target="summary-cards",
        query=lambda m, t: {"live": [str(t.pending_run.pk), str(t.failed_run.pk)]},
    ),
    Probe("run-detail", "get", lambda m, t: f"{RUNS_PAGE}/{t.pending_run.pk}/", (404,)),
    Probe("run-short", "get", lambda m, t: f"{RUNS_PAGE}/{str(t.pending_run.pk)[:8]}/", (404,)),
    # one hit would redirect to it (302); the page echoes the query, so ids are given undashed
    *[
        Probe("search", "get", lambda m, t, q=q: f"{RUNS_PAGE}/search/", (200,), query=lambda m, t, q=q: {"q": q(t)})
        for q in (
            lambda t: t.pending_run.pk.hex,
            lambda t: t.failed_run.pk.hex[:8],
            lambda t: f"#{t.pending_run.thread_id}",
            lambda t: "T-1",
            lambda t: t.event.event_id,
        )
    ],
    # owners and admins only: a member naming another's rows or username is refused outright
    Probe(
        "audit", "get", lambda m, t: f"{RUNS_PAGE}/audit/", (403,),
        query=lambda m, t: {"actor": t.run_as.username, "target_type": "agentrun", "target_id": t.failed_run.pk.hex},
    ),
    Probe(
        "provider-events", "get", lambda m, t: f"{RUNS_PAGE}/provider-events/", (200,),
        query=lambda m, t: {"action": str(t.action.pk), "event_id": t.event.event_id, "context_key": "T-1"},
    ),
    Probe(
        "provider-events", "get", lambda m, t: f"{RUNS_PAGE}/provider-events/", (200,),
        query=lambda m, t: {"view": "refused", "action": str(t.action.pk)},
    ),
    Probe("run-detail", "get", lambda m, t: f"{RUNS_PAGE}/{t.pending_run.pk}/", (404,), htmx_target="detail-panel"),
    Probe("run-cancel", "post", lambda m, t: f"{RUNS_PAGE}/{t.pending_run.pk}/cancel/", (404,)),
    Probe("run-retry", "post", lambda m, t: f"{RUNS_PAGE}/{t.failed_run.pk}/retry/", (404,)),
    Probe(
        "runs-bulk", "post", lambda m, t: f"{RUNS_PAGE}/bulk/", (200, 302),
        data=lambda m, t: {"action": "retry", "run": [str(t.failed_run.pk)], "confirm": "1"},
    ),
    Probe("follow-ups", "get", lambda m, t: f"{RUNS_PAGE}/follow-ups/", (200,), query=lambda m, t: {"status": "all"}),
    Probe("follow-up-cancel", "post", lambda m, t: f"{RUNS_PAGE}/follow-ups/{t.follow_up.pk}/cancel/", (404,)),
    Probe("thread", "get", lambda m, t: f"/orgs/acme/threads/{t.pending_run.thread_id}/", (404,)),
    Probe("capabilities", "get", lambda m, t: f"/orgs/acme/agents/{t.agent.pk}/capabilities/", (200,)),
    Probe(
        "schedule-new", "post", lambda m, t: f"/orgs/acme/agents/{t.agent.pk}/schedules/new/", (200,),
        data=lambda m, t: schedule_form(t, m.run_as),
    ),
    Probe(
        "schedule-preview", "get", lambda m, t: f"/orgs/acme/agents/{t.agent.pk}/schedules/preview/", (200,),
        query=lambda m, t: {"schedule_id": t.schedule.pk, "cadence": "daily", "time_of_day": "09:00", "timezone": "UTC"},
    ),
    Probe("schedule-edit", "get", lambda m, t: f"/orgs/acme/agents/{t.agent.pk}/schedules/{t.schedule.pk}/edit/", (404,)),
    Probe(
        "schedule-edit", "post", lambda m, t: f"/orgs/acme/agents/{t.agent.pk}/schedules/{t.schedule.pk}/edit/",
        (404,), data=lambda m, t: schedule_form(t, m.run_as),
    ),
    Probe(
        "schedule-edit", "post", lambda m, t: f"/orgs/acme/agents/{m.agent.pk}/schedules/{m.schedule.pk}/edit/",
        (200,), data=lambda m, t: schedule_form(t, m.run_as),
    ),
    *[
        Probe(
            "schedule-command", "post",
            lambda m, t, verb=verb: f"/orgs/acme/agents/{t.agent.pk}/schedules/{t.schedule.pk}/{verb}/", (404,),
        )
        for verb in ("disable", "enable", "run-now")
    ],
]  # fmt: skip

# Routes whose input names no row of a user (the agent is the organization's, not a user's).
NO_USER_ID_INPUT = {
    "schema": "public schema",
    "swagger-ui": "public documentation",
    "schedules": "no input; the list is scoped (checked in test_route_answers_each_caller)",
    "agents": "agents belong to the organization",
    "actions": "no input; the list is scoped to the caller's actions (checked in test_route_answers_each_caller)",
    "trends": "a time range only; the counts come from the caller's runs (selectors.runs_for)",
    "workers": "no input; owners and admins only (a member gets 403); workers are processes, not a user's",
    "api-capacity": "no input; the organization's and agents' totals against their limits, no row or id",
    "action-hook": "authenticated by the action's signing secret, not by a member",
}


def their_state(theirs) -> dict:
    """What a member acting on ``theirs`` must never change."""
    thread = theirs.pending_run.thread
    return {
        "runs": sorted(
            (str(pk), status, str(thread_id))
            for pk, status, thread_id in AgentRun.objects.filter(run_as=theirs.run_as).values_list(
                "pk", "status", "thread_id"
            )
        ),
        "retries": AgentRun.objects.filter(retry_of=theirs.failed_run).count(),
        "thread_runs": sorted(str(pk) for pk in thread.runs.values_list("pk", flat=True)),
        "thread_messages": thread.messages.count(),
        "schedule": Schedule.objects.filter(pk=theirs.schedule.pk)
        .values(*schedules.CONFIG_FIELDS, "next_run_at")
        .get(),
        "follow_up": FollowUp.objects.get(pk=theirs.follow_up.pk).status,
        "action": Action.objects.filter(pk=theirs.action.pk)
        .values("run_as", "context_type", "enabled")
        .get(),
        "deferred": ProviderEvent.objects.filter(deferred_behind__run_as=theirs.run_as).count(),
    }


def probe_id(probe: Probe) -> str:
    return f"{probe.method.upper()} {probe.name} {probe.htmx_target}".strip() + f" #{PROBES.index(probe)}"


@pytest.mark.parametrize("probe", PROBES, ids=probe_id)
def test_a_member_naming_another_members_ids_gets_nothing_of_theirs(probe, roster, client, monkeypatch):
    monkeypatch.setattr(run_services, "dispatch_run", lambda *, run_id, **_: True)
    mine = rows_of(roster, roster.member)
    theirs = rows_of(roster, roster.member2)
    theirs.pending_run.thread.messages.create(role="event", content=THEIR_SECRET)
    AgentRun.objects.filter(pk=theirs.pending_run.pk).update(context_type="ticket", context_key="T-1")
    FollowUpRefusal.objects.filter(pk=theirs.refusal.pk).update(reason=THEIR_SECRET)
    RefusedDelivery.objects.filter(pk=theirs.refused.pk).update(detail=THEIR_SECRET)
    their_ids = {
        "api-schedule": theirs.schedule.pk,
        "api-follow-up": theirs.follow_up.pk,
        "api-follow-up-refusals": theirs.refusal.pk,
        "api-provider-event": theirs.event.pk,
    }
    before = their_state(theirs)
    authenticate(client, roster.member, probe)
    url = probe.url(mine, theirs)
    query = probe.query(mine, theirs) if probe.query else {}
    data = probe.data(mine, theirs) if probe.data else {}
    headers = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": probe.htmx_target} if probe.htmx_target else {}
    if probe.htmx_target == "summary-cards":
        headers["HTTP_HX_TRIGGER"] = "summary-cards"
    if probe.method == "get":
        response = client.get(url, query, **headers)
    elif probe.api:
        response = getattr(client, probe.method)(url, json.dumps(data), content_type="application/json")
    else:
        response = client.post(url, data, **headers)

    assert response.status_code in probe.refused, (response.status_code, response.content[:400])
    body = response.content.decode(errors="replace")
    assert THEIR_SECRET not in body and html.escape(THEIR_SECRET) not in body  # pages escape the apostrophe
    shown = {str(theirs.pending_run.pk), str(theirs.failed_run.pk), str(theirs.action.pk)}
    assert not {pk for pk in shown if pk in body}, "another member's row in the answer"
    if probe.api and response["Content-Type"].startswith("application/json"):
        assert not row_ids(response.json()) & table_ids(probe.name, their_ids), (
            "another member's row in the answer"
        )
    assert their_state(theirs) == before, "another member's rows changed"
    assert not AgentRun.objects.filter(run_as=roster.member, thread__run_as=roster.member2).exists()


def test_a_member_is_refused_every_admin_route_with_another_members_ids(roster, client):
    """The admin is for owners and superusers; a member naming any row there is sent to its login."""
    theirs = rows_of(roster, roster.member2)
    objects = {
        "agentrun": theirs.failed_run.pk, "thread": theirs.pending_run.thread_id, "schedule": theirs.schedule.pk,
        "followup": theirs.follow_up.pk, "action": theirs.action.pk, "membership": roster.member2.memberships.get().pk,
        "user": roster.member2.pk,
    }  # fmt: skip
    before = their_state(theirs)
    client.force_login(roster.member)
    tried = 0
    for path, name in walk(get_resolver().url_patterns):
        if not path.startswith("admin/") or name in ("login", "logout", "jsi18n"):
            continue
        model = path.split("/")[2] if path.count("/") > 2 else ""
        url = "/" + path.replace("<path:object_id>", str(objects.get(model, theirs.failed_run.pk)))
        url = url.replace("<id>", str(roster.member2.pk)).replace("<path:content_type_id>", "1")
        for method in ("get", "post"):
            response = getattr(client, method)(url)
            assert response.status_code in (302, 404), (method, url, response.status_code)
            if response.status_code == 302:
                assert response["Location"].startswith("/admin/login/"), url
            tried += 1
    assert tried > 50
    assert their_state(theirs) == before


def test_every_route_is_probed_with_another_members_ids():
    names = {
        name
        for path, name in walk(get_resolver().url_patterns)
        if path.startswith(("api/", "orgs/", "hooks/")) and name
    }
    probed = {probe.name for probe in PROBES}
    missing = names - probed - set(NO_USER_ID_INPUT)
    assert missing == set(), "routes without a probe of another member's ids (add one to PROBES)"
    assert (probed | set(NO_USER_ID_INPUT)) - names == set(), "probes for routes that no longer exist"
