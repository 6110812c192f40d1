"""The API contract: the committed ``docs/openapi.yaml`` is what the app serves, and it is valid.

When an endpoint changes on purpose, regenerate the file with ``make openapi`` and commit it.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.conf import settings

COMMITTED = Path(settings.BASE_DIR) / "docs" / "openapi.yaml"
HINT = "The served schema differs from docs/openapi.yaml: run `make openapi` and commit the file."


@pytest.fixture
def api(client, roster):
    client.force_login(roster.owner)
    return client


def committed() -> dict:
    return yaml.safe_load(COMMITTED.read_text())


@pytest.mark.sqlite
def test_served_yaml_schema_matches_the_committed_file(api):
    response = api.get("/api/schema/")
    assert response.status_code == 200
    assert yaml.safe_load(response.content) == committed(), HINT


@pytest.mark.sqlite
def test_served_json_schema_matches_the_committed_file(api):
    response = api.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    assert json.loads(response.content) == committed(), HINT


@pytest.mark.sqlite
def test_every_operation_documents_its_errors_with_a_detail(api):
    schema = committed()
    error = schema["components"]["schemas"]["ErrorResponse"]
    assert error["required"] == ["detail"]
    operations = [
        (path, method, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    ]
    assert len(operations) >= 17
    for path, method, operation in operations:
        for code in ("400", "401", "403", "404"):
            content = operation["responses"][code]["content"]["application/json"]["schema"]
            assert content == {"$ref": "#/components/schemas/ErrorResponse"}, (path, method, code)
    conflicts = {(path, method) for path, method, operation in operations if "409" in operation["responses"]}
    assert conflicts >= {
        ("/api/orgs/{orgSlug}/agent-runs", "post"),
        ("/api/orgs/{orgSlug}/agent-runs/{runId}/cancel", "post"),
        ("/api/orgs/{orgSlug}/agent-runs/{runId}/retry", "post"),
        ("/api/orgs/{orgSlug}/agent-run-follow-ups/{followUpId}", "delete"),
        ("/api/orgs/{orgSlug}/agent-run-schedules/{scheduleId}/run", "post"),
    }


@pytest.mark.sqlite
def test_filters_and_enums_are_in_the_contract():
    schema = committed()

    def query(path):
        return {p["name"]: p for p in schema["paths"][path]["get"]["parameters"] if p["in"] == "query"}

    runs = query("/api/orgs/{orgSlug}/agent-runs")
    assert set(runs["waitingReason"]["schema"]["enum"]) == {
        "not_due", "debounced", "org_limit", "agent_limit", "budget", "worker"
    }  # fmt: skip
    assert set(runs) == {
        "agentId", "source", "status", "contextType", "contextKey", "threadId", "createdAfter",
        "createdBefore", "waitingReason", "limit", "cursor",
    }  # fmt: skip
    assert set(runs["status"]["schema"]["enum"]) == {
        "pending", "running", "completed", "failed", "cancelled", "interrupted"
    }  # fmt: skip
    assert set(runs["source"]["schema"]["enum"]) == {"manual", "schedule", "follow_up", "provider_event"}
    follow_ups = query("/api/orgs/{orgSlug}/agent-run-follow-ups")
    assert {
        "agentId",
        "status",
        "statusGroup",
        "contextType",
        "contextKey",
        "threadId",
        "limit",
        "cursor",
    } <= set(follow_ups)
    assert "agentId" in query("/api/orgs/{orgSlug}/agent-run-schedules")
    components = schema["components"]["schemas"]
    assert {"RunStatusEnum", "FollowUpStatusEnum", "ProviderEventStatusEnum", "SourceEnum"} <= set(components)
    # request and response bodies are camelCase
    assert "runAsId" in components["ScheduleWriteRequest"]["properties"]
    assert "nextRunAt" in components["Schedule"]["properties"]


def test_the_schema_validates_without_warnings(tmp_path):
    out = tmp_path / "openapi.yaml"
    env = {**os.environ, "DEBUG": "true", "DJANGO_SETTINGS_MODULE": "tests.settings"}
    result = subprocess.run(
        [sys.executable, "manage.py", "spectacular", "--validate", "--fail-on-warn", "--file", str(out)],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert yaml.safe_load(out.read_text()) == committed(), HINT
