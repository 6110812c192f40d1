"""A threads-pool worker shortens the interpreter's switch interval; a prefork parent does not."""

import sys
from types import SimpleNamespace

import pytest

from automation.worker import heartbeat, signals


@pytest.fixture
def interval():
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)


def _ready(pool: str):
    controller = SimpleNamespace(pool_cls=pool, concurrency=4)
    signals._on_worker_ready(sender=SimpleNamespace(controller=controller, hostname="w@h"))


def test_a_threads_worker_switches_threads_at_the_configured_interval(interval, settings, monkeypatch):
    started = []
    monkeypatch.setattr(heartbeat, "ensure_started", lambda **kwargs: started.append(kwargs))
    settings.AUTOMATION_WORKER_SWITCH_INTERVAL_SECONDS = 0.0007
    _ready("threads")
    assert sys.getswitchinterval() == pytest.approx(0.0007)
    assert started and started[0]["when_idle"] is True


def test_a_prefork_parent_keeps_the_default(interval, settings, monkeypatch):
    monkeypatch.setattr(
        heartbeat, "ensure_started", lambda **kwargs: pytest.fail("no heartbeat in the parent")
    )
    sys.setswitchinterval(0.005)
    settings.AUTOMATION_WORKER_SWITCH_INTERVAL_SECONDS = 0.0007
    _ready("celery.concurrency.prefork:TaskPool")
    assert sys.getswitchinterval() == pytest.approx(0.005)
