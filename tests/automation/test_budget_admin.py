"""Daily budgets and the per-run token ceiling are edited in the admin (issue 17 item 2) by the
organization's owner, and a budget set there holds work like one set on Capabilities."""

import pytest

from agentpress.orgs.models import Organization
from automation.services import runs
from tests.factories import AgentRunFactory

pytestmark = pytest.mark.sqlite

BUDGET_FIELDS = ["daily_run_limit", "daily_token_limit", "daily_cost_limit"]


def form_data(response) -> dict:
    """What the change form would post back unchanged (inline management forms included)."""
    data = {}
    form = response.context["adminform"].form
    for name, field in form.fields.items():
        value = form[name].value()
        if value is None or value is False:
            continue
        if value is True:
            data[name] = "on"
        elif isinstance(value, str | int):
            data[name] = value
        else:
            data[name] = field.widget.format_value(value)
    for formset in response.context.get("inline_admin_formsets", []):
        management = formset.formset.management_form
        for name in management.fields:
            data[f"{management.prefix}-{name}"] = management[name].value()
        for index, inline_form in enumerate(formset.formset.forms):
            for name in inline_form.fields:
                value = inline_form[name].value()
                if value not in (None, False):
                    data[f"{formset.formset.prefix}-{index}-{name}"] = "on" if value is True else value
    return data


def test_an_owner_sets_the_organizations_budget_in_the_admin_and_it_holds_work(client, roster, monkeypatch):
    monkeypatch.setattr(runs, "dispatch_run", lambda *, run_id, **_: True)
    client.force_login(roster.owner)
    url = f"/admin/orgs/organization/{roster.org.pk}/change/"
    page = client.get(url)
    assert all(f'name="{name}"' in page.content.decode() for name in BUDGET_FIELDS)
    data = form_data(page) | {"daily_run_limit": "1", "timezone": "Europe/Paris"}
    saved = client.post(url, data)
    assert saved.status_code == 302, saved.context["adminform"].form.errors if saved.context else saved
    org = Organization.objects.get(pk=roster.org.pk)
    assert (org.daily_run_limit, org.timezone) == (1, "Europe/Paris")

    first, second = (AgentRunFactory(agent=roster.agent, run_as=roster.owner) for _ in range(2))
    assert runs.claim_run(run_id=first.pk, worker="w").run.pk == first.pk
    assert runs.claim_run(run_id=second.pk, worker="w") is None
    second.refresh_from_db()
    assert second.waiting_reason.startswith("daily budget reached (organization acme: 1 / 1 runs today)")


def test_an_owner_sets_an_agents_budget_and_token_ceiling_in_the_admin(client, roster):
    client.force_login(roster.owner)
    url = f"/admin/agents/agent/{roster.agent.pk}/change/"
    page = client.get(url)
    assert all(f'name="{name}"' in page.content.decode() for name in [*BUDGET_FIELDS, "max_tokens_per_run"])
    data = form_data(page) | {
        "daily_token_limit": "20000",
        "daily_cost_limit": "1.50",
        "max_tokens_per_run": "4000",
    }
    saved = client.post(url, data)
    assert saved.status_code == 302, saved.context["adminform"].form.errors if saved.context else saved
    roster.agent.refresh_from_db()
    assert (
        roster.agent.daily_token_limit,
        str(roster.agent.daily_cost_limit),
        roster.agent.max_tokens_per_run,
    ) == (
        20000,
        "1.5000",
        4000,
    )
