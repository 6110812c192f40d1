"""A demo world: org ``acme`` (owner, admin, member), org ``globex``, agents, threads, runs in every status.

Idempotent: running it again finds what is there and adds nothing twice.
"""

from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from agentpress.agents.models import Agent, Message, Thread
from agentpress.orgs.models import MANAGE_ACTIONS, Membership, Organization, Role
from automation.management.demo.errors import DEMO_TRACEBACK
from automation.models import AgentRun, RunEvent
from automation.states import RunSource, RunStatus


def demo_timestamps(now, fields: dict) -> datetime:
    """Make a demo run's times tell one story: created, then sent to a worker, then started
    (attempt 1), then finished. Returns the ``created_at`` to write (auto_now_add ignores one given)."""
    started = fields.get("started_at")
    if started is not None:
        fields.setdefault("attempt", 1)
        fields.setdefault("dispatched_at", started - timedelta(seconds=1))
    first = started or fields.get("cancelled_at") or now
    return first - timedelta(seconds=3)


class Command(BaseCommand):
    help = "Create (or refresh) the demo organizations, users, agents and runs."

    def add_arguments(self, parser):
        parser.add_argument("--password", default="demo")

    @transaction.atomic
    def handle(self, *args, password, **options):
        acme, _ = Organization.objects.get_or_create(
            slug="acme", defaults={"name": "Acme Support", "automations_enabled": True}
        )
        globex, _ = Organization.objects.get_or_create(
            slug="globex", defaults={"name": "Globex", "automations_enabled": True}
        )
        users = {}
        for username, org, role, perms in [
            ("owner", acme, Role.OWNER, []),
            ("admin", acme, Role.ADMIN, []),
            ("member", acme, Role.MEMBER, [MANAGE_ACTIONS]),
            ("globex-owner", globex, Role.OWNER, []),
        ]:
            user, created = get_user_model().objects.get_or_create(username=username)
            if created or not user.check_password(password):
                user.set_password(password)
                user.save()
            Membership.objects.get_or_create(
                organization=org, user=user, defaults={"role": role, "permissions": perms}
            )
            users[username] = user
        support, _ = Agent.objects.get_or_create(
            organization=acme,
            name="Support agent",
            defaults={
                "instructions": "Answer customer e-mails politely.",
                "scheduled_runs_enabled": True,
                "self_reschedule_enabled": True,
            },
        )
        reports, _ = Agent.objects.get_or_create(
            organization=acme,
            name="Reporting agent",
            defaults={"instructions": "Write the daily summary.", "scheduled_runs_enabled": True},
        )
        Agent.objects.get_or_create(
            organization=globex, name="Globex agent", defaults={"scheduled_runs_enabled": True}
        )
        self.agents = {"support": support, "reports": reports}
        self.users = users
        if not AgentRun.objects.filter(organization=acme).exists():
            self.seed_runs(acme, support, reports, users)
        from automation.management.demo import seed_extensions

        for extend in seed_extensions:
            extend(self, acme=acme, globex=globex, agents=self.agents, users=users)
        self.stdout.write(self.style.SUCCESS("Demo data ready. Sign in at /accounts/login/ with:"))
        for username in users:
            self.stdout.write(f"  {username:<14} password: {password}")

    def seed_runs(self, org, support, reports, users):
        now = timezone.now()
        thread = Thread.objects.create(
            organization=org,
            agent=support,
            title="Refund for order 1042",
            context_type="email_thread",
            context_key="conv-1042",
            run_as=users["owner"],
        )
        Message.objects.create(
            thread=thread, role="event", content="Hi, I would like a refund for order 1042."
        )
        Message.objects.create(
            thread=thread, role="assistant", content="Sorry to hear that. I have started the refund."
        )
        rows = [
            (
                RunStatus.COMPLETED,
                support,
                users["owner"],
                dict(
                    started_at=now - timedelta(hours=2),
                    completed_at=now - timedelta(hours=2) + timedelta(seconds=8),
                ),
            ),
            (
                RunStatus.COMPLETED,
                reports,
                users["member"],
                dict(started_at=now - timedelta(hours=1), completed_at=now - timedelta(minutes=59)),
            ),
            (
                RunStatus.FAILED,
                reports,
                users["member"],
                dict(
                    started_at=now - timedelta(minutes=40),
                    completed_at=now - timedelta(minutes=39),
                    last_error=DEMO_TRACEBACK,
                ),
            ),
            (
                RunStatus.CANCELLED,
                support,
                users["admin"],
                dict(cancelled_at=now - timedelta(minutes=30), completed_at=now - timedelta(minutes=30)),
            ),
            (
                RunStatus.INTERRUPTED,
                support,
                users["owner"],
                dict(
                    started_at=now - timedelta(minutes=20),
                    completed_at=now - timedelta(minutes=18),
                    heartbeat_at=now - timedelta(minutes=19, seconds=30),
                    lease_owner="w1@demo/pid:4242",
                    last_error="Lease expired: worker w1@demo/pid:4242 stopped heartbeating "
                    f"(last heartbeat {(now - timedelta(minutes=19, seconds=30)):%Y-%m-%d %H:%M:%S} UTC).",
                ),
            ),
            (
                RunStatus.RUNNING,
                support,
                users["owner"],
                dict(
                    started_at=now - timedelta(minutes=15),
                    heartbeat_at=now - timedelta(minutes=14),
                    lease_owner="w2@demo/pid:4343",
                    lease_expires_at=now - timedelta(minutes=13),
                ),
            ),
            (RunStatus.PENDING, reports, users["member"], dict(not_before=now + timedelta(days=1))),
        ]
        for status, agent, user, fields in rows:
            created_at = demo_timestamps(now, fields)
            run = AgentRun.objects.create(
                organization=org, agent=agent, run_as=user, source=RunSource.MANUAL, status=status,
                thread=thread if agent == support and user == thread.run_as else None, input_snapshot={"prompt": f"Demo {status} run"}, **fields,
            )  # fmt: skip
            AgentRun.objects.filter(pk=run.pk).update(created_at=created_at)
            RunEvent.objects.create(run=run, kind="created", detail={"source": "manual", "by": "seed_demo"})
