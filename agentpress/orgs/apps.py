from django.apps import AppConfig


class OrgsConfig(AppConfig):
    name = "agentpress.orgs"
    label = "orgs"
    verbose_name = "Organizations"
