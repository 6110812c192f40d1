"""Limits changed in the admin take effect at once, as on the Capabilities page.

The Organization and Agent admins live with their models, below the engine; here they are
registered again with a save that hands changed limits and budgets to
``automation.services.limits.limits_update``: the change is audited, and once it commits
the work a raised limit admits is sent to the workers instead of waiting for the next sweep.
"""

from agentpress.agents.admin import AgentAdmin
from agentpress.agents.models import Agent
from agentpress.orgs.admin import OrganizationAdmin, owner_admin_site
from agentpress.orgs.models import Organization
from automation.services import limits as limit_services


class LimitsTakeEffectMixin:
    limit_fields: tuple[str, ...] = ()

    def save_model(self, request, obj, form, change):
        changed = {name: getattr(obj, name) for name in form.changed_data if name in self.limit_fields}
        stored = type(obj).objects.get(pk=obj.pk) if change and changed else None
        super().save_model(request, obj, form, change)
        if stored is not None:  # the stored row still holds the old values: the audit says from → to
            limit_services.limits_update(owner=stored, actor=request.user, **changed)


class OrganizationLimitsAdmin(LimitsTakeEffectMixin, OrganizationAdmin):
    limit_fields = limit_services.LIMIT_FIELDS


class AgentLimitsAdmin(LimitsTakeEffectMixin, AgentAdmin):
    limit_fields = limit_services.AGENT_LIMIT_FIELDS


for model, model_admin in ((Organization, OrganizationLimitsAdmin), (Agent, AgentLimitsAdmin)):
    owner_admin_site.unregister(model)
    owner_admin_site.register(model, model_admin)
