"""``/metrics`` exports in flight, limit and waiting counts per organization, bounded."""

import pytest

from tests.factories import AgentFactory, AgentRunFactory, OrganizationFactory
from tests.ops.test_metrics import scrape, value


@pytest.mark.sqlite
def test_capacity_gauges_per_org_match_the_database(client, roster):
    roster.org.max_concurrent_runs = 4
    roster.org.save()
    AgentRunFactory.create_batch(2, agent=roster.agent, status="running")
    AgentRunFactory(agent=roster.agent, waiting_reason="organization at its limit (4 / 4)")
    AgentRunFactory(agent=roster.agent, waiting_reason="daily budget reached (…), resumes at …")
    AgentRunFactory(agent=roster.other_agent)
    samples = scrape(client, REMOTE_ADDR="127.0.0.1")
    assert value(samples, "automation_org_runs_in_flight", org="acme") == 2
    assert value(samples, "automation_org_run_limit", org="acme") == 4
    assert value(samples, "automation_org_run_limit", org="globex") == 0
    assert value(samples, "automation_org_runs_waiting", org="acme", reason="org_limit") == 1
    assert value(samples, "automation_org_runs_waiting", org="acme", reason="budget") == 1
    assert value(samples, "automation_org_runs_waiting", org="globex", reason="none") == 1


@pytest.mark.sqlite
def test_beyond_the_bound_organizations_are_summed_as_other(client, roster, settings):
    settings.AUTOMATION_METRICS_MAX_ORGS = 2
    for n in range(4):
        agent = AgentFactory(organization=OrganizationFactory(slug=f"small-{n}"))
        AgentRunFactory(agent=agent, status="running")
    AgentRunFactory.create_batch(3, agent=roster.agent, status="running")
    AgentRunFactory.create_batch(2, agent=roster.other_agent, status="running")
    samples = scrape(client, REMOTE_ADDR="127.0.0.1")
    orgs = {dict(labels)["org"] for name, labels in samples if name == "automation_org_runs_in_flight"}
    assert orgs == {"acme", "globex", "_other"}
    assert value(samples, "automation_org_runs_in_flight", org="_other") == 4
