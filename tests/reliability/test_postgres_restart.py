"""Scenario 4: PostgreSQL restarted while workers run.

The scenario has its own PostgreSQL cluster (the shared one serves other tests), so its
data is read here with plain SQL rather than through the test database.

The organization's limit (3) is below the workers' 4 slots and each of its two agents has
a limit of 2: runs wait with their limit named, and no limit is exceeded across the restart.
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.reliability.private_services import PostgresServer
from tests.reliability.stack import Stack, WaitingSampler, api_client, assert_limits_held
from tests.support import services

pytestmark = [pytest.mark.reliability, pytest.mark.celery_worker]

LEASE_TTL = 4
SWEEP = 1
ORG_LIMIT = 3
AGENT_LIMIT = 2
SEED = f"""
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from agentpress.agents.models import Agent
from agentpress.orgs.models import Membership, Organization, Role
org = Organization.objects.create(
    slug="acme", name="Acme", automations_enabled=True, max_concurrent_runs={ORG_LIMIT}
)
owner = User.objects.create(username="owner")
Membership.objects.create(organization=org, user=owner, role=Role.OWNER)
agents = [
    Agent.objects.create(organization=org, name=name, runtime="scripted", max_concurrent_runs={AGENT_LIMIT})
    for name in ("Agent", "Agent 2")
]
print(Token.objects.create(user=owner).key, org.pk, *(agent.pk for agent in agents))
"""


@pytest.fixture
def private_postgres():
    server = PostgresServer()
    yield server
    server.close()


class OverdueSampler(threading.Thread):
    """The worst lateness of a running run past its lease, sampled while the scenario runs."""

    def __init__(self, server: PostgresServer):
        super().__init__(daemon=True)
        self.server = server
        self.stop = threading.Event()
        self.worst = 0.0

    def run(self):
        while not self.stop.wait(0.5):
            try:
                with self.server.connect() as conn:
                    (overdue,) = conn.execute(
                        "SELECT coalesce(max(extract(epoch FROM now() - lease_expires_at)), 0) "
                        "FROM agent_runs WHERE status = 'running'"
                    ).fetchone()
                self.worst = max(self.worst, float(overdue))
            except Exception:  # the server is restarting: nothing to sample
                continue


def test_workers_reconnect_after_a_postgres_restart(tmp_path, private_postgres):
    services.require_redis()
    services.flush_test_broker()
    stack = Stack(
        tmp_path,
        DATABASE_URL=private_postgres.url,
        AUTOMATION_LEASE_TTL_SECONDS=LEASE_TTL,
        AUTOMATION_SWEEP_INTERVAL_SECONDS=SWEEP,
    )
    try:
        stack.manage("migrate", "--noinput")
        token, org_id, *agent_ids = stack.manage("shell", "-c", SEED).split()[-4:]
        api = api_client(stack.web(), token)
        stack.beat()
        stack.worker("w1", concurrency=2)
        stack.worker("w2", concurrency=2)
        sampler = OverdueSampler(private_postgres)
        sampler.start()
        waiting = WaitingSampler(lambda: _pending_reasons(private_postgres))
        waiting.start()

        def start(prompt, n):
            for _ in range(20):  # the web server's connections are being cut too: a client retries
                try:
                    answer = api.post(
                        "/api/orgs/acme/agent-runs",
                        json={"agentId": int(agent_ids[n % 2]), "prompt": prompt},
                    )
                except Exception:
                    answer = None
                if answer is not None and answer.status_code == 201:
                    return answer.json()["id"]
                time.sleep(0.5)
            raise AssertionError(f"could not start a run: {answer and answer.text}")

        before = [start(f"!sleep 2\n!reply before {n}", n) for n in range(12)]
        services.wait_until(
            lambda: _count(private_postgres, "status = 'running'") > 0, message="runs running"
        )
        private_postgres.restart()
        with ThreadPoolExecutor(max_workers=4) as pool:
            after = list(pool.map(start, [f"!reply after {n}" for n in range(20)], range(20)))

        services.wait_until(
            lambda: _count(private_postgres, "status IN ('pending', 'running')") == 0,
            timeout=90,
            interval=0.5,
            message="no run pending or running",
        )
        sampler.stop.set()
        sampler.join()
        waiting_kinds = waiting.stop()
        with private_postgres.connect() as conn:
            intervals = conn.execute(
                """
                SELECT e.at, r.completed_at, r.organization_id, r.agent_id
                FROM agent_runs r JOIN agent_run_events e ON e.run_id = r.id AND e.kind = 'claimed'
                """
            ).fetchall()
            rows = conn.execute(
                """
                SELECT r.id::text, r.status, r.last_error,
                       (SELECT count(*) FROM agent_run_events e WHERE e.run_id = r.id AND e.kind = 'claimed'),
                       (SELECT count(*) FROM agents_message m WHERE m.run_id = r.id AND m.role = 'assistant')
                FROM agent_runs r
                """
            ).fetchall()
    finally:
        stack.stop()

    runs = {row[0]: row[1:] for row in rows}
    assert set(runs) == set(before) | set(after), "a run was lost or one appeared from nowhere"
    for run_id, (status, error, claims, replies) in runs.items():
        assert claims <= 1, f"run {run_id} was claimed {claims} times"
        assert replies <= 1, f"run {run_id} replied {replies} times"
        if status == "completed":
            assert claims == 1 and replies == 1
        else:  # cut off by the restart: recovered by the sweep, never re-executed
            assert status == "interrupted" and "Lease expired" in error, (status, error)
    assert {runs[r][0] for r in after} == {"completed"}, "the workers did not reconnect by themselves"
    assert sampler.worst < SWEEP + 5, f"a run stayed running {sampler.worst:.1f}s past its lease"
    agent_limits = {int(pk): AGENT_LIMIT for pk in agent_ids}
    assert_limits_held(intervals, organizations={int(org_id): ORG_LIMIT}, agents=agent_limits)
    assert "org_limit" in waiting_kinds, waiting.reasons  # the organization's limit bound


def _pending_reasons(server: PostgresServer) -> list[str]:
    with server.connect() as conn:
        return [
            r[0]
            for r in conn.execute("SELECT DISTINCT waiting_reason FROM agent_runs WHERE status = 'pending'")
        ]


def _count(server: PostgresServer, where: str) -> int:
    try:
        with server.connect() as conn:
            return conn.execute(f"SELECT count(*) FROM agent_runs WHERE {where}").fetchone()[0]
    except Exception:
        return -1
