import pytest
from django.utils import timezone

from tests.factories import AgentRunFactory

pytestmark = pytest.mark.sqlite


def test_owner_sees_only_their_orgs_agents(client, roster):
    client.force_login(roster.owner)
    page = client.get("/admin/agents/agent/")
    assert page.status_code == 200
    assert roster.agent.name in page.content.decode()
    assert roster.other_agent.name not in page.content.decode()
    assert client.get(f"/admin/agents/agent/{roster.other_agent.pk}/change/").status_code in (302, 404)
    assert client.get(f"/admin/agents/agent/{roster.agent.pk}/change/").status_code == 200


def test_owner_sees_only_their_orgs_runs(client, roster):
    mine = AgentRunFactory(agent=roster.agent, run_as=roster.owner)
    theirs = AgentRunFactory(agent=roster.other_agent, run_as=roster.other_owner)
    client.force_login(roster.owner)
    body = client.get("/admin/automation/agentrun/").content.decode()
    assert str(mine.pk) in body and str(theirs.pk) not in body
    assert client.get(f"/admin/automation/agentrun/{theirs.pk}/change/").status_code in (302, 404)


@pytest.mark.parametrize("who", ["admin", "member", "viewer", "outsider"])
def test_non_owners_get_no_admin(client, roster, who):
    client.force_login(getattr(roster, who))
    response = client.get("/admin/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_superuser_sees_everything(client, roster):
    client.force_login(roster.superuser)
    body = client.get("/admin/agents/agent/").content.decode()
    assert roster.agent.name in body and roster.other_agent.name in body


def test_owner_can_sign_in_to_the_admin_with_a_password(client, roster):
    response = client.post("/admin/login/?next=/admin/", {"username": "owner", "password": "pw"})
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200
    client.logout()
    response = client.post("/admin/login/?next=/admin/", {"username": "admin", "password": "pw"})
    assert response.status_code == 200 and "only organization owners" in response.content.decode()


def test_admin_cancel_action_calls_the_service(client, roster):
    run = AgentRunFactory(agent=roster.agent, run_as=roster.owner)
    client.force_login(roster.owner)
    client.post("/admin/automation/agentrun/", {"action": "cancel_runs", "_selected_action": [str(run.pk)]})
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert run.events.filter(kind="cancelled", detail__by="owner").exists()


def test_admin_schedule_actions_call_the_services_and_report_refusals(client, roster):
    from tests.factories import ScheduleFactory

    schedule = ScheduleFactory(agent=roster.agent, run_as=roster.owner, run_at=timezone.now())
    client.force_login(roster.owner)
    url = "/admin/automation/schedule/"
    response = client.post(
        url, {"action": "disable_schedules", "_selected_action": [schedule.pk]}, follow=True
    )
    schedule.refresh_from_db()
    assert not schedule.enabled and "1 schedule(s) disabled." in response.content.decode()
    response = client.post(
        url, {"action": "run_schedules_now", "_selected_action": [schedule.pk]}, follow=True
    )
    body = response.content.decode()
    assert "0 schedule(s) started" in body and f"Not changed: {schedule.name}:" in body
    client.post(url, {"action": "enable_schedules", "_selected_action": [schedule.pk]})
    schedule.refresh_from_db()
    assert schedule.enabled and schedule.next_run_at is not None


def test_admin_follow_up_cancel_action(client, roster):
    from tests.factories import FollowUpFactory

    pending = FollowUpFactory(agent=roster.agent, run_as=roster.owner)
    done = FollowUpFactory(agent=roster.agent, run_as=roster.owner, status="completed")
    client.force_login(roster.owner)
    response = client.post(
        "/admin/automation/followup/",
        {"action": "cancel_follow_ups", "_selected_action": [pending.pk, done.pk]},
        follow=True,
    )
    body = response.content.decode()
    pending.refresh_from_db()
    assert pending.status == "cancelled" and "owner" in pending.cancel_reason
    assert "1 follow-up(s) cancelled." in body and f"Not changed: {done.pk}:" in body
