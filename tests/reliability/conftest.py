import logging

import pytest
from rest_framework.authtoken.models import Token

from automation.models import Action
from tests.reliability.stack import WEBHOOK_SECRET, Stack
from tests.support import services

logging.getLogger("httpx").setLevel(logging.WARNING)


@pytest.fixture
def stack_factory(transactional_db, tmp_path):
    """Build a ``Stack`` of real processes on the test database; all are stopped afterwards."""
    services.require_postgres()
    services.require_redis()
    services.flush_test_broker()
    built: list[Stack] = []

    def build(**env) -> Stack:
        stack = Stack(tmp_path, **env)
        built.append(stack)
        return stack

    yield build
    for stack in built:
        stack.stop()


@pytest.fixture
def owner_token(roster) -> str:
    return Token.objects.create(user=roster.owner).key


@pytest.fixture
def action(roster) -> Action:
    """A generic signed webhook whose body's ``/ticket/id`` is the context key."""
    return Action.objects.create(
        organization=roster.org,
        agent=roster.agent,
        name="Tickets",
        provider=Action.Provider.WEBHOOK,
        signing_secret=WEBHOOK_SECRET,
        run_as=roster.owner,
        instructions="!reply handled",
        context_type="ticket",
        context_key_pointer="/ticket/id",
    )
