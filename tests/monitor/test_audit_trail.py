"""The audit trail in the console (owners and admins), and admin edits that leave the same trail."""

import pytest

from automation.models import AgentRun, AuditEntry
from automation.services.settlement import cancel_run
from automation.states import RunStatus
from tests.factories import AgentRunFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def audit_url(runs_url):
    return f"{runs_url}audit/"


def test_owners_see_who_did_what_and_filter_it(client, roster, audit_url):
    run = AgentRunFactory(agent=roster.agent, run_as=roster.member)
    cancel_run(run_id=run.pk, actor=roster.admin, reason="customer asked")
    AgentRunFactory(agent=roster.agent, run_as=roster.member, status=RunStatus.FAILED)
    client.force_login(roster.owner)
    page = client.get(audit_url).content.decode()
    assert "cancelled" in page and "customer asked" in page and "admin" in page and str(run.pk)[:8] in page
    assert client.get(audit_url, {"verb": "retried"}).content.decode().count('class="audit-row"') == 0
    assert client.get(audit_url, {"actor": "admin"}).content.decode().count('class="audit-row"') == 1
    assert (
        client.get(audit_url, {"target_id": str(run.pk)[:8]}).content.decode().count('class="audit-row"') == 1
    )


def test_members_may_not_read_the_trail_and_other_orgs_entries_never_show(client, roster, audit_url):
    run = AgentRunFactory(agent=roster.other_agent, run_as=roster.other_owner)
    cancel_run(run_id=run.pk, actor=roster.other_owner, reason="globex reason")
    client.force_login(roster.member)
    assert client.get(audit_url).status_code == 403
    client.force_login(roster.owner)
    assert "globex reason" not in client.get(audit_url).content.decode()


def test_admin_edits_are_audited_and_finished_runs_are_read_only(client, roster):
    client.force_login(roster.superuser)
    active = AgentRunFactory(agent=roster.agent, run_as=roster.member, context_key="")
    url = f"/admin/automation/agentrun/{active.pk}/change/"
    form = client.get(url).context["adminform"].form
    data = {k: ("" if v is None else v) for k, v in form.initial.items() if k in form.fields}
    data |= {"context_type": "ticket", "context_key": "T-77", "input_snapshot": "{}", "metadata": "{}",
             "provider_context": "{}", "events-TOTAL_FORMS": "0", "events-INITIAL_FORMS": "0"}  # fmt: skip
    response = client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    entry = AuditEntry.objects.get(verb="admin_edited")
    assert entry.actor == roster.superuser and "context_key" in entry.detail["fields"]

    done = AgentRunFactory(agent=roster.agent, run_as=roster.member, status=RunStatus.COMPLETED)
    page = client.get(f"/admin/automation/agentrun/{done.pk}/change/").content.decode()
    assert 'name="_save"' not in page
    assert client.post(f"/admin/automation/agentrun/{done.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AgentRun.objects.filter(pk=done.pk).exists()
