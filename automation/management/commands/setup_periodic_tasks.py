"""Register the beat tasks in django-celery-beat (idempotent; run at every release).

Beat's own table stays a handful of system tasks: user schedules fire from
``agent_run_schedules`` through ``fire_due_schedules``.
"""

from django.conf import settings
from django.core.management.base import BaseCommand
from django_celery_beat.models import IntervalSchedule, PeriodicTask


def periodic_tasks() -> dict[str, tuple[str, float]]:
    tick, sweep = settings.AUTOMATION_TICK_SECONDS, settings.AUTOMATION_SWEEP_INTERVAL_SECONDS
    return {
        "automation: fire due schedules": ("automation.fire_due_schedules", tick),
        "automation: fire due follow-ups": ("automation.fire_due_follow_ups", tick),
        "automation: dispatch pending runs": ("automation.dispatch_pending_runs", tick),
        "automation: recover runs": ("automation.recover_runs", sweep),
        "automation: apply retention": (
            "automation.apply_retention",
            settings.AUTOMATION_RETENTION_INTERVAL_SECONDS,
        ),
        "automation: maintain Outlook subscriptions": (
            "automation.maintain_outlook_subscriptions",
            settings.AUTOMATION_OUTLOOK_RENEW_INTERVAL_SECONDS,
        ),
    }


class Command(BaseCommand):
    help = "Register (or update) the automation engine's periodic tasks in django-celery-beat."

    def handle(self, *args, **options):
        for name, (task, seconds) in periodic_tasks().items():
            every = max(1, round(seconds))
            interval, _ = IntervalSchedule.objects.get_or_create(every=every, period=IntervalSchedule.SECONDS)
            _, created = PeriodicTask.objects.update_or_create(
                name=name, defaults={"task": task, "interval": interval, "enabled": True, "one_off": False}
            )
            self.stdout.write(f"{'created' if created else 'updated'}: {name} every {every}s")
