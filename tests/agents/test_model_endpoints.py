"""Model endpoints (issue 13 defect 4): operator-named endpoints, and a tenant's own base_url
that can reach neither our network nor our keys. The endpoint is a real local HTTP server."""

import socket

import pytest

from agentpress.agents.runtime import CancelSignal, Invocation, RuntimeFailure, endpoints, get_runtime
from automation.services import execution, runs
from automation.states import RunSource, RunStatus
from tests.factories import AgentFactory
from tests.support.model_stub import ModelStub, Reply

PLATFORM_KEY = "sk-platform-0123456789abcdef"
TENANT_KEY = "sk-tenant-fedcba9876543210"


@pytest.fixture
def stub():
    server = ModelStub().start()
    yield server
    server.stop()


@pytest.fixture
def platform_env(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", PLATFORM_KEY)
    monkeypatch.setenv("LOCAL_MODEL_KEY", PLATFORM_KEY)
    monkeypatch.setenv("OPENAI_ORG_ID", "org-platform")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-platform")


def invoke(config):
    return get_runtime("openai").invoke(
        Invocation(
            run_id="r1", prompt="hi", instructions="", history=[], tools=[], config=config,
            cancel=CancelSignal(),
        )
    )  # fmt: skip


SSRF_URLS = [
    "http://127.0.0.1:11434/v1",
    "http://10.1.2.3/v1",
    "http://192.168.0.10/v1",
    "http://169.254.169.254/latest/meta-data/",
    "http://localhost:8000/v1",
    "http://[::1]:8000/v1",
    "http://[::ffff:127.0.0.1]/v1",
    "http://2130706433/v1",
    "http://0x7f000001/v1",
    "http://017700000001/v1",
    "http://127.1/v1",
    "http://0.0.0.0/v1",
    "http://100.100.100.200/v1",
]


@pytest.mark.parametrize("url", SSRF_URLS)
def test_a_tenant_base_url_into_our_network_is_refused(settings, url):
    settings.AUTOMATION_ALLOW_CUSTOM_MODEL_ENDPOINTS = True
    problem = endpoints.config_problem("openai", {"base_url": url, "model": "m"})
    assert "is refused: it resolves to" in problem
    with pytest.raises(endpoints.EndpointRefused, match="refused"):
        invoke({"base_url": url, "model": "m"})


def test_a_hostname_that_resolves_to_loopback_is_refused(settings, monkeypatch):
    settings.AUTOMATION_ALLOW_CUSTOM_MODEL_ENDPOINTS = True
    real = socket.getaddrinfo
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda host, *a, **k: (
            real("127.0.0.1", *a, **k) if host == "models.attacker.test" else real(host, *a, **k)
        ),
    )
    problem = endpoints.config_problem(
        "openai", {"base_url": "https://models.attacker.test/v1", "model": "m"}
    )
    assert "127.0.0.1 is a loopback address" in problem


def test_custom_endpoints_are_off_unless_the_operator_allows_them(settings):
    settings.AUTOMATION_MODEL_ENDPOINTS = {"local": {"base_url": "http://127.0.0.1:1/v1"}}
    problem = endpoints.config_problem("openai", {"base_url": "https://api.example.com/v1", "model": "m"})
    assert "turned off" in problem and "local" in problem


def test_the_admin_refuses_an_internal_base_url_with_a_form_error(client, roster, settings):
    settings.AUTOMATION_ALLOW_CUSTOM_MODEL_ENDPOINTS = True
    client.force_login(roster.owner)
    url = f"/admin/agents/agent/{roster.agent.pk}/change/"
    response = client.post(
        url,
        {
            "organization": roster.org.pk,
            "name": roster.agent.name,
            "runtime": "openai",
            "runtime_config": '{"base_url": "http://169.254.169.254/v1", "model": "m"}',
            "tools": "[]",
            "enabled": "on",
        },
    )
    assert response.status_code == 200
    assert "169.254.169.254 is a link-local address" in response.content.decode()
    roster.agent.refresh_from_db()
    assert roster.agent.runtime == "scripted" and roster.agent.runtime_config == {}


def test_a_stored_internal_base_url_fails_the_run_with_a_clear_error(roster, settings, stub):
    settings.AUTOMATION_ALLOW_CUSTOM_MODEL_ENDPOINTS = True
    agent = AgentFactory(
        organization=roster.org, runtime="openai", runtime_config={"base_url": stub.url, "model": "m"}
    )
    run = runs.run_create(agent=agent, run_as=roster.owner, source=RunSource.MANUAL, prompt="hi")
    assert execution.execute_run(run_id=run.pk, worker="w1") == "failed"
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert "is refused: it resolves to 127.0.0.1 is a loopback" in run.last_error
    assert stub.requests == []


def test_an_operator_endpoint_may_be_on_loopback_and_gets_its_key(settings, stub, platform_env):
    settings.AUTOMATION_MODEL_ENDPOINTS = {"local": {"base_url": stub.url, "api_key_env": "LOCAL_MODEL_KEY"}}
    result = invoke({"endpoint": "local", "model": "llama"})
    assert result.messages[-1].content == "Done."
    assert stub.requests[0]["headers"]["authorization"] == f"Bearer {PLATFORM_KEY}"


def test_an_unknown_endpoint_name_is_refused_naming_the_defined_ones(settings):
    settings.AUTOMATION_MODEL_ENDPOINTS = {"local": {"base_url": "http://127.0.0.1:1/v1"}}
    with pytest.raises(RuntimeFailure, match="Unknown model endpoint 'other'; the operator defines: local"):
        invoke({"endpoint": "other", "model": "m"})


@pytest.mark.parametrize("tenant_key", ["", TENANT_KEY])
def test_a_custom_endpoint_never_receives_a_platform_key(settings, stub, platform_env, tenant_key):
    settings.AUTOMATION_ALLOW_CUSTOM_MODEL_ENDPOINTS = True
    settings.AUTOMATION_CUSTOM_MODEL_ENDPOINT_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.AUTOMATION_MODEL_ENDPOINTS = {"local": {"base_url": stub.url, "api_key_env": "LOCAL_MODEL_KEY"}}
    config = {"base_url": stub.url, "model": "m"} | ({"api_key": tenant_key} if tenant_key else {})
    invoke(config)
    headers = stub.requests[0]["headers"]
    sent = "\n".join(f"{k}: {v}" for k, v in headers.items())
    assert PLATFORM_KEY not in sent and "org-platform" not in sent and "proj-platform" not in sent
    if tenant_key:
        assert headers["authorization"] == f"Bearer {TENANT_KEY}"
    else:
        assert "authorization" not in headers


def test_a_name_that_re_resolves_inward_is_refused_at_connect_time(settings, stub, monkeypatch):
    """DNS rebinding: public when the agent was saved, loopback when the worker connects."""
    settings.AUTOMATION_ALLOW_CUSTOM_MODEL_ENDPOINTS = True
    real = socket.getaddrinfo
    answers = iter(["93.184.216.34"])

    def rebinding(host, *args, **kwargs):
        if host == "rebind.attacker.test":
            return real(next(answers, "127.0.0.1"), *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    with pytest.raises(RuntimeFailure, match="resolves to 127.0.0.1 is a loopback address"):
        invoke({"base_url": f"http://rebind.attacker.test:{stub.port}/v1", "model": "m", "max_retries": 0})
    assert stub.requests == []


def test_the_targets_error_body_is_not_echoed_into_last_error(settings, stub):
    settings.AUTOMATION_ALLOW_CUSTOM_MODEL_ENDPOINTS = True
    settings.AUTOMATION_CUSTOM_MODEL_ENDPOINT_ALLOWED_HOSTS = ["127.0.0.1"]
    leak = "db at 10.0.0.5 user=postgres password=hunter2 key sk-internal-0123456789 " + "x" * 5000
    stub.replies = [Reply(status=400, body={"error": {"message": leak}, "internal": "stack trace here"})]
    with pytest.raises(RuntimeFailure) as failure:
        invoke({"base_url": stub.url, "model": "m", "max_retries": 0, "api_key": TENANT_KEY})
    message = str(failure.value)
    assert message.startswith(
        "The custom endpoint 127.0.0.1 answered HTTP 400 after 1 attempt: db at 10.0.0.5"
    )
    assert len(message) < 300
    for secret in ("hunter2", "sk-internal-0123456789", "stack trace here", TENANT_KEY):
        assert secret not in message
