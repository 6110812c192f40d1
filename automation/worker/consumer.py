"""Celery's consumer with a reconnect backoff that is a setting, not a growing guess.

Celery reconnects a worker that lost its broker with kombu's default backoff: 2 s, then
4, 6, … up to 30 s between attempts. After an outage of a minute the worker may sleep up to
30 s more before it consumes again, however long ago the broker came back. Here every
attempt is ``AUTOMATION_BROKER_RECONNECT_SECONDS`` after the last, so "broker back → worker
consuming" is at most that plus ``CELERY_BROKER_CONNECTION_TIMEOUT``.
"""

from functools import partial

from celery.worker.consumer import Consumer as CeleryConsumer
from django.conf import settings


class Consumer(CeleryConsumer):
    def ensure_connected(self, conn):
        every = settings.AUTOMATION_BROKER_RECONNECT_SECONDS
        conn.ensure_connection = partial(
            type(conn).ensure_connection, conn, interval_start=every, interval_step=0, interval_max=every
        )
        return super().ensure_connected(conn)
