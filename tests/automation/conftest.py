import pytest

from agentpress.celery import app as celery_app
from tests.support.graph_stub import TENANT, GraphStub, serve


@pytest.fixture
def graph_stub(settings, tmp_path):
    """A local Graph over HTTPS, with the settings pointed at it (nothing reaches Microsoft)."""
    stub = GraphStub()
    server, ca_bundle = serve(stub, tmp_path)
    settings.MS_GRAPH_TENANT_ID = TENANT
    settings.MS_GRAPH_CLIENT_ID = "0c5b1a1e-app-client-id"
    settings.MS_GRAPH_CLIENT_SECRET = "app-client-secret"
    settings.MS_GRAPH_BASE_URL = stub.base_url
    settings.MS_GRAPH_AUTHORITY_URL = stub.authority_url
    settings.MS_GRAPH_CA_BUNDLE = str(ca_bundle)
    settings.AUTOMATION_PUBLIC_BASE_URL = "https://agentpress.example"
    yield stub
    server.shutdown()
    server.server_close()


@pytest.fixture
def eager_tasks():
    """Celery tasks run in the calling thread, so a hook post does its queued work at once."""
    previous = celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates
    celery_app.conf.task_always_eager = celery_app.conf.task_eager_propagates = True
    yield
    celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates = previous
