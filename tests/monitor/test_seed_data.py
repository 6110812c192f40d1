"""The demo world `make run` seeds tells a consistent story: no run starts before it was created
or ends before it started, every started run is on an attempt, and errors look like real ones."""

import pytest
from django.core.management import call_command

from automation.models import AgentRun
from automation.states import RunStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def seeded():
    call_command("seed_demo", stdout=open("/dev/null", "w"))  # noqa: SIM115
    runs = list(AgentRun.objects.all())
    assert runs, "seed_demo made no runs"
    return runs


def test_every_seeded_run_has_its_times_in_order(seeded):
    for run in seeded:
        label = f"{run.get_status_display()} run {run.pk} ({run.input_snapshot.get('prompt', '')!r})"
        if run.started_at:
            assert run.started_at >= run.created_at, label
            assert run.attempt >= 1, label
            if run.dispatched_at:
                assert run.created_at <= run.dispatched_at <= run.started_at, label
        if run.completed_at:
            assert run.completed_at >= (run.started_at or run.created_at), label
        if run.heartbeat_at:
            assert run.heartbeat_at >= run.started_at, label
        if run.cancelled_at:
            assert run.cancelled_at >= run.created_at, label


def test_seeded_failures_carry_a_real_traceback(seeded):
    failed = [run for run in seeded if run.status == RunStatus.FAILED]
    assert failed
    for run in failed:
        assert "…" not in run.last_error
        message, _, tail = run.last_error.partition("\n\n")
        assert message and tail.startswith("Traceback (most recent call last):")
        assert 'File "' in tail and tail.rstrip().splitlines()[-1].endswith(message.split(": ", 1)[1])


def test_seeding_twice_changes_nothing(seeded):
    call_command("seed_demo", stdout=open("/dev/null", "w"))  # noqa: SIM115
    assert AgentRun.objects.count() == len(seeded)
