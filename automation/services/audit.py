"""The audit trail: one ``AuditEntry`` per change a person asked for (DESIGN §8, issue 8)."""

from django.utils import timezone

from automation.models import AuditEntry


def audit_record(*, actor, organization, verb: str, target, **detail) -> AuditEntry:
    """Store who (``actor``; ``None`` for the system) did ``verb`` to ``target`` in ``organization``.

    The entry names the target by model name and primary key, so it stays readable after
    the row is gone; ``detail`` must be JSON-serialisable (ids as strings, not objects).
    An anonymous or missing actor is stored as ``None``.
    """
    return AuditEntry.objects.create(
        organization=organization,
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        verb=verb,
        target_type=target._meta.model_name,
        target_id=str(target.pk),
        detail=detail,
        at=timezone.now(),
    )
