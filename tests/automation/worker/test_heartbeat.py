"""The process heartbeat: one statement renews every lease the process holds."""

import time
import uuid
from functools import partial

import pytest
from django.test.utils import CaptureQueriesContext

from agentpress.agents.runtime import CancelSignal
from agentpress.ops import lifecycle
from automation.models import AgentRun, Worker
from automation.services import runs, settlement
from automation.states import RunStatus
from automation.worker import heartbeat
from tests.factories import AgentRunFactory
from tests.support.services import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


class Claimed:
    """Runs claimed by this process and registered in flight, as the executor does."""

    def __init__(self, roster, count):
        self.leases = [
            runs.claim_run(run_id=AgentRunFactory(agent=roster.agent, run_as=roster.owner).pk, worker="w1")
            for _ in range(count)
        ]
        self.cancel = {lease.run.pk: CancelSignal() for lease in self.leases}
        self.guards = [
            lifecycle.guard_run(
                run_id=lease.run.pk,
                lease_token=lease.token,
                cancel=self.cancel[lease.run.pk],
                worker="w1",
                interrupt=partial(settlement.interrupt_run, run_id=lease.run.pk, lease_token=lease.token),
            )
            for lease in self.leases
        ]

    def __enter__(self):
        for guard in self.guards:
            guard.__enter__()
        return self

    def __exit__(self, *exc):
        for guard in self.guards:
            guard.__exit__(*exc)


def expiry(run_id):
    return AgentRun.objects.values_list("lease_expires_at", flat=True).get(pk=run_id)


def test_one_beat_renews_every_lease_and_stops_exactly_the_runs_no_longer_held(roster, settings):
    beat = heartbeat.ProcessHeartbeat(worker="w1", concurrency=8)
    with Claimed(roster, 5) as claimed:
        kept, cancelled, recovered = claimed.leases[:3], claimed.leases[3], claimed.leases[4]
        before = {lease.run.pk: expiry(lease.run.pk) for lease in kept}
        settlement.cancel_run(run_id=cancelled.run.pk, reason="operator")
        settlement.interrupt_run(run_id=recovered.run.pk, error="lease expired", lease_token=recovered.token)
        time.sleep(0.05)
        lost = beat.beat()

    assert lost == {str(cancelled.run.pk), str(recovered.run.pk)}
    assert claimed.cancel[cancelled.run.pk].is_set() and claimed.cancel[recovered.run.pk].is_set()
    assert not any(claimed.cancel[lease.run.pk].is_set() for lease in kept)
    assert all(expiry(lease.run.pk) > before[lease.run.pk] for lease in kept)
    assert AgentRun.objects.get(pk=cancelled.run.pk).status == RunStatus.CANCELLED
    row = Worker.objects.get(name="w1")
    assert (row.in_flight, row.concurrency, row.stopped_at) == (3, 8, None) and row.last_beat_at


def test_a_lease_whose_token_changed_is_not_renewed(roster):
    with Claimed(roster, 1) as claimed:
        lease = claimed.leases[0]
        AgentRun.objects.filter(pk=lease.run.pk).update(lease_token=uuid.uuid4())  # another worker's lease
        before = expiry(lease.run.pk)
        assert heartbeat.ProcessHeartbeat(worker="w1", concurrency=1).beat() == {str(lease.run.pk)}
    assert expiry(lease.run.pk) == before and claimed.cancel[lease.run.pk].is_set()


def test_every_lease_is_renewed_by_one_statement(roster):
    with Claimed(roster, 40) as claimed:
        beat = heartbeat.ProcessHeartbeat(worker="w1", concurrency=40)
        captured = []
        real = heartbeat.renew_leases

        def spy(conn, entries, now):
            with CaptureQueriesContext(conn) as queries:
                renewed = real(conn, entries, now)
            captured.extend(queries.captured_queries)
            return renewed

        heartbeat.renew_leases = spy
        try:
            assert beat.beat() == set()
        finally:
            heartbeat.renew_leases = real
    assert len(captured) == 1 and captured[0]["sql"].lstrip().startswith("UPDATE")
    assert not any(event.is_set() for event in claimed.cancel.values())


def test_a_late_beat_is_recorded_as_a_heartbeat_gap_on_each_run(roster):
    beat = heartbeat.ProcessHeartbeat(worker="w1", concurrency=2, interval=0.1)
    with Claimed(roster, 2) as claimed:
        beat.beat()
        beat.beat()  # on time: no gap
        time.sleep(0.5)  # the worker stalled for a moment
        beat.beat()
    for lease in claimed.leases:
        gaps = list(lease.run.events.filter(kind="heartbeat_gap").values_list("detail", flat=True))
        assert len(gaps) == 1 and gaps[0]["seconds"] >= 0.5 and gaps[0]["expected"] == 0.1


def test_an_idle_worker_keeps_beating_and_a_clean_stop_is_recorded(roster):
    beat = heartbeat.ProcessHeartbeat(worker="w1", concurrency=4, interval=0.1)
    beat.start()
    wait_until(lambda: Worker.objects.filter(name="w1", last_beat_at__isnull=False).exists(), timeout=10)
    beat.stop()
    row = Worker.objects.get(name="w1")
    assert row.stopped_at is not None and row.in_flight == 0 and not beat.is_alive()
