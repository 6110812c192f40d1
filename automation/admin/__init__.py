from . import audit, follow_ups, limits, outlook, provider_events, runs, schedules  # noqa: F401 - registers the ModelAdmins
