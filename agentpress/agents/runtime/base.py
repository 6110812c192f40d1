"""The one interface through which an agent is invoked.

A runtime gets the run's prompt, the thread's history and the tools it may call, and
returns the messages to append and the tool calls it made. It must honour ``cancel``:
when the event is set (the run was cancelled or its lease recovered) it stops by
raising ``RunCancelled``. Every model call it makes (each attempt of it) is reported
through ``report_model_call`` as it happens, so usage is recorded even when the run
fails or stops afterwards.
"""

import logging
import threading
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

logger = logging.getLogger(__name__)


class CancelSignal(threading.Event):
    """A run's cancellation: an event that also wakes what is blocked on the run's behalf.

    Whoever sets it (the heartbeat that found the lease lost, a cancel, the shutdown's grace)
    calls each waker registered with ``waking``: a model call blocked in a socket read
    registers one that shuts the socket down, so the read returns at once instead of
    polling the event in slices (a thousand runs waiting on models would otherwise wake a
    thousand threads every slice). Plain ``wait``/``is_set`` work as for any event.
    """

    def __init__(self):
        super().__init__()
        self._wakers_lock = threading.Lock()
        self._wakers: list[Callable[[], None]] = []

    def set(self) -> None:
        super().set()
        with self._wakers_lock:
            wakers = list(self._wakers)
        for wake in wakers:
            _wake(wake)

    @contextmanager
    def waking(self, wake: Callable[[], None]):
        """While in the block, ``wake`` is called when the signal is set (at once if it
        already is). ``wake`` must be quick and safe to call from another thread."""
        with self._wakers_lock:
            self._wakers.append(wake)
        try:
            if self.is_set():
                _wake(wake)
            yield
        finally:
            with self._wakers_lock:
                self._wakers.remove(wake)


def _wake(wake: Callable[[], None]) -> None:
    try:
        wake()
    except Exception:  # one broken waker must not keep the cancel from the others
        logger.exception("A cancel waker failed")


class RunCancelled(Exception):
    """The invocation stopped because its run was cancelled or lost its lease."""


class RuntimeFailure(Exception):
    """The agent could not produce a result; the message becomes the run's ``last_error``."""


@dataclass
class Tool:
    name: str
    description: str
    parameters: dict  # JSON schema of the arguments
    call: Callable[[dict], dict]


@dataclass(frozen=True)
class ModelCallRecord:
    """One attempt of one model call, as the run's ``ModelCall`` row records it."""

    endpoint: str
    model: str
    attempt: int
    outcome: str  # ok, retried, error
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    latency_ms: int = 0
    status_code: int | None = None
    error: str = ""
    cost: Decimal = Decimal(0)


def _ignore(record: ModelCallRecord) -> None:
    return None


@dataclass
class Invocation:
    run_id: str
    prompt: str
    instructions: str
    history: list[dict]  # [{"role": ..., "content": ...}] oldest first
    tools: list[Tool]
    config: dict
    cancel: CancelSignal
    report_model_call: Callable[[ModelCallRecord], None] = _ignore

    def tool(self, name: str) -> Tool | None:
        return next((t for t in self.tools if t.name == name), None)

    def sleep(self, seconds: float) -> None:
        """Wait, waking at once when the run is cancelled."""
        if self.cancel.wait(seconds):
            raise RunCancelled()

    def check_cancelled(self) -> None:
        if self.cancel.is_set():
            raise RunCancelled()


@dataclass
class OutMessage:
    role: str
    content: str
    metadata: dict = field(default_factory=dict)


@dataclass
class InvocationResult:
    messages: list[OutMessage]
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


class Runtime(Protocol):
    def invoke(self, invocation: Invocation) -> InvocationResult: ...
