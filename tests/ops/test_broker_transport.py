"""A channel left open on a Redis connection that died mid-BRPOP fails as a lost connection.

Without ``agentpress.broker_transport`` the worker exits ("Unrecoverable error") when the broker
goes away while it holds reserved messages, or when it later acknowledges one of them.
"""

import contextlib
import logging
import socket

import pytest
import redis
from kombu import Connection, Exchange, Queue

from agentpress import broker_transport as transport
from agentpress.celery import app

RESERVED = 3


def reserving_connection(url: str, name: str, transport_cls=None) -> tuple[Connection, list]:
    """A connection in the state a worker's is when Redis dies: messages reserved (delivered,
    not acknowledged), a fanout queue bound (as the remote-control mailbox is), and the channel
    waiting on its BRPOP."""
    connection = Connection(url, transport=transport_cls, transport_options={"socket_timeout": 2})
    channel = connection.default_channel
    work = Queue(name, Exchange(name), name, channel=channel)
    work.declare()
    Queue(
        f"{name}.mailbox", Exchange(f"{name}.mailbox", type="fanout"), auto_delete=True, channel=channel
    ).declare()
    producer = connection.Producer()
    for n in range(RESERVED):
        producer.publish({"n": n}, exchange=name, routing_key=name)
    reserved = []
    channel.basic_qos(0, 10, False)
    connection.Consumer([work], callbacks=[lambda body, message: reserved.append(message)]).consume()
    with contextlib.suppress(socket.timeout):
        while len(reserved) < RESERVED:
            connection.drain_events(timeout=2)
    assert len(channel.qos._delivered) == RESERVED
    channel._brpop_start()
    return connection, reserved


def lose(server, connection):
    """Redis dies; Celery's consumer then collects the broken connection."""
    server.kill()
    connection.collect(socket_timeout=1)


def test_kombus_own_transport_raises_attribute_error_on_the_lost_connection(redis_server):
    """The defect: when kombu fixes it this fails, and ``agentpress.broker_transport`` can go."""
    connection, reserved = reserving_connection(redis_server.url, "plain", "kombu.transport.redis:Transport")
    lose(redis_server, connection)
    with pytest.raises(AttributeError, match="hostname"):
        connection.close()


def test_closing_the_lost_connection_fails_as_a_connection_error_and_is_ignored(redis_server):
    connection, reserved = reserving_connection(redis_server.url, "closing", transport.Transport)
    lose(redis_server, connection)
    channel = connection._default_channel
    connection.close()  # what Celery 5.7's consumer does next: nothing may escape
    assert channel.closed


def test_acknowledging_a_message_of_the_closed_connection_is_a_connection_error(redis_server, caplog):
    """After the reconnect, a reserved message of the old connection runs and is acknowledged."""
    connection, reserved = reserving_connection(redis_server.url, "acking", transport.Transport)
    lose(redis_server, connection)
    connection.close()
    with pytest.raises(redis.ConnectionError, match="was closed"):
        reserved[0].ack()
    # Celery acknowledges through ack_log_error, which logs a connection error and goes on
    reserved[1].ack_log_error(logging.getLogger("celery.worker.request"), connection.connection_errors)
    assert "Couldn't ack" in caplog.text


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://127.0.0.1:6379/0"])
def test_the_apps_redis_connections_use_the_guarded_transport(url):
    with app.connection_for_write(url) as connection:
        assert connection.get_transport_cls() is transport.Transport
    assert app.connection_for_write("filesystem://").get_transport_cls() is not transport.Transport
