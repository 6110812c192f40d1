"""What the broker holds, for the sweeps and the metrics (Redis only; other brokers: unknown)."""

import functools
import logging

from django.conf import settings

logger = logging.getLogger(__name__)


def queue_names() -> list[str]:
    queue = getattr(settings, "CELERY_TASK_DEFAULT_QUEUE", "celery")
    # kombu's Redis transport keeps one list per priority step beside the plain one.
    return [queue, *(f"{queue}\x06\x16{p}" for p in (3, 6, 9))]


@functools.cache
def _client(url: str):
    """One client (and its connection pool) per broker URL and process: a worker asks after
    every run of a chain, and a new client each time was a new TCP connection each time."""
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)


def waiting_messages() -> int | None:
    """Messages waiting in the Celery queue, or ``None`` when that cannot be known."""
    url = settings.CELERY_BROKER_URL
    if not url.startswith(("redis://", "rediss://")):
        return None
    import redis

    try:
        with _client(url).pipeline(transaction=False) as pipe:
            for name in queue_names():
                pipe.llen(name)
            return sum(pipe.execute())
    except redis.RedisError as exc:
        logger.warning("Could not read the Celery queue depth: %s", exc)
        return None
