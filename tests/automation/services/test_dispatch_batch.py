"""A batch of runs goes to the broker pipelined: one round trip to Redis, not one per run."""

import redis
from kombu.transport.redis import PublishBatch
from redis.connection import Connection

from automation.models import AgentRun, RunEvent
from automation.services import runs
from automation.states import RunSource
from tests.support import services

BATCH = 50


def _built(roster, n):
    return [
        runs.run_build(agent=roster.agent, run_as=roster.owner, source=RunSource.MANUAL, prompt=f"!reply {i}")
        for i in range(n)
    ]


def test_a_batch_of_runs_is_sent_in_one_round_trip(roster, monkeypatch):
    services.require_redis()
    services.flush_test_broker()
    ids = [run.pk for run in runs.runs_create(_built(roster, BATCH))]
    pushes = []  # the writes to Redis that carry a message (connection set-up aside)
    send = Connection.send_packed_command

    def counted(self, command, *args, **kwargs):
        if b"LPUSH" in b"".join(command if isinstance(command, list | tuple) else [command]):
            pushes.append(1)
        return send(self, command, *args, **kwargs)

    monkeypatch.setattr(Connection, "send_packed_command", counted)

    assert runs.dispatch_runs(ids) == BATCH

    assert len(pushes) == 1, f"{len(pushes)} round trips to Redis for {BATCH} messages"
    assert redis.Redis.from_url(services.TEST_BROKER_URL).llen("celery") == BATCH
    services.flush_test_broker()


def test_a_batch_the_broker_refuses_is_left_whole_for_the_redispatch_sweep(roster, monkeypatch):
    services.require_redis()
    ids = [run.pk for run in runs.runs_create(_built(roster, 3))]

    def refuse(self):
        raise ConnectionError("broker went away")

    monkeypatch.setattr(PublishBatch, "flush", refuse)  # the pipelined write fails

    assert runs.dispatch_runs(ids) == 0

    assert not AgentRun.objects.filter(pk__in=ids, dispatched_at__isnull=False).exists()
    assert RunEvent.objects.filter(run_id__in=ids, kind="dispatch_failed").count() == 3
