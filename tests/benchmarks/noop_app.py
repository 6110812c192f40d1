"""The baseline of benchmark 1: a bare Celery app whose task does nothing, on the same Redis."""

import os

from celery import Celery

# Not the current app: a benchmark that imports this one and then creates runs in the same
# thread would otherwise send their ``execute_run`` through it, to its ``bench_noop`` queue.
app = Celery("bench_noop", broker=os.environ["CELERY_BROKER_URL"], set_as_current=False)
app.conf.update(
    task_ignore_result=True,
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_default_queue="bench_noop",
    worker_hijack_root_logger=False,
)


@app.task(name="bench.noop")
def noop():
    return None


@app.task(name="bench.stamp")
def stamp(due: float):
    """How late this task started after ``due`` (a Unix time), kept in a Redis list."""
    import time

    import redis

    redis.Redis.from_url(os.environ["CELERY_BROKER_URL"]).rpush("bench_stamps", time.time() - due)
