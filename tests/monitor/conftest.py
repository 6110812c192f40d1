import pytest

from tests.factories import AgentRunFactory


@pytest.fixture
def runs_url(roster):
    return f"/orgs/{roster.org.slug}/agents/monitor/automation-runs/"


@pytest.fixture
def make_run(roster):
    def make(status="pending", run_as=None, **fields):
        return AgentRunFactory(
            agent=fields.pop("agent", roster.agent), run_as=run_as or roster.member, status=status, **fields
        )

    return make
