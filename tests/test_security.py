"""Production security: content security policy, sign-in throttling, revocable API tokens."""

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

pytestmark = pytest.mark.sqlite


def test_pages_allow_only_our_own_scripts_and_styles(client, roster):
    client.force_login(roster.owner)
    response = client.get("/orgs/acme/agents/monitor/automation-runs/")
    policy = response["Content-Security-Policy"]
    assert (
        "script-src 'self'" in policy and "style-src 'self'" in policy and "frame-ancestors 'none'" in policy
    )
    assert "unsafe-inline" not in policy and "http" not in policy
    body = response.content.decode()
    assert "<script>" not in body and " onclick=" not in body and " onchange=" not in body


def test_swagger_ui_is_served_from_our_static_files(client, roster):
    client.force_login(roster.owner)
    body = client.get("/api/docs/").content.decode()
    assert "cdn" not in body.lower() and "/static/drf_spectacular_sidecar/" in body


def test_repeated_failed_sign_ins_are_locked_out(client, roster):
    for _ in range(4):
        assert client.post("/accounts/login/", {"username": "owner", "password": "wrong"}).status_code == 200
    assert client.post("/accounts/login/", {"username": "owner", "password": "wrong"}).status_code == 429
    locked = client.post("/accounts/login/", {"username": "owner", "password": "pw"})
    assert locked.status_code == 429
    assert client.get("/orgs/acme/agents/monitor/automation-runs/").status_code == 302  # still signed out


def test_a_correct_sign_in_works_and_resets_the_counter(client, roster):
    for _ in range(3):
        client.post("/accounts/login/", {"username": "owner", "password": "wrong"})
    assert client.post("/accounts/login/", {"username": "owner", "password": "pw"}).status_code == 302


def test_a_revoked_token_stops_working(roster, client):
    token = Token.objects.create(user=roster.owner)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert api.get("/api/orgs/acme/agent-runs").status_code == 200
    client.force_login(roster.owner)
    # DRF's token admin addresses a token by its user's id
    response = client.post(f"/admin/authtoken/tokenproxy/{roster.owner.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert api.get("/api/orgs/acme/agent-runs").status_code == 401


def test_owners_cannot_see_or_revoke_other_peoples_tokens(roster, client):
    token = Token.objects.create(user=roster.admin)
    client.force_login(roster.owner)
    assert token.key not in client.get("/admin/authtoken/tokenproxy/").content.decode()
    client.post(f"/admin/authtoken/tokenproxy/{roster.admin.pk}/delete/", {"post": "yes"})
    assert Token.objects.filter(pk=token.key).exists()
