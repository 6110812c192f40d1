from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "agentpress.ops"
    label = "ops"
    verbose_name = "Operations"

    def ready(self):
        # Celery signal receivers: they only fire inside worker processes.
        from agentpress.ops import lifecycle

        lifecycle.connect_worker_signals()
