from types import SimpleNamespace

import pytest

from agentpress.orgs.models import MANAGE_ACTIONS, Role
from tests.factories import AgentFactory, MembershipFactory, OrganizationFactory, UserFactory
from tests.support import services


@pytest.fixture(autouse=True)
def _no_process_heartbeat_inside_a_test_transaction(request, monkeypatch):
    """A run executed in-line by a test that runs inside one transaction (``db``) is invisible
    to the process heartbeat, which beats on a connection of its own: it would find the lease
    "lost" and stop the agent whenever a beat fell inside the run. Such tests run without it;
    tests on committed data (``transactional_db``, real workers) keep the real heartbeat."""
    if "transactional_db" in request.fixturenames or "live_server" in request.fixturenames:
        return
    from automation.worker import heartbeat

    heartbeat.stop()  # one an earlier test on committed data started
    monkeypatch.setattr(heartbeat, "ensure_started", lambda **kwargs: None)


@pytest.fixture
def roster(db):
    """An org with every kind of user, and a second org with its own owner and agent."""
    org = OrganizationFactory(slug="acme", name="Acme", automations_enabled=True)
    other = OrganizationFactory(slug="globex", name="Globex", automations_enabled=True)
    people = {}
    for name, role, perms in [
        ("owner", Role.OWNER, []),
        ("admin", Role.ADMIN, []),
        ("member", Role.MEMBER, [MANAGE_ACTIONS]),
        ("member2", Role.MEMBER, [MANAGE_ACTIONS]),
        ("viewer", Role.MEMBER, []),
    ]:
        people[name] = UserFactory(username=name)
        MembershipFactory(organization=org, user=people[name], role=role, permissions=perms)
    people["other_owner"] = UserFactory(username="globex-owner")
    MembershipFactory(organization=other, user=people["other_owner"], role=Role.OWNER, permissions=[])
    people["outsider"] = UserFactory(username="outsider")
    people["superuser"] = UserFactory(username="root", is_superuser=True, is_staff=True)
    agent = AgentFactory(organization=org, name="Support agent")
    other_agent = AgentFactory(organization=other, name="Globex agent")
    return SimpleNamespace(org=org, other_org=other, agent=agent, other_agent=other_agent, **people)


@pytest.fixture
def worker_pool(transactional_db, tmp_path):
    """Start real ``celery worker`` processes against the test database and Redis."""
    services.require_postgres()
    services.require_redis()
    services.flush_test_broker()
    started: list[services.Process] = []

    def start(name="w1", concurrency=2, pool="threads", **env):
        proc = services.Process(
            name,
            services.celery_worker_argv(concurrency, name, pool=pool),
            services.child_env(**env),
            tmp_path,
        )
        started.append(proc)
        proc.wait_for("ready.", timeout=60)
        return proc

    yield start
    for proc in started:
        proc.stop()
