"""The redispatch sweep re-sends only what is really lost (issue 13, defect 16)."""

from datetime import timedelta

import pytest
import redis
import time_machine
from django.conf import settings
from django.utils import timezone

from automation import broker
from automation.models import AgentRun
from automation.services import recovery, runs
from automation.states import RunSource
from tests.support import services

pytestmark = pytest.mark.django_db(transaction=True)

AFTER = timedelta(seconds=settings.AUTOMATION_REDISPATCH_AFTER_SECONDS)


@pytest.fixture
def broker_queue():
    services.require_redis()
    services.flush_test_broker()
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    yield lambda: sum(client.llen(name) for name in broker.queue_names())
    services.flush_test_broker()


def create(roster, n):
    return [
        runs.run_create(
            agent=roster.agent, run_as=roster.owner, source=RunSource.MANUAL, prompt=f"!reply {i}"
        )
        for i in range(n)
    ]


def resends(run):
    return list(run.events.filter(kind="redispatched").values_list("detail__resend", flat=True))


def test_a_sustained_backlog_grows_no_duplicate_messages(roster, broker_queue):
    """No worker consumes: every sweep finds the runs' messages still waiting and sends no copy."""
    pending = create(roster, 30)
    assert broker_queue() == 30
    start = timezone.now()
    for minute in range(1, 11):  # ten minutes of sweeps, every run long past the redispatch delay
        with time_machine.travel(start + timedelta(minutes=minute), tick=False):
            assert recovery.redispatch_pending_runs() == 0
    assert broker_queue() == 30
    assert all(resends(run) == [] for run in pending)


def test_a_run_never_sent_is_sent_even_behind_a_backlog(roster, broker_queue):
    create(roster, 3)
    unsent = create(roster, 1)[0]
    AgentRun.objects.filter(pk=unsent.pk).update(dispatched_at=None)  # the broker was down at commit
    assert recovery.redispatch_pending_runs() == 1
    assert broker_queue() == 5 and AgentRun.objects.get(pk=unsent.pk).dispatched_at is not None
    assert resends(unsent) == []


def test_a_lost_message_is_resent_with_backoff_and_each_resend_is_on_the_timeline(roster, broker_queue):
    run = create(roster, 1)[0]
    services.flush_test_broker()  # the broker restarted empty: the message is lost
    sent_at = AgentRun.objects.get(pk=run.pk).dispatched_at
    with time_machine.travel(sent_at + AFTER / 2, tick=False):
        assert recovery.redispatch_pending_runs() == 0  # not late yet
    with time_machine.travel(sent_at + AFTER * 1.1, tick=False):
        assert recovery.redispatch_pending_runs() == 1
    assert resends(run) == [1] and broker_queue() == 1
    services.flush_test_broker()  # lost again (a worker consumed it and could not claim the run)
    second = AgentRun.objects.get(pk=run.pk).dispatched_at
    with time_machine.travel(second + AFTER * 1.5, tick=False):
        assert recovery.redispatch_pending_runs() == 0  # the second copy waits twice as long
    with time_machine.travel(second + AFTER * 2.1, tick=False):
        assert recovery.redispatch_pending_runs() == 1
    run.refresh_from_db()
    assert resends(run) == [1, 2] and run.redispatch_count == 2


def test_sweeps_running_at_once_send_each_lost_run_once(roster, broker_queue):
    import threading

    from django.db import connection

    services.require_postgres()
    pending = create(roster, 60)
    AgentRun.objects.filter(pk__in=[r.pk for r in pending]).update(dispatched_at=None)  # all lost
    services.flush_test_broker()
    barrier = threading.Barrier(4)

    def sweep():
        try:
            barrier.wait()
            recovery.redispatch_pending_runs()
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert broker_queue() == 60
    assert not AgentRun.objects.filter(dispatched_at__isnull=True).exists()


def test_reading_the_queue_depth_reuses_one_broker_connection(broker_queue):
    """A worker reads the depth after every run of a chain: that must not open a connection each time."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.waiting_messages()
    received = client.info("stats")["total_connections_received"]
    for _ in range(20):
        assert broker.waiting_messages() == 0
    assert client.info("stats")["total_connections_received"] == received
