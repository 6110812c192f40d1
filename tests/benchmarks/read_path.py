"""Benchmark 4: the read path over 1,000,000 runs in 5 orgs, against Django admin's changelist.

Rows are generated inside PostgreSQL (``INSERT … SELECT generate_series``), the fastest
bulk load there is. Times are server time: Django's test client in-process, no network.
"""

from django.db import connection
from django.test import Client

from tests.benchmarks import common

RUNS = 1_000_000
FOLLOW_UPS = 100_000
ORGS = 5
SAMPLES = 20

LOAD_RUNS = """
INSERT INTO agent_runs (id, organization_id, agent_id, run_as_id, source, status, context_type,
    context_key, provider, provider_context, input_snapshot, metadata, created_at, started_at,
    completed_at, lease_owner, attempt, redispatch_count, last_error, waiting_reason, input_tokens, output_tokens,
    cost)
SELECT gen_random_uuid(), o.org_id, o.agent_id,
    CASE WHEN g %% 4 = 0 THEN o.member_id ELSE o.owner_id END,
    (ARRAY['manual', 'schedule', 'provider_event', 'follow_up'])[1 + g %% 4],
    CASE WHEN g %% 100 = 1 THEN 'failed' WHEN g %% 100 = 2 THEN 'cancelled'
         WHEN g %% 100 = 3 THEN 'interrupted' ELSE 'completed' END,
    '', '', '', '{}', '{"prompt": "!reply bench"}', '{}',
    now() - g * interval '1 second', now() - g * interval '1 second',
    now() - g * interval '1 second' + interval '2 seconds', 'bench@host/pid:1', 1, 0, '', '', 0, 0, 0
FROM generate_series(1, %(n)s) AS g JOIN bench_orgs o ON o.i = g %% %(orgs)s
"""
LOAD_FOLLOW_UPS = """
INSERT INTO agent_run_follow_ups (organization_id, agent_id, run_as_id, context_type, context_key,
    continuation_prompt, stop_conditions, scheduled_for, status, cancel_reason, last_error, created_at)
SELECT o.org_id, o.agent_id, CASE WHEN g %% 4 = 0 THEN o.member_id ELSE o.owner_id END, 'ticket',
    'T-' || (g %% 1000), '!reply later', '[]', now() + g * interval '1 minute',
    CASE WHEN g %% 10 = 0 THEN 'pending' ELSE 'completed' END, '', '', now() - g * interval '1 second'
FROM generate_series(1, %(n)s) AS g JOIN bench_orgs o ON o.i = g %% %(orgs)s
"""


def load() -> list[tuple]:
    orgs = [common.fixture_org(f"read{i}") for i in range(ORGS)]
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE bench_orgs (i int, org_id bigint, agent_id bigint, owner_id int, member_id int)"
        )
        for i, (org, owner, member, agent) in enumerate(orgs):
            cursor.execute(
                "INSERT INTO bench_orgs VALUES (%s, %s, %s, %s, %s)",
                [i, org.pk, agent.pk, owner.pk, member.pk],
            )
        cursor.execute(LOAD_RUNS, {"n": RUNS, "orgs": ORGS})
        cursor.execute(LOAD_FOLLOW_UPS, {"n": FOLLOW_UPS, "orgs": ORGS})
        cursor.execute("DROP TABLE bench_orgs")
        # The visibility map autovacuum keeps after bulk inserts: the summary's counts are index-only.
        cursor.execute("VACUUM ANALYZE agent_runs")
        cursor.execute("VACUUM ANALYZE agent_run_follow_ups")
        # Flush the load's dirty pages now, so no checkpoint of the bulk load lands in the samples.
        cursor.execute("CHECKPOINT")
    return orgs


def _median(client: Client, url: str) -> float:
    for _ in range(2):  # warm caches and the connection
        answer = client.get(url)
        assert answer.status_code == 200, (url, answer.status_code, answer.content[:300])
    return common.median_ms([common.timed(client.get, url)[0] for _ in range(SAMPLES)])


def _summary_median(user, org) -> float:
    """The summary's one statement alone: what of the list's time is counting the scope."""
    from agentpress.orgs.permissions import get_access_or_404
    from automation import selectors

    access = get_access_or_404(user, org.slug)
    selectors.runs_summary(access)
    return common.median_ms([common.timed(selectors.runs_summary, access)[0] for _ in range(SAMPLES)])


def run() -> list[dict]:
    from django.contrib.auth.models import User

    org, owner, member, _ = load()[0]
    root, _ = User.objects.get_or_create(
        username="bench-root", defaults={"is_superuser": True, "is_staff": True}
    )
    as_owner, as_member, as_root = Client(), Client(), Client()
    as_owner.force_login(owner)
    as_member.force_login(member)
    as_root.force_login(root)
    base = f"/api/orgs/{org.slug}"
    admin = _median(as_root, "/admin/automation/agentrun/")
    figures = {
        "API runs list, limit 50 + summary, owner (ms)": (
            _median(as_owner, f"{base}/agent-runs?limit=50"),
            50,
        ),
        "API runs list, limit 50 + summary, member (ms)": (
            _median(as_member, f"{base}/agent-runs?limit=50"),
            50,
        ),
        "API follow-ups list, owner (ms)": (_median(as_owner, f"{base}/agent-run-follow-ups?limit=50"), 50),
        "monitor page, owner (ms)": (
            _median(as_owner, f"/orgs/{org.slug}/agents/monitor/automation-runs/"),
            150,
        ),
    }
    admin_row = {
        "benchmark": "4 read path (1M runs)",
        "figure": "Django admin runs changelist, superuser (ms)",
        "value": admin,
        "baseline": "",
        "baseline_value": None,
        "ratio": None,
        "goal": "< 500 ms",
        "met": admin < 500,
    }
    owner_list = figures["API runs list, limit 50 + summary, owner (ms)"][0]
    summary = _summary_median(owner, org)
    summary_row = {
        "benchmark": "4 read path (1M runs)",
        "figure": "of which the summary statement, owner (ms)",
        "value": summary,
        "baseline": "API runs list, limit 50 + summary, owner (ms)",
        "baseline_value": owner_list,
        "ratio": round(summary / owner_list, 3),
        "goal": "",
        "met": None,
    }
    return [admin_row, summary_row] + [
        {
            "benchmark": "4 read path (1M runs)",
            "figure": figure,
            "value": value,
            "baseline": "Django admin changelist of agent runs, superuser (ms)",
            "baseline_value": admin,
            "ratio": round(value / admin, 3),
            "goal": f"< {goal} ms",
            "met": value < goal,
        }
        for figure, (value, goal) in figures.items()
    ]
