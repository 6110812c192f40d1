"""The worker's channel takes the messages that wait in batches (``agentpress.broker_transport``).

Each test runs a private redis-server, so its command counters count only the test's commands.
"""

import contextlib
import logging
import socket
import time

import redis
from kombu import Connection, Exchange, Queue

from agentpress import broker_transport as transport
from agentpress.celery import app
from tests.reliability.private_services import RedisServer
from tests.support import services

WAITING = 50


def calls(server, command: str) -> int:
    stats = redis.Redis.from_url(server.url).info("commandstats")
    return stats.get(f"cmdstat_{command}", {}).get("calls", 0)


def consuming(
    url: str, name: str, *, fetch_batch: int, prefetch: int = 0, no_ack: bool = False, priority=None
):
    """A connection with ``WAITING`` messages published to queue ``name`` and a consumer on it
    that keeps what it is given (not acknowledged)."""
    connection = Connection(
        url,
        transport=transport.Transport,
        transport_options={"socket_timeout": 2, "fetch_batch": fetch_batch},
    )
    channel = connection.default_channel
    work = Queue(name, Exchange(name), name, channel=channel)
    work.declare()
    producer = connection.Producer()
    for n in range(WAITING):
        producer.publish(
            {"n": n}, exchange=name, routing_key=name, priority=priority(n) if priority else None
        )
    given = []
    channel.basic_qos(0, prefetch, False)
    connection.Consumer(
        [work], callbacks=[lambda body, message: given.append((body["n"], message))], no_ack=no_ack
    ).consume()
    return connection, channel, given


def drain(connection, given, want: int) -> None:
    with contextlib.suppress(socket.timeout):
        while len(given) < want:
            connection.drain_events(timeout=2)


def test_after_one_brpop_the_messages_that_wait_are_delivered_in_order_and_recorded(redis_server):
    connection, channel, given = consuming(redis_server.url, "batched", fetch_batch=64)
    transactions = calls(redis_server, "exec")
    drain(connection, given, WAITING)
    assert [n for n, _ in given] == list(range(WAITING))
    assert calls(redis_server, "brpop") == 1  # kombu's own channel: one BRPOP a message
    client = redis.Redis.from_url(redis_server.url)
    # every delivered message is unacknowledged until acknowledged, as with kombu's own QoS
    assert client.hlen("unacked") == WAITING and client.zcard("unacked_index") == WAITING
    # recorded in two transactions: the BRPOP reply's message (kombu's own), then the batch
    assert calls(redis_server, "hset") == WAITING and calls(redis_server, "exec") - transactions == 2
    for _, message in given:
        message.ack()
    assert client.hlen("unacked") == 0 and client.zcard("unacked_index") == 0
    assert channel._recorded == set()
    connection.close()


def test_a_batch_takes_no_more_than_the_prefetch_limit_leaves_room_for(redis_server):
    connection, channel, given = consuming(redis_server.url, "bounded", fetch_batch=64, prefetch=10)
    drain(connection, given, 10)
    with contextlib.suppress(socket.timeout):
        connection.drain_events(timeout=0.5)  # no room: nothing more may come
    assert len(given) == 10
    assert redis.Redis.from_url(redis_server.url).llen("bounded") == WAITING - 10
    for _, message in given[:4]:
        message.ack()
    drain(connection, given, 14)
    assert [n for n, _ in given] == list(range(14))
    connection.close()


def test_a_batch_is_cut_at_the_configured_size(redis_server):
    connection, channel, given = consuming(redis_server.url, "sized", fetch_batch=7)
    drain(connection, given, WAITING)
    assert [n for n, _ in given] == list(range(WAITING))
    # each BRPOP reply brings 1 + 7 messages: 50 = 6 × 8 + 2
    assert calls(redis_server, "brpop") == 7
    connection.close()


def test_messages_of_a_batch_not_acknowledged_go_back_to_the_queue_when_the_channel_closes(redis_server):
    connection, channel, given = consuming(redis_server.url, "restored", fetch_batch=64)
    drain(connection, given, WAITING)
    for _, message in given[:20]:
        message.ack()
    connection.close()  # a warm shutdown: kombu restores what was delivered and not acknowledged
    client = redis.Redis.from_url(redis_server.url)
    assert client.llen("restored") == WAITING - 20
    assert client.hlen("unacked") == 0


def test_messages_of_a_dead_consumer_are_restored_after_the_visibility_timeout(redis_server):
    connection, channel, given = consuming(redis_server.url, "abandoned", fetch_batch=64)
    drain(connection, given, WAITING)
    # the process dies: no restore at close; the records kombu keeps are what a sweep restores
    channel.qos.restore_visible = lambda *a, **kw: None
    channel.qos._delivered.clear()
    connection.close()
    other = Connection(
        redis_server.url, transport=transport.Transport, transport_options={"visibility_timeout": 0}
    )
    other.default_channel.qos.restore_visible(start=0, num=WAITING)
    assert redis.Redis.from_url(redis_server.url).llen("abandoned") == WAITING
    other.close()


def test_a_consumer_without_acknowledgements_leaves_no_records(redis_server):
    connection, channel, given = consuming(redis_server.url, "noack", fetch_batch=64, no_ack=True)
    drain(connection, given, WAITING)
    assert [n for n, _ in given] == list(range(WAITING))
    client = redis.Redis.from_url(redis_server.url)
    assert client.hlen("unacked") == 0 and channel._recorded == set()
    connection.close()


def test_a_batch_follows_the_priority_order_of_brpop(redis_server):
    connection, channel, given = consuming(
        redis_server.url, "prioritised", fetch_batch=64, priority=lambda n: 0 if n % 2 else 9
    )
    drain(connection, given, WAITING)
    # kombu's priority steps: 0 (the odd ones) before 9 (the even ones), each in publish order
    odd, even = list(range(1, WAITING, 2)), list(range(0, WAITING, 2))
    assert [n for n, _ in given] == odd + even
    connection.close()


def test_fetch_batch_zero_is_kombus_one_message_per_brpop(redis_server):
    connection, channel, given = consuming(redis_server.url, "single", fetch_batch=0)
    drain(connection, given, WAITING)
    assert calls(redis_server, "brpop") == WAITING
    connection.close()


def test_the_worker_takes_its_batch_size_from_the_settings():
    options = app.conf.broker_transport_options
    with app.connection_for_write("redis://127.0.0.1:6379/0") as connection:
        assert connection.default_channel.fetch_batch == options["fetch_batch"] > 0


class RedisWithoutCountedPop(RedisServer):
    """A server that answers ``RPOP key count`` with an error, as Redis before 6.2 does."""

    def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        argv += ["--rename-command", "RPOP", ""]
        self.proc = services.Process(f"redis-old-{time.monotonic_ns()}", argv, {}, self.log_dir)
        self.proc.wait_for("Ready to accept connections", timeout=20)


def test_a_redis_without_counted_pops_gets_one_message_per_brpop_and_a_warning(tmp_path, caplog):
    server = RedisWithoutCountedPop(tmp_path)
    try:
        connection, channel, given = consuming(server.url, "old", fetch_batch=64)
        with caplog.at_level(logging.WARNING, logger="agentpress.broker_transport"):
            drain(connection, given, WAITING)
        assert [n for n, _ in given] == list(range(WAITING))
        assert channel.fetch_batch == 0 and "batches is off" in caplog.text
        assert calls(server, "brpop") == WAITING
        connection.close()
    finally:
        server.close()
