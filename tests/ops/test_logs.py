"""Structured logs: JSON lines that name the run, org, agent, source and worker."""

import io
import json
import logging

import pytest

from agentpress.ops.logs import build_formatter
from automation.services import execution, runs
from automation.states import RunSource


@pytest.fixture
def json_lines():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(build_formatter("json"))
    root = logging.getLogger()
    root.addHandler(handler)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)


def test_every_line_the_run_engine_writes_names_the_run(
    roster, json_lines, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        run = runs.run_create(
            agent=roster.agent, run_as=roster.owner, source=RunSource.MANUAL, prompt="!fail model down"
        )
    assert execution.execute_run(run_id=run.pk, worker="w9/pid:7") == "failed"
    lines = [line for line in json_lines() if line["logger"].startswith("automation.services")]
    assert [line["event"] for line in lines] == ["Run claimed (attempt 1)", "Run ended: failed"]
    for line in lines:
        assert {k: line[k] for k in ("run_id", "org", "agent", "source", "worker")} == {
            "run_id": str(run.pk),
            "org": "acme",
            "agent": str(roster.agent.pk),
            "source": "manual",
            "worker": "w9/pid:7",
        }
        assert line["level"] == "info" and line["timestamp"].endswith("Z")


def test_text_format_is_readable_by_default():
    record = logging.LogRecord("automation.x", logging.WARNING, __file__, 1, "Run %s lost", ("r1",), None)
    text = build_formatter("text").format(record)
    assert "Run r1 lost" in text and "[warning" in text and not text.startswith("{")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_failing_run_logs_no_secret_in_either_format(
    roster, settings, fmt, django_capture_on_commit_callbacks
):
    """Issue 13 defect 12: rich's tracebacks would print locals (the config's key, the lease)."""
    import rich  # noqa: F401  (installed: the text format would use it)

    from agentpress.agents.models import Agent
    from tests.support.model_stub import ModelStub, Reply

    secret = "tenant-key-7f3a9c1d5e"
    stub = ModelStub().start()
    settings.AUTOMATION_ALLOW_CUSTOM_MODEL_ENDPOINTS = True
    settings.AUTOMATION_CUSTOM_MODEL_ENDPOINT_ALLOWED_HOSTS = ["127.0.0.1"]
    # a malformed answer makes the runtime raise something unexpected, with a full traceback
    stub.replies = [
        Reply(body={"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": []})
    ]
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(build_formatter(fmt))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        agent = Agent.objects.create(
            organization=roster.org,
            name="Keyed",
            runtime="openai",
            runtime_config={
                "base_url": stub.url,
                "model": "m",
                "api_key": secret,
                "note": f"Bearer {secret}",
            },
        )
        with django_capture_on_commit_callbacks(execute=False):
            run = runs.run_create(agent=agent, run_as=roster.owner, source=RunSource.MANUAL, prompt="hi")
        assert execution.execute_run(run_id=run.pk, worker="w1") == "failed"
    finally:
        root.removeHandler(handler)
        stub.stop()
    output = stream.getvalue()
    run.refresh_from_db()
    assert "Traceback" in output or '"exception"' in output  # the traceback is logged, without locals
    assert secret not in output
    assert str(run.lease_token) not in output


def test_key_shaped_strings_are_masked_in_messages():
    record = logging.LogRecord(
        "automation.x",
        logging.ERROR,
        __file__,
        1,
        "upstream said %s",
        ("Authorization: Bearer sk-abc123def456ghi",),
        None,
    )
    for fmt in ("text", "json"):
        text = build_formatter(fmt).format(record)
        assert "sk-abc123def456ghi" not in text and "[redacted]" in text
