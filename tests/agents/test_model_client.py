"""The openai runtime's client (issue 14 item 4): one per endpoint per process, a timeout per
call, and a call still waiting is stopped when its run is cancelled or recovered."""

import json
import socket
import ssl
import threading

import httpx2
import pytest
import trustme
from django.conf import settings as django_settings

from agentpress.agents.runtime import (
    CancelSignal,
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
        config={"endpoint": "stub", "model": "m"}, cancel=cancel or CancelSignal(),
    )  # fmt: skip


def call_in_thread(run: Invocation):
    """Invoke ``run`` on a thread of its own; ``outcome`` gets "stopped" if it is cancelled."""
    outcome = []

    def call():
        try:
            get_runtime("openai").invoke(run)
        except RunCancelled:
            outcome.append("stopped")

    worker = threading.Thread(target=call)
    worker.start()
    return worker, outcome


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


def test_a_waiting_call_is_not_woken_until_its_run_is_cancelled(settings, stub, monkeypatch):
    """A thousand runs waiting on their models must cost no wake-ups: the read blocks for the
    whole wait and the cancel signal itself breaks it (reading in slices to look at the
    signal woke every waiting thread each slice)."""
    import httpcore2._backends.sync as sync_backend

    settings.AUTOMATION_LEASE_TTL_SECONDS = 2  # the shortest slices the old reads would poll in
    settings.AUTOMATION_MODEL_ENDPOINTS = {"stub": {"base_url": stub.url}}
    stub.replies = [Reply(delay=SLOW)]
    reads = []
    real_read = sync_backend.SyncStream.read
    monkeypatch.setattr(
        sync_backend.SyncStream, "read", lambda self, *a, **k: reads.append(1) or real_read(self, *a, **k)
    )
    cancel = CancelSignal()
    worker, outcome = call_in_thread(invocation(cancel))
    wait_until(lambda: stub.requests and reads, message="the call waits for its answer")
    heartbeat = settings.AUTOMATION_LEASE_TTL_SECONDS / 4
    worker.join(timeout=2 * heartbeat)
    assert worker.is_alive()
    assert len(reads) == 1, "the waiting read was woken before the run was cancelled"
    cancel.set()
    worker.join(timeout=heartbeat + 5)
    assert outcome == ["stopped"]
    assert stub.disconnected.wait(timeout=5), "the connection was closed, not left waiting"


def test_cancel_breaks_a_read_waiting_on_a_tls_connection():
    """Real endpoints speak TLS: the waker shuts the socket under the SSL layer and the
    reading thread stops with ``CallCancelled``, not a TLS error."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    listener = socket.create_server(("127.0.0.1", 0))
    held = []

    def serve():  # a server that completes the handshake and never answers
        conn, _ = listener.accept()
        held.append(server_context.wrap_socket(conn, server_side=True))

    threading.Thread(target=serve, daemon=True).start()
    stream = transport.GuardedBackend(host_allowed=None).connect_tcp(
        "127.0.0.1", listener.getsockname()[1], timeout=10
    )
    stream = stream.start_tls(client_context, server_hostname="localhost", timeout=10)
    cancel, reading, outcome = CancelSignal(), threading.Event(), []
    inner_read = stream._inner.read

    def read_marked(*args):
        reading.set()
        return inner_read(*args)

    stream._inner.read = read_marked

    def read():
        with transport.observe_call(cancel):
            try:
                stream.read(1024, timeout=SLOW)
            except transport.CallCancelled:
                outcome.append("cancelled")

    reader = threading.Thread(target=read)
    reader.start()
    assert reading.wait(timeout=10)
    cancel.set()
    reader.join(timeout=10)
    assert outcome == ["cancelled"]
    stream.close()
    listener.close()


def test_cancel_ends_the_wait_before_a_retry(settings, stub):
    settings.AUTOMATION_MODEL_ENDPOINTS = {"stub": {"base_url": stub.url, "max_retries": 2}}
    stub.replies = [
        Reply(status=429, body={"error": {"message": "later"}}, headers={"Retry-After": str(SLOW - 1)})
    ]
    cancel = CancelSignal()
    reported = []
    run = invocation(cancel)
    run.report_model_call = reported.append
    worker, outcome = call_in_thread(run)
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
    # one heartbeat interval to notice (the read stops as the signal is set), plus room for a loaded machine
    bound = lease_ttl / 4 * 2 + 10
    wait_until(
        lambda: run.events.filter(kind="agent_stopped").exists(), timeout=bound, message="agent stopped"
    )
    assert stub.disconnected.wait(timeout=5)
    assert AgentRun.objects.get(pk=run.pk).status in (RunStatus.CANCELLED, RunStatus.INTERRUPTED)
