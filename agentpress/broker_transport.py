"""kombu's Redis transport, with a closed channel that fails as a lost connection.

When Redis goes away, Celery's consumer calls ``collect()`` on the broken connection, which
detaches the transport from it (``transport.client = None``). A channel that was waiting on its
``BRPOP`` at that moment is left open: reading the dead socket failed before the channel was
closed. Everything later asks that channel for a new Redis connection pool, and kombu builds
the pool's parameters from ``transport.client``, so each of those calls raises
``AttributeError: 'NoneType' object has no attribute 'hostname'``:

- Celery 5.7 closes the lost connection once more, and the close restores the reserved
  messages: the worker logs "Unrecoverable error" and exits;
- after a reconnect, a reserved message of the old connection that is executed and acknowledged
  kills the worker the same way.

Both handlers already treat a connection error as what it is (``ignore_errors``,
``ack_log_error``). Here the channel raises one: ``redis.ConnectionError``. The worker logs it,
reconnects and goes on. Nothing is lost: a reserved message stays in Redis's unacked set, and
the run behind it stays ``pending`` until the redispatch sweep sends it again (a message that
arrives twice is harmless; a claim wins once).

The channel also takes the messages that wait in batches. kombu's consumer takes one message
per ``BRPOP`` reply and records it as unacknowledged in a round trip of its own. In a worker
process with a thousand runs in flight, each of those round trips gives the GIL away, and the
consumer's thread waits for it to come back after every one: during a burst, that wait
decided how fast runs started (issue 14). After each ``BRPOP`` reply, the channel pops up to
``fetch_batch`` more ready messages (``RPOP key count``, in the queue's priority order, never
more than the prefetch limit leaves room for), records them all as unacknowledged in one
pipeline, then delivers them one by one, as if each had come from its own ``BRPOP``.
Acknowledgement, visibility timeout, restore at shutdown and prefetch are kombu's own and
unchanged. A message popped but not yet recorded is lost if the process dies in between, the
same window that kombu has for one message after its ``BRPOP``; its run stays ``pending``
and the redispatch sweep sends it again. ``fetch_batch`` (a transport option, 0 to turn it
off) is ``AUTOMATION_BROKER_FETCH_BATCH``.

``install()`` makes ``redis://`` and ``rediss://`` broker URLs use this transport; kombu's own
handling of both (TLS for ``rediss``) is otherwise unchanged.
"""

import logging
from time import time

import redis
from kombu import transport as kombu_transports
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads

logger = logging.getLogger(__name__)


class QoS(kombu_redis.QoS):
    def append(self, message, delivery_tag):
        recorded = self.channel._recorded
        if delivery_tag in recorded:  # written with its batch
            recorded.discard(delivery_tag)
            virtual.QoS.append(self, message, delivery_tag)
        else:
            super().append(message, delivery_tag)


class Channel(kombu_redis.Channel):
    QoS = QoS
    from_transport_options = kombu_redis.Channel.from_transport_options + ("fetch_batch",)
    #: ready messages taken after each ``BRPOP`` reply, at most (0: one message per reply)
    fetch_batch = 0

    def __init__(self, *args, **kwargs):
        self._recorded = set()
        self._acks = {}
        super().__init__(*args, **kwargs)

    def _connparams(self, asynchronous=False):
        if self.connection.client is None:
            raise redis.ConnectionError("this channel's broker connection was closed")
        return super()._connparams(asynchronous=asynchronous)

    def basic_consume(self, queue, no_ack, *args, **kwargs):
        self._acks[queue] = not no_ack
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def basic_cancel(self, consumer_tag):
        queue = self._tag_to_queue.get(consumer_tag)
        super().basic_cancel(consumer_tag)
        if queue not in self._active_queues:
            self._acks.pop(queue, None)

    def _brpop_read(self, **options):
        delivered = super()._brpop_read(**options)
        if delivered and self.fetch_batch:
            self._deliver_ready()
        return delivered

    def _room(self) -> int:
        room = self.qos.can_consume_max_estimate()
        return self.fetch_batch if room is None else min(self.fetch_batch, room)

    def _deliver_ready(self) -> None:
        """Pop the messages that wait, up to the batch size and the prefetch room; record
        those of acknowledging consumers as unacknowledged in one pipeline; deliver them."""
        room = self._room()
        taken = []
        with self.conn_or_acquire() as client:
            for queue in list(self.active_queues):
                for priority in self.priority_steps:
                    if room <= 0:
                        break
                    try:
                        items = client.rpop(self._q_for_pri(queue, priority), room) or []
                    except redis.ResponseError as exc:  # before Redis 6.2: no count; one a reply
                        logger.warning("Taking waiting messages in batches is off: %s", exc)
                        self.fetch_batch = 0
                        break
                    taken += [(queue, loads(bytes_to_str(item))) for item in items]
                    room -= len(items)
            if not taken:
                return
            recording = [(queue, payload) for queue, payload in taken if self._acks.get(queue)]
            if recording:
                with client.pipeline() as pipe:
                    for _, payload in recording:
                        properties = payload["properties"]
                        tag, delivery = properties["delivery_tag"], properties["delivery_info"]
                        pipe.zadd(self.unacked_index_key, {tag: time()})
                        pipe.hset(
                            self.unacked_key,
                            tag,
                            dumps([payload, delivery["exchange"], delivery["routing_key"]]),
                        )
                        self._recorded.add(tag)
                    pipe.execute()
        for queue, payload in taken:
            self.connection._deliver(payload, queue)


class Transport(kombu_redis.Transport):
    Channel = Channel


def install() -> None:
    for scheme in ("redis", "rediss"):
        kombu_transports.TRANSPORT_ALIASES[scheme] = f"{__name__}:Transport"
        kombu_transports._transport_cache.pop(scheme, None)
