"""Usage and cost per model call and per run, and the SDK's retries (issue 17 items 1 and 4),
against a local OpenAI-compatible HTTP server."""

import socket
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from prometheus_client.parser import text_string_to_metric_families

from agentpress.agents.runtime import ModelCallRecord
from agentpress.agents.runtime.openai_runtime import ModelClient
from agentpress.ops import metrics
from automation.models import FollowUp, ModelCall
from automation.services import execution, limits, runs
from automation.services.execution import execute_run
from automation.states import RunSource, RunStatus
from tests.factories import AgentFactory
from tests.support.model_stub import ModelStub, Reply, completion, tool_call

KEY = "sk-operator-1234567890abcdef"


@pytest.fixture
def stub():
    server = ModelStub().start()
    yield server
    server.stop()


@pytest.fixture
def endpoint(settings, stub, monkeypatch):
    monkeypatch.setenv("STUB_MODEL_KEY", KEY)
    settings.AUTOMATION_MODEL_ENDPOINTS = {
        "stub": {
            "base_url": stub.url,
            "api_key_env": "STUB_MODEL_KEY",
            "input_price_per_million": 2,
            "output_price_per_million": 10,
            "max_retries": 2,
        }
    }
    return "stub"


def run_agent(roster, agent, prompt="Help the customer"):
    run = runs.run_create(agent=agent, run_as=roster.owner, source=RunSource.MANUAL, prompt=prompt)
    execute_run(run_id=run.pk, worker="w1")
    run.refresh_from_db()
    return run


def openai_agent(roster, endpoint):
    return AgentFactory(
        organization=roster.org, runtime="openai", runtime_config={"endpoint": endpoint, "model": "gpt-stub"}
    )


def test_each_call_is_a_row_with_usage_and_cost_and_the_run_carries_the_totals(roster, endpoint, stub):
    stub.replies = [
        Reply(body=completion(None, tool_calls=[tool_call("schedule_follow_up", {"delay_seconds": 7200, "continuation_prompt": "check"})],
                              prompt_tokens=1000, completion_tokens=50, cached_tokens=200)),
        Reply(body=completion("All done.", prompt_tokens=1200, completion_tokens=30)),
    ]  # fmt: skip
    run = run_agent(roster, openai_agent(roster, endpoint))
    assert run.status == RunStatus.COMPLETED
    calls = list(ModelCall.objects.filter(run=run).order_by("created_at", "id"))
    assert [(c.endpoint, c.model, c.outcome, c.input_tokens, c.output_tokens) for c in calls] == [
        ("stub", "gpt-stub", "ok", 1000, 50),
        ("stub", "gpt-stub", "ok", 1200, 30),
    ]
    assert calls[0].cached_tokens == 200 and calls[0].status_code == 200
    # 1000 × 2/M + 50 × 10/M = 0.0025 ; 1200 × 2/M + 30 × 10/M = 0.0027
    assert [c.cost for c in calls] == [Decimal("0.002500"), Decimal("0.002700")]
    assert (run.input_tokens, run.output_tokens, run.cost) == (2200, 80, Decimal("0.005200"))


def test_retries_are_the_sdks_and_each_attempt_is_a_row(roster, endpoint, stub):
    stub.replies = [
        Reply(status=429, body={"error": {"message": "slow down"}}, headers={"Retry-After": "1"}),
        Reply(status=500, body={"error": {"message": "boom"}}),
        Reply(body=completion("Recovered.")),
    ]
    run = run_agent(roster, openai_agent(roster, endpoint))
    assert run.status == RunStatus.COMPLETED
    rows = list(ModelCall.objects.filter(run=run).values_list("attempt", "outcome", "status_code"))
    assert rows == [(1, "retried", 429), (2, "retried", 500), (3, "ok", 200)]
    assert [r["headers"]["x-stainless-retry-count"] for r in stub.requests] == ["0", "1", "2"]


def test_after_the_last_attempt_the_run_fails_naming_endpoint_and_status_never_the_key(
    roster, endpoint, stub
):
    stub.replies = [Reply(status=503, body={"error": {"message": f"overloaded (key {KEY})"}})] * 3
    run = run_agent(roster, openai_agent(roster, endpoint))
    assert run.status == RunStatus.FAILED
    assert run.last_error.startswith(
        "The model endpoint 'stub' answered HTTP 503 after 3 attempts: overloaded"
    )
    assert KEY not in run.last_error
    assert list(ModelCall.objects.filter(run=run).values_list("outcome", flat=True)) == [
        "retried",
        "retried",
        "error",
    ]


def test_the_scripted_runtime_reports_a_deterministic_usage(roster, settings):
    settings.AUTOMATION_MODEL_ENDPOINTS = {"priced": {"base_url": "http://127.0.0.1:1/v1", "input_price_per_million": 1_000_000, "output_price_per_million": 2_000_000}}  # fmt: skip
    agent = AgentFactory(
        organization=roster.org, instructions="Be brief", runtime_config={"endpoint": "priced"}
    )
    run = run_agent(roster, agent, prompt="!reply Hello there friend")
    (call,) = ModelCall.objects.filter(run=run)
    # input: "Be brief" (2) + the prompt (4 words); output: "Hello there friend" (3)
    assert (call.endpoint, call.model, call.input_tokens, call.output_tokens) == ("priced", "scripted", 6, 3)
    assert call.cost == Decimal(6 * 1 + 3 * 2)
    assert (run.input_tokens, run.output_tokens, run.cost) == (6, 3, Decimal(12))


def test_usage_is_in_the_api_the_detail_panel_the_runs_table_and_metrics(client, roster):
    run = run_agent(roster, roster.agent, prompt="!reply one two three")
    client.force_login(roster.owner)
    detail = client.get(f"/api/orgs/acme/agent-runs/{run.pk}").json()
    assert (detail["inputTokens"], detail["outputTokens"], detail["cost"]) == (4, 3, "0.000000")
    listed = client.get("/api/orgs/acme/agent-runs").json()["results"][0]
    assert (listed["inputTokens"], listed["outputTokens"]) == (4, 3)
    page = client.get(f"/orgs/acme/agents/monitor/automation-runs/{run.pk}/").content.decode()
    assert "4 in / 3 out" in page
    table = client.get("/orgs/acme/agents/monitor/automation-runs/").content.decode()
    assert "Tokens / cost" in table and '<td class="run-usage col-wide">7 · 0.0000</td>' in table
    scraped = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(scraped)
        for s in family.samples
    }
    labels = (("agent", str(roster.agent.pk)), ("kind", "input"), ("model", "scripted"), ("org", "acme"))
    assert samples[("automation_model_tokens_total", labels)] >= 4


def test_the_wait_before_a_retry_is_the_retry_after_the_endpoint_asked_for(
    roster, endpoint, stub, monkeypatch
):
    waits = []
    computed = ModelClient._calculate_retry_timeout

    def spy(self, *args, **kwargs):
        waits.append(computed(self, *args, **kwargs))
        return waits[-1]

    monkeypatch.setattr(ModelClient, "_calculate_retry_timeout", spy)
    stub.replies = [
        Reply(status=429, body={"error": {"message": "slow down"}}, headers={"Retry-After": "2"}),
        Reply(status=500, body={"error": {"message": "boom"}}),
        Reply(body=completion("Recovered.")),
    ]
    run = run_agent(roster, openai_agent(roster, endpoint))
    assert run.status == RunStatus.COMPLETED
    # the 429's own Retry-After, then the SDK's exponential backoff (1 s with up to 25 % jitter)
    assert waits[0] == 2
    assert 0.75 <= waits[1] <= 1
    assert list(ModelCall.objects.filter(run=run).values_list("attempt", "status_code")) == [
        (1, 429),
        (2, 500),
        (3, 200),
    ]


def test_a_run_past_its_token_ceiling_fails_at_that_call_before_its_tool_acts(roster, endpoint, stub):
    agent = openai_agent(roster, endpoint)
    agent.max_tokens_per_run = 500
    agent.self_reschedule_enabled = True
    agent.save()
    arguments = {"delay_seconds": 7200, "continuation_prompt": "check"}
    stub.replies = [
        Reply(body=completion(None, tool_calls=[tool_call("schedule_follow_up", arguments)], prompt_tokens=450, completion_tokens=100)),
        Reply(body=completion("never asked")),
    ]  # fmt: skip
    run = run_agent(roster, agent)
    assert run.status == RunStatus.FAILED
    assert run.last_error == (
        "Token ceiling reached: the run used 550 tokens, more than the agent's max_tokens_per_run of 500. "
        "The agent was stopped."
    )
    assert (run.input_tokens, run.output_tokens) == (450, 100)  # the call that passed it is recorded
    assert len(stub.requests) == 1 and not FollowUp.objects.filter(previous_run=run).exists()
    assert run.events.filter(kind="token_ceiling_reached", detail__used=550).exists()


def test_a_token_budget_spent_by_model_calls_holds_the_next_run_until_an_owner_raises_it(
    roster, endpoint, stub, monkeypatch, settings, django_capture_on_commit_callbacks
):
    sent = []
    monkeypatch.setattr(runs, "dispatch_run", lambda *, run_id: sent.append(run_id) or True)
    roster.org.daily_token_limit = 1000
    roster.org.save()
    agent = openai_agent(roster, endpoint)
    stub.replies = [Reply(body=completion("First.", prompt_tokens=1000, completion_tokens=200))]
    with time_machine.travel(datetime(2026, 3, 2, 10, 0, tzinfo=UTC)) as clock:
        first = run_agent(roster, agent)
        assert (first.status, first.input_tokens + first.output_tokens) == (RunStatus.COMPLETED, 1200)

        held = runs.run_create(agent=agent, run_as=roster.owner, source=RunSource.MANUAL, prompt="Next")
        assert execute_run(run_id=held.pk, worker="w1") == "not-claimed"
        held.refresh_from_db()
        assert held.status == RunStatus.PENDING
        assert held.waiting_reason == (
            "daily budget reached (organization acme: 1200 / 1000 tokens today), "
            "resumes at 2026-03-03 00:00 UTC (2026-03-03 00:00:00 UTC)"
        )
        assert len(stub.requests) == 1  # the held run asked the model nothing

        # later that day (its message long consumed by the worker that held it) an owner raises it
        clock.shift(timedelta(seconds=settings.AUTOMATION_REDISPATCH_AFTER_SECONDS + 1))
        with django_capture_on_commit_callbacks(execute=True):
            limits.limits_update(owner=roster.org, actor=roster.owner, daily_token_limit=5000)
        assert sent == [held.pk]
        assert execute_run(run_id=held.pk, worker="w1") == "completed"
    held.refresh_from_db()
    assert (held.status, held.waiting_reason) == (RunStatus.COMPLETED, "")


def test_metrics_count_tokens_and_cost_per_org_agent_and_model_in_bounded_series(
    roster, endpoint, stub, client, monkeypatch
):
    agent = openai_agent(roster, endpoint)
    stub.replies = [Reply(body=completion("Priced.", prompt_tokens=1000, completion_tokens=100))]
    run_agent(roster, agent)
    samples = scrape(client)
    labels = (("agent", str(agent.pk)), ("model", "gpt-stub"), ("org", "acme"))
    # 1000 × 2/M + 100 × 10/M
    assert samples[("automation_model_cost_total", labels)] == pytest.approx(0.003)
    assert samples[("automation_model_tokens_total", (*labels[:1], ("kind", "output"), *labels[1:]))] == 100
    assert samples[("automation_model_calls_total", (*labels, ("outcome", "ok")))] == 1

    # models are named by tenants: past the bound, new series are counted as "other"
    monkeypatch.setattr(metrics, "_model_series", set())
    monkeypatch.setattr(metrics, "MAX_MODEL_SERIES", 2)
    for name in ("m1", "m2", "m3", "m4"):
        metrics.record_model_call(
            org="acme", agent=agent.pk, call=ModelCallRecord("stub", name, 1, "ok", 1, 1)
        )
    samples = scrape(client)
    models = {dict(key[1]).get("model") for key in samples if key[0] == "automation_model_calls_total"}
    assert {"m1", "m2", "other"} <= models and not {"m3", "m4"} & models
    assert all(len(dict(key[1]).get("model", "")) <= 64 for key in samples)


def scrape(client) -> dict:
    text = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_slow_answer_is_retried_and_each_attempt_is_a_row(roster, endpoint, stub, settings):
    settings.AUTOMATION_MODEL_ENDPOINTS["stub"] |= {"timeout_seconds": 0.3, "max_retries": 1}
    stub.replies = [Reply(body=completion("too late"), delay=5), Reply(body=completion("In time."))]
    run = run_agent(roster, openai_agent(roster, endpoint))
    assert run.status == RunStatus.COMPLETED
    rows = list(ModelCall.objects.filter(run=run).values_list("attempt", "outcome", "status_code"))
    assert rows == [(1, "retried", None), (2, "ok", 200)]


def test_a_refused_connection_is_retried_then_fails_naming_the_endpoint(roster, settings):
    with socket.socket() as probe:  # a port with nothing listening on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.AUTOMATION_MODEL_ENDPOINTS = {
        "down": {"base_url": f"http://127.0.0.1:{port}/v1", "max_retries": 1}
    }
    run = run_agent(roster, openai_agent(roster, "down"))
    assert run.status == RunStatus.FAILED
    assert run.last_error == "Could not connect to the model endpoint 'down' (after 2 attempts)."
    assert list(ModelCall.objects.filter(run=run).values_list("outcome", flat=True)) == ["retried", "error"]


def test_the_calls_so_far_are_stored_before_a_tool_acts_and_the_last_with_the_runs_end(
    roster, endpoint, stub, monkeypatch
):
    """A call's rows go with the run's next step: before a tool acts on its answer, or in the
    statement that ends the run."""
    seen_by_tool = []
    real = execution.tools.tools_for_run

    def watched(*, run, **kwargs):
        def watching(tool):
            def call(arguments):
                seen_by_tool.append(ModelCall.objects.filter(run_id=run.pk).count())
                return tool.call(arguments)

            return replace(tool, call=call)

        return [watching(tool) for tool in real(run=run, **kwargs)]

    monkeypatch.setattr(execution.tools, "tools_for_run", watched)
    agent = openai_agent(roster, endpoint)
    agent.self_reschedule_enabled = True
    agent.save()
    stub.replies = [
        Reply(body=completion(None, tool_calls=[tool_call("schedule_follow_up", {"delay_seconds": 7200, "continuation_prompt": "check"})],
                              prompt_tokens=1000, completion_tokens=50)),
        Reply(body=completion("All done.", prompt_tokens=1200, completion_tokens=30)),
    ]  # fmt: skip
    run = run_agent(roster, agent)
    assert run.status == RunStatus.COMPLETED
    assert seen_by_tool == [1]
    assert ModelCall.objects.filter(run=run).count() == 2
    assert (run.input_tokens, run.output_tokens) == (2200, 80)


def test_a_run_whose_end_came_too_late_still_keeps_the_rows_of_its_calls(roster, endpoint, stub, monkeypatch):
    """The lease was gone when the answer came back (cancelled, recovered): the result is
    discarded, the tokens were spent all the same."""
    real = execution.complete_run

    def cancelled_meanwhile(*, run, **kwargs):
        type(run).objects.filter(pk=run.pk).update(lease_token=None)  # another owner now
        return real(run=run, **kwargs)

    monkeypatch.setattr(execution, "complete_run", cancelled_meanwhile)
    stub.replies = [Reply(body=completion("Too late.", prompt_tokens=300, completion_tokens=20))]
    run = run_agent(roster, openai_agent(roster, endpoint))
    assert run.status == RunStatus.RUNNING  # the late result did not end it
    assert run.events.filter(kind="late_result_discarded").exists()
    assert list(ModelCall.objects.filter(run=run).values_list("input_tokens", "output_tokens")) == [(300, 20)]
    assert (run.input_tokens, run.output_tokens) == (300, 20)
