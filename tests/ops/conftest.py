import pytest

from tests.reliability.private_services import RedisServer


@pytest.fixture
def redis_server(tmp_path):
    """A private redis-server: its state and command counters are the test's alone."""
    server = RedisServer(tmp_path)
    yield server
    server.close()
