from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agentpress.agents"
    label = "agents"
