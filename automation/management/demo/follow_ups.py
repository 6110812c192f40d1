"""Demo follow-ups for seed_demo: one in every status, with the runs they came from and became."""

from datetime import timedelta

from django.utils import timezone

from agentpress.agents.models import Message, Thread
from automation import stop_conditions
from automation.management.demo.errors import DEMO_TRACEBACK
from automation.models import AgentRun, FollowUp, RunEvent
from automation.states import FollowUpStatus, RunSource, RunStatus


def _condition(kind: str, **extra) -> dict:
    return {"type": kind, "description": stop_conditions.DEFAULT_DESCRIPTIONS[kind], **extra}


def seed(command, *, acme, globex, agents, users):
    """Idempotent: does nothing once acme has follow-ups."""
    if FollowUp.objects.filter(organization=acme).exists():
        return
    now = timezone.now()
    agent = agents["support"]

    def thread(title, key, user):
        return Thread.objects.create(
            organization=acme, agent=agent, title=title, context_type="email_thread", context_key=key,
            run_as=user,
        )  # fmt: skip

    def run(status, user, on, prompt, *, source=RunSource.MANUAL, ago, **fields):
        if fields.get("started_at") is not None:
            # created `ago`, started a few seconds later on its first attempt, then finished
            fields["started_at"] = now - ago + timedelta(seconds=2)
            fields.setdefault("dispatched_at", now - ago + timedelta(seconds=1))
            fields.setdefault("attempt", 1)
            if fields.get("completed_at") is not None:
                fields["completed_at"] = fields["started_at"] + timedelta(seconds=9)
        row = AgentRun.objects.create(
            organization=acme, agent=agent, run_as=user, source=source, status=status, thread=on,
            context_type=on.context_type, context_key=on.context_key, input_snapshot={"prompt": prompt}, **fields,
        )  # fmt: skip
        AgentRun.objects.filter(pk=row.pk).update(created_at=now - ago)  # auto_now_add ignores a given value
        RunEvent.objects.create(run=row, kind="created", detail={"source": source, "by": "seed_demo"})
        return row

    def finished(user, on, prompt, ago):
        return run(
            RunStatus.COMPLETED, user, on, prompt, ago=ago, started_at=now - ago, completed_at=now - ago
        )

    def follow_up(status, user, on, previous, prompt, scheduled_for, conditions, **fields):
        return FollowUp.objects.create(
            organization=acme, agent=agent, run_as=user, previous_run=previous, thread=on,
            context_type=on.context_type, context_key=on.context_key, continuation_prompt=prompt,
            stop_conditions=conditions, scheduled_for=scheduled_for, status=status, **fields,
        )  # fmt: skip

    owner, member = users["owner"], users["member"]
    delivery = thread("Delivery of order 2077", "conv-2077", owner)
    first = finished(
        owner, delivery, "!reply I asked the carrier.\n!follow_up 172800 Check the parcel", timedelta(days=3)
    )
    done = follow_up(
        FollowUpStatus.COMPLETED, owner, delivery, first, "Check whether the parcel arrived.",
        now - timedelta(days=1), [_condition("reply_received")],
        claimed_at=now - timedelta(days=1), completed_at=now - timedelta(days=1) + timedelta(seconds=9),
    )  # fmt: skip
    fulfilled = finished(owner, delivery, "Check whether the parcel arrived.", timedelta(days=1))
    AgentRun.objects.filter(pk=fulfilled.pk).update(
        source=RunSource.FOLLOW_UP, follow_up=done, previous_run=first
    )
    FollowUp.objects.filter(pk=done.pk).update(run=fulfilled)

    failed = follow_up(
        FollowUpStatus.FAILED, owner, delivery, fulfilled, "Ask the carrier for a refund.",
        now - timedelta(hours=6), [], claimed_at=now - timedelta(hours=6), completed_at=now - timedelta(hours=6),
        last_error=DEMO_TRACEBACK,
    )  # fmt: skip
    run(
        RunStatus.FAILED, owner, delivery, "Ask the carrier for a refund.", source=RunSource.FOLLOW_UP,
        ago=timedelta(hours=6), follow_up=failed, previous_run=fulfilled, started_at=now - timedelta(hours=6),
        completed_at=now - timedelta(hours=6), last_error=failed.last_error,
    )  # fmt: skip
    FollowUp.objects.filter(pk=failed.pk).update(run=AgentRun.objects.get(follow_up=failed))

    reply = Message.objects.create(thread=delivery, role="event", content="The parcel arrived, thank you!")
    Message.objects.filter(pk=reply.pk).update(created_at=now - timedelta(hours=3))
    follow_up(
        FollowUpStatus.CANCELLED, owner, delivery, fulfilled, "Remind the customer about the survey.",
        now - timedelta(hours=2), [_condition("reply_received")],
        cancelled_at=now - timedelta(hours=2), completed_at=now - timedelta(hours=2),
        cancel_reason=f"Stop condition reply_received met: event message {reply.pk} arrived on thread {delivery.pk}",
    )  # fmt: skip
    follow_up(
        FollowUpStatus.PENDING, owner, delivery, fulfilled, "Confirm the case can be closed.",
        now + timedelta(days=2),
        [_condition("reply_received"), _condition("deadline", at=(now + timedelta(days=5)).isoformat())],
    )  # fmt: skip

    invoice = thread("Invoice question", "conv-3101", member)
    asked = finished(member, invoice, "!follow_up 3600 Send the corrected invoice", timedelta(hours=2))
    running = follow_up(
        FollowUpStatus.RUNNING, member, invoice, asked, "Send the corrected invoice.",
        now - timedelta(minutes=1), [_condition("context_active")], claimed_at=now - timedelta(minutes=1),
    )  # fmt: skip
    # its run waits for a worker: with workers up it completes and the follow-up with it
    became = run(
        RunStatus.PENDING, member, invoice, "!reply Here is the corrected invoice.", source=RunSource.FOLLOW_UP,
        ago=timedelta(minutes=1), follow_up=running, previous_run=asked,
    )  # fmt: skip
    FollowUp.objects.filter(pk=running.pk).update(run=became)
    follow_up(
        FollowUpStatus.PENDING, member, invoice, asked, "Check that the invoice was paid.",
        now + timedelta(days=7), [_condition("reply_received")],
    )  # fmt: skip
