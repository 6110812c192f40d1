import factory
from django.contrib.auth.models import User

from agentpress.agents.models import Agent, Message, Thread
from agentpress.orgs.models import MANAGE_ACTIONS, Membership, Organization, Role
from automation.models import Action, AgentRun, FollowUp, Schedule
from automation.states import RunSource, RunStatus


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("pw")


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"org{n}")
    name = factory.LazyAttribute(lambda o: o.slug.title())
    automations_enabled = True


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    organization = factory.SubFactory(OrganizationFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.MEMBER
    permissions = factory.LazyFunction(lambda: [MANAGE_ACTIONS])


class AgentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Agent

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Agent {n}")
    runtime = "scripted"
    scheduled_runs_enabled = True
    self_reschedule_enabled = True


class ThreadFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Thread

    agent = factory.SubFactory(AgentFactory)
    organization = factory.SelfAttribute("agent.organization")
    title = factory.Sequence(lambda n: f"Thread {n}")
    run_as = factory.SubFactory("tests.factories.UserFactory")


class MessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Message

    thread = factory.SubFactory(ThreadFactory)
    role = "user"
    content = "Hello"


class AgentRunFactory(factory.django.DjangoModelFactory):
    """A row in a given state, written directly (seeding tests, not a transition)."""

    class Meta:
        model = AgentRun

    agent = factory.SubFactory(AgentFactory)
    organization = factory.SelfAttribute("agent.organization")
    run_as = factory.SubFactory(UserFactory)
    source = RunSource.MANUAL
    status = RunStatus.PENDING
    thread = factory.SubFactory(
        ThreadFactory, agent=factory.SelfAttribute("..agent"), run_as=factory.SelfAttribute("..run_as")
    )
    input_snapshot = factory.LazyFunction(lambda: {"prompt": "!reply hi"})


class ScheduleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Schedule

    agent = factory.SubFactory(AgentFactory)
    organization = factory.SelfAttribute("agent.organization")
    name = factory.Sequence(lambda n: f"Schedule {n}")
    cadence = "interval"
    interval_minutes = 60
    timezone = "UTC"
    instructions = "!reply scheduled"
    run_as = factory.SubFactory(UserFactory)


class FollowUpFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = FollowUp

    agent = factory.SubFactory(AgentFactory)
    organization = factory.SelfAttribute("agent.organization")
    run_as = factory.SubFactory(UserFactory)
    continuation_prompt = "!reply following up"
    scheduled_for = factory.Faker("future_datetime", tzinfo=__import__("datetime").timezone.utc)


class ActionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Action

    agent = factory.SubFactory(AgentFactory)
    organization = factory.SelfAttribute("agent.organization")
    name = factory.Sequence(lambda n: f"Hook {n}")
    run_as = factory.SubFactory(UserFactory)
    signing_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    context_type = "ticket"
    context_key_pointer = "/ticket/id"
