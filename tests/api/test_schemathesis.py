"""Property-based fuzzing of the live API from its own schema (schemathesis over WSGI).

Every operation gets a bounded, derandomized set of generated requests, sent by the owners
of two organizations with their API tokens: each owner against their own org, and the other
org's owner against the same org (which must be a schema-conformant 404). No answer may be
a 5xx, and every answer must match the schema documented for its status code.
"""

from datetime import timedelta

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.utils import timezone
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from automation.services import runs, schedules, settlement
from automation.states import FollowUpStatus, RunSource, RunStatus
from tests.factories import ActionFactory, AgentRunFactory, FollowUpFactory

schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())
CHECKS = [not_a_server_error, response_schema_conformance]


@pytest.fixture(autouse=True)
def keep_test_connection():
    """The WSGI handler closes the connection after each request, which would end the test's
    transaction; Django's own test client turns this off the same way."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def tokens(roster):
    """Rows of each kind in both orgs, so lists and details answer with real bodies."""
    for org, agent, owner in [
        (roster.org, roster.agent, roster.owner),
        (roster.other_org, roster.other_agent, roster.other_owner),
    ]:
        for status in RunStatus.values:
            AgentRunFactory(agent=agent, run_as=owner, status=status, source=RunSource.MANUAL)
        run = runs.run_create(
            agent=agent, run_as=owner, source=RunSource.MANUAL, prompt="!reply hi", actor=owner
        )
        settlement.cancel_run(run_id=run.pk, actor=owner)
        schedules.schedule_create(
            organization=org,
            agent=agent,
            run_as=owner,
            actor=owner,
            name="Daily digest",
            cadence="daily",
            time_of_day=timezone.now().time().replace(microsecond=0),
            timezone="Europe/Berlin",
            instructions="!reply digest",
        )
        FollowUpFactory(agent=agent, run_as=owner, previous_run=run, status=FollowUpStatus.PENDING)
        FollowUpFactory(
            agent=agent,
            run_as=owner,
            status=FollowUpStatus.COMPLETED,
            scheduled_for=timezone.now() - timedelta(hours=1),
        )
        ActionFactory(agent=agent, run_as=owner)
    return {
        "acme": Token.objects.create(user=roster.owner).key,
        "globex": Token.objects.create(user=roster.other_owner).key,
    }


@schema.parametrize()
@settings(
    max_examples=20,
    derandomize=True,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_api_answers_within_its_schema(case, tokens):
    for caller in ("acme", "globex"):
        if case.path_parameters and "orgSlug" in case.path_parameters:
            case.path_parameters["orgSlug"] = "acme"
        case.call_and_validate(headers={"Authorization": f"Token {tokens[caller]}"}, checks=CHECKS)
