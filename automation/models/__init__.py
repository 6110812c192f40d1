from .audit import AuditEntry
from .follow_ups import FollowUp
from .provider_events import Action, ProviderEvent
from .runs import AgentRun, RunEvent
from .schedules import Schedule

__all__ = ["Action", "AgentRun", "AuditEntry", "FollowUp", "ProviderEvent", "RunEvent", "Schedule"]
