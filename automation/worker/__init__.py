"""The worker side of the engine: the process heartbeat, its Celery signals and consumer."""
