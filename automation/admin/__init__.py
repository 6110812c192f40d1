from . import audit, follow_ups, provider_events, runs, schedules  # noqa: F401 - registers the ModelAdmins
