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

``install()`` makes ``redis://`` and ``rediss://`` broker URLs use this transport; kombu's own
handling of both (TLS for ``rediss``) is otherwise unchanged.
"""

import redis
from kombu import transport as kombu_transports
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous=False):
        if self.connection.client is None:
            raise redis.ConnectionError("this channel's broker connection was closed")
        return super()._connparams(asynchronous=asynchronous)


class Transport(kombu_redis.Transport):
    Channel = Channel


def install() -> None:
    for scheme in ("redis", "rediss"):
        kombu_transports.TRANSPORT_ALIASES[scheme] = f"{__name__}:Transport"
        kombu_transports._transport_cache.pop(scheme, None)
