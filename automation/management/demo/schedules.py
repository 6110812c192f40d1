"""Demo schedules for seed_demo: one of each cadence in acme, created through the services."""

from datetime import time, timedelta

from django.utils import timezone

from automation.models import Schedule
from automation.services.schedules import schedule_create


def seed(command, *, acme, globex, agents, users):
    """Idempotent: a schedule whose name acme already has is left as it is."""
    support, reports = agents["support"], agents["reports"]
    demo = [
        dict(
            name="Morning inbox triage", agent=support, run_as=users["owner"], cadence="daily",
            time_of_day=time(8, 30), timezone="Europe/London",
            instructions="Triage the overnight e-mails and answer the simple ones.",
        ),
        dict(
            name="Weekly report", agent=reports, run_as=users["member"], cadence="weekly",
            weekdays=["mon", "thu"], time_of_day=time(9, 0), timezone="America/New_York",
            instructions="Write the weekly support summary.", overlap_policy="buffer_one",
        ),
        dict(
            name="Queue check", agent=support, run_as=users["admin"], cadence="interval",
            interval_minutes=30, timezone="UTC", instructions="!reply Queue checked: nothing stuck.",
        ),
        dict(
            name="Quarter close reminder", agent=reports, run_as=users["owner"], cadence="once",
            run_at=timezone.now() + timedelta(days=3), timezone="Australia/Sydney",
            instructions="Remind the team that the quarter closes on Friday.",
        ),
        dict(
            name="Business-hours follow-up sweep", agent=support, run_as=users["owner"], cadence="cron",
            cron_expression="0 9-17/2 * * 1-5", timezone="Australia/Lord_Howe",
            instructions="Look for conversations waiting on us for more than two hours.",
            overlap_policy="allow",
        ),
        dict(
            name="Old nightly export (disabled)", agent=reports, run_as=users["admin"], cadence="daily",
            time_of_day=time(2, 0), timezone="UTC", enabled=False, instructions="Export yesterday's runs.",
        ),
    ]  # fmt: skip
    existing = set(Schedule.objects.filter(organization=acme).values_list("name", flat=True))
    for fields in demo:
        if fields["name"] not in existing:
            schedule_create(organization=acme, **fields)
