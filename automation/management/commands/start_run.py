from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from agentpress.agents.models import Agent
from agentpress.orgs.permissions import access_for
from automation import scope
from automation.services.runs import ContextBusy, run_create
from automation.states import InvalidTransition, RunSource


class Command(BaseCommand):
    help = "Start a manual run of an agent."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="organization slug")
        parser.add_argument("--agent", required=True, type=int, help="agent id")
        parser.add_argument("--as", dest="username", required=True, help="run as this user")
        parser.add_argument("--prompt", required=True)
        parser.add_argument("--context-type", default="")
        parser.add_argument("--context-key", default="")

    def handle(self, *args, **o):
        agent = (
            Agent.objects.filter(pk=o["agent"], organization__slug=o["org"])
            .select_related("organization")
            .first()
        )
        if agent is None:
            raise CommandError(f"No agent {o['agent']} in organization {o['org']!r}.")
        user = get_user_model().objects.filter(username=o["username"]).first()
        if user is None or not access_for(user, agent.organization).is_member:
            raise CommandError(f"{o['username']!r} is not a member of {o['org']!r}.")
        if refusal := scope.run_as_refusal(organization=agent.organization, user=user):
            raise CommandError(refusal)
        try:
            run = run_create(
                agent=agent,
                run_as=user,
                source=RunSource.MANUAL,
                prompt=o["prompt"],
                context_type=o["context_type"],
                context_key=o["context_key"],
            )
        except (ContextBusy, InvalidTransition) as exc:
            raise CommandError(str(exc)) from exc
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        self.stdout.write(str(run.pk))
