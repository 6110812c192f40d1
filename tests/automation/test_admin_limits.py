"""A limit raised in the Django admin admits the waiting runs at once, as on Capabilities."""

import pytest
from django.test import RequestFactory

from agentpress.orgs.admin import owner_admin_site
from automation.models import AuditEntry
from automation.services import runs
from tests.factories import AgentRunFactory

pytestmark = pytest.mark.sqlite


@pytest.fixture
def sent(monkeypatch):
    out = []
    monkeypatch.setattr(runs, "dispatch_run", lambda *, run_id, **_: out.append(run_id) or True)
    return out


def change_form(user, obj, **changes) -> dict:
    """The POST of the admin's change form of ``obj`` as it stands, with ``changes``."""
    model_admin = owner_admin_site._registry[type(obj)]
    request = RequestFactory().get("/")
    request.user = user
    data = {}
    form = model_admin.get_form(request, obj)(instance=obj)
    forms = [form]
    for formset, _ in model_admin.get_formsets_with_inlines(request, obj):
        bound = formset(instance=obj)
        forms += [bound.management_form, *bound.forms]
    for each in forms:
        for name in each.fields:
            value = each[name].value()
            if value is None or value is False:
                continue
            data[each.add_prefix(name)] = value if not isinstance(value, bool) else "on"
    data.update({name: "" if value is None else value for name, value in changes.items()})
    return data


def held_behind(owner, agent, limit_field_owner):
    limit_field_owner.max_concurrent_runs = 1
    limit_field_owner.save()
    first, second = (AgentRunFactory(agent=agent, run_as=owner) for _ in range(2))
    assert runs.claim_run(run_id=first.pk, worker="w") is not None
    assert runs.claim_run(run_id=second.pk, worker="w") is None
    return second


@pytest.mark.parametrize("target", ["organization", "agent"])
def test_a_limit_raised_in_the_admin_sends_the_held_runs_at_once(
    client, roster, sent, target, django_capture_on_commit_callbacks
):
    owner_of_limit = roster.org if target == "organization" else roster.agent
    held = held_behind(roster.owner, roster.agent, owner_of_limit)
    assert held.pk not in sent
    url = f"/admin/{owner_of_limit._meta.app_label}/{owner_of_limit._meta.model_name}/{owner_of_limit.pk}/change/"
    client.force_login(roster.owner)
    data = change_form(roster.owner, owner_of_limit, max_concurrent_runs=3)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, data)
    assert response.status_code == 302, response.content.decode()[-2000:]
    owner_of_limit.refresh_from_db()
    assert owner_of_limit.max_concurrent_runs == 3
    assert sent == [held.pk]
    entry = AuditEntry.objects.get(verb="limits_changed")
    assert entry.detail["max_concurrent_runs"] == {"from": 1, "to": 3}


def test_an_admin_save_that_leaves_the_limits_alone_sends_nothing(
    client, roster, sent, django_capture_on_commit_callbacks
):
    held_behind(roster.owner, roster.agent, roster.agent)
    client.force_login(roster.owner)
    data = change_form(roster.owner, roster.agent, name="Renamed agent")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/admin/agents/agent/{roster.agent.pk}/change/", data)
    assert response.status_code == 302
    assert sent == [] and not AuditEntry.objects.filter(verb="limits_changed").exists()
