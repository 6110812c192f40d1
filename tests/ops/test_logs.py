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
