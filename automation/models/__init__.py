from .audit import AuditEntry
from .follow_ups import FollowUp, FollowUpRefusal
from .outlook import OutlookSubscription
from .provider_events import Action, ProviderEvent, RefusedDelivery
from .runs import AgentRun, ModelCall, RunEvent, ToolCall, Worker
from .schedules import Schedule

__all__ = [
    "Action",
    "AgentRun",
    "AuditEntry",
    "FollowUp",
    "FollowUpRefusal",
    "ModelCall",
    "OutlookSubscription",
    "ProviderEvent",
    "RefusedDelivery",
    "RunEvent",
    "Schedule",
    "ToolCall",
    "Worker",
]
