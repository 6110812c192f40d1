"""The per-action delivery rate limit, counted in Redis.

A fixed window: every web process counts a delivery with one pipelined ``INCR`` +
``EXPIRE`` on the key of the action's current window, so the count is shared and no
database row is written or locked per delivery. The Redis is
``AUTOMATION_RATE_LIMIT_REDIS_URL`` (default: the Celery broker when it is Redis). A
deployment without Redis (the embedded default) counts in the process. When Redis cannot
be reached the delivery is let through: refusing authentic deliveries because a counter
is down would lose events, and the broker outage is reported elsewhere.
"""

import logging
import math
import threading
import time
from dataclasses import dataclass

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

_clients: dict[str, redis.Redis] = {}
_local: dict[str, int] = {}
_local_lock = threading.Lock()


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    retry_after_seconds: int = 0


def action_rate_check(*, action_id) -> RateDecision:
    """Count one delivery for the action; refuse it when the window's limit is spent."""
    window = settings.AUTOMATION_WEBHOOK_RATE_WINDOW_SECONDS
    now = time.time()
    started = math.floor(now / window) * window
    key = f"automation:rate:action:{action_id}:{started}"
    count = _count(key, window)
    if count is None or count <= settings.AUTOMATION_WEBHOOK_RATE_LIMIT:
        return RateDecision(allowed=True)
    return RateDecision(allowed=False, retry_after_seconds=max(1, math.ceil(started + window - now)))


def _count(key: str, window: int) -> int | None:
    url = settings.AUTOMATION_RATE_LIMIT_REDIS_URL
    if not url:
        return _count_locally(key)
    client = _clients.get(url)
    if client is None:
        client = _clients[url] = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        count, _ = client.pipeline(transaction=False).incr(key).expire(key, window + 1).execute()
    except redis.RedisError as exc:
        logger.warning("Rate limit not counted, Redis unreachable: %s", exc)
        return None
    return count


def _count_locally(key: str) -> int:
    with _local_lock:
        if key not in _local:
            prefix = key.rpartition(":")[0]
            for stale in [k for k in _local if k.startswith(prefix)]:  # earlier windows of the action
                del _local[stale]
        _local[key] = _local.get(key, 0) + 1
        return _local[key]
