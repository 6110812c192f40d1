from django.apps import AppConfig


class AutomationConfig(AppConfig):
    name = "automation"
    verbose_name = "Automation runs"

    def ready(self):
        # Celery signal receivers of the worker: they only fire inside worker processes.
        from automation.worker import signals

        signals.connect_worker_signals()
