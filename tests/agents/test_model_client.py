"""The openai runtime's client (issue 14 item 4): one per endpoint per process, a timeout per
call, and a call still waiting is stopped when its run is cancelled or recovered."""

import json
import threading

import httpx2
import pytest
from django.conf import settings as django_settings

from agentpress.agents.runtime import (
    Invocation,
    RunCancelled,
    RuntimeFailure,
    endpoints,
    get_runtime,
    transport,
)
from agentpress.agents.runtime.openai_runtime import client_for
from automation.models import AgentRun
from automation.services import runs, settlement
from automation.states import RunSource, RunStatus
from tests.factories import AgentFactory
from tests.support.model_stub import ModelStub, Reply
from tests.support.services import wait_until

SLOW = 60  # seconds the stub takes: far beyond every wait below


@pytest.fixture
def stub():
    server = ModelStub().start()
    yield server
    server.stop()


def invocation(cancel=None):
    return Invocation(
        run_id="r1", prompt="hi", instructions="", history=[], tools=[],
        config={"endpoint": "stub", "model": "m"}, cancel=cancel or threading.Event(),
    )  # fmt: skip


def test_one_client_per_endpoint_reuses_its_connection(settings, stub):
    settings.AUTOMATION_MODEL_ENDPOINTS = {"stub": {"base_url": stub.url}}
    get_runtime("openai").invoke(invocation())
    get_runtime("openai").invoke(invocation())
    endpoint = endpoints.resolve({"endpoint": "stub"})
    assert client_for(endpoint) is client_for(endpoint)
    assert len(stub.requests) == 2 and stub.requests[0]["peer"] == stub.requests[1]["peer"]


def test_a_completion_is_sent_as_plain_json_without_the_sdks_typed_transform(settings, stub, monkeypatch):
    """``chat.completions.create`` runs its typed-params transform over the whole chat on
    every call, about half of the call's CPU (bench 7); the runtime's body is plain JSON
    already and goes through the SDK's request path (retries, timeout, errors) as it is."""
    from openai._utils import _transform

    transformed = []
    real = _transform.transform
    monkeypatch.setattr(_transform, "transform", lambda *a, **k: transformed.append(a) or real(*a, **k))
    settings.AUTOMATION_MODEL_ENDPOINTS = {"stub": {"base_url": stub.url}}
    result = get_runtime("openai").invoke(invocation())
    assert result.messages[0].content
    assert transformed == []
    body = stub.requests[0]["body"]
    assert body["model"] == "m" and body["messages"][-1] == {"role": "user", "content": "hi"}


def test_the_threads_of_a_worker_share_an_endpoints_connections_in_small_pools(stub):
    """httpcore's pool passes over all its connections on every request and response: a
    thousand threads on one pool spend more CPU there than on the request. Each thread keeps
    to one of the transport's pools and reuses the connections there."""
    shards, threads = 4, 12
    client = httpx2.Client(transport=transport.ModelTransport(custom=False, shards=shards))
    start = threading.Barrier(threads)

    def calls():
        start.wait(5)
        for _ in range(2):
            client.post(f"{stub.url}/chat/completions", json={}).raise_for_status()

    workers = [threading.Thread(target=calls) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(10)
    pools = client._transport._pools
    assert len(pools) == shards
    # every pool serves its share of the threads, and no more connections than those threads
    assert all(0 < len(pool.connections) <= threads // shards for pool in pools)
    assert len(stub.requests) == 2 * threads
    client.close()
    assert all(not pool.connections for pool in pools)


def test_a_call_longer_than_the_endpoint_timeout_fails_clearly(settings, stub):
    settings.AUTOMATION_MODEL_ENDPOINTS = {
        "stub": {"base_url": stub.url, "timeout_seconds": 0.3, "max_retries": 0}
    }
    stub.replies = [Reply(delay=SLOW)]
    reported = []
    run = invocation()
    run.report_model_call = reported.append
    with pytest.raises(RuntimeFailure, match="model endpoint 'stub' did not answer within 0.3s"):
        get_runtime("openai").invoke(run)
    assert [(r.outcome, r.error) for r in reported] == [("error", reported[0].error)]
    assert "did not answer" in reported[0].error


def test_cancel_aborts_a_call_that_is_still_waiting(settings, stub):
    settings.AUTOMATION_MODEL_ENDPOINTS = {"stub": {"base_url": stub.url}}
    stub.replies = [Reply(delay=SLOW)]
    cancel = threading.Event()
    outcome = []

    def call():
        try:
            get_runtime("openai").invoke(invocation(cancel))
        except RunCancelled:
            outcome.append("stopped")

    worker = threading.Thread(target=call)
    worker.start()
    wait_until(lambda: stub.requests, message="the call reached the endpoint")
    cancel.set()
    heartbeat = django_settings.AUTOMATION_LEASE_TTL_SECONDS / 4
    worker.join(timeout=heartbeat + 5)
    assert outcome == ["stopped"]
    assert stub.disconnected.wait(timeout=5), "the connection was closed, not left waiting"


def test_cancel_ends_the_wait_before_a_retry(settings, stub):
    settings.AUTOMATION_MODEL_ENDPOINTS = {"stub": {"base_url": stub.url, "max_retries": 2}}
    stub.replies = [
        Reply(status=429, body={"error": {"message": "later"}}, headers={"Retry-After": str(SLOW - 1)})
    ]
    cancel = threading.Event()
    reported, outcome = [], []
    run = invocation(cancel)
    run.report_model_call = reported.append

    def call():
        try:
            get_runtime("openai").invoke(run)
        except RunCancelled:
            outcome.append("stopped")

    worker = threading.Thread(target=call)
    worker.start()
    wait_until(lambda: stub.requests, message="the first attempt was answered")
    cancel.set()
    worker.join(timeout=django_settings.AUTOMATION_LEASE_TTL_SECONDS / 4 + 5)
    assert outcome == ["stopped"] and len(stub.requests) == 1
    assert [(r.outcome, r.error) for r in reported] == [("error", "cancelled")]


@pytest.mark.parametrize("how", ["cancelled", "recovered"])
def test_a_lost_run_stops_its_model_call_on_the_worker(roster, worker_pool, stub, how):
    lease_ttl = 2
    endpoint_config = json.dumps({"stub": {"base_url": stub.url, "max_retries": 0}})
    worker_pool(AUTOMATION_LEASE_TTL_SECONDS=lease_ttl, AUTOMATION_MODEL_ENDPOINTS=endpoint_config)
    stub.replies = [Reply(delay=SLOW)]
    agent = AgentFactory(
        organization=roster.org, runtime="openai", runtime_config={"endpoint": "stub", "model": "m"}
    )
    run = runs.run_create(agent=agent, run_as=roster.owner, source=RunSource.MANUAL, prompt="hi")
    wait_until(lambda: stub.requests, message="the model call is in flight")
    if how == "cancelled":
        settlement.cancel_run(run_id=run.pk, reason="test")
    else:
        settlement.interrupt_run(run_id=run.pk, error="lease expired (test)")
    # one heartbeat interval to notice, one read slice to stop, plus room for a loaded machine
    bound = lease_ttl / 4 * 2 + 10
    wait_until(
        lambda: run.events.filter(kind="agent_stopped").exists(), timeout=bound, message="agent stopped"
    )
    assert stub.disconnected.wait(timeout=5)
    assert AgentRun.objects.get(pk=run.pk).status in (RunStatus.CANCELLED, RunStatus.INTERRUPTED)
