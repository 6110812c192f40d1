"""The HTTP layer under the openai SDK: observe each attempt, honour cancel, guard addresses.

The SDK does the retrying (``max_retries``, backoff, ``Retry-After``); this transport sits
under it, so it sees every attempt the SDK makes and records its status and latency for
the run's model-call rows. The call being made is described by a context variable set by
the runtime around each SDK call (``observe_call``), because connections are pooled and
shared by every run of the process while each request is sent from its run's own thread.

- Cancel: a read blocks for the whole wait with no polling; while it waits, the run's
  ``CancelSignal`` holds a waker that shuts the socket down, so the moment the signal is
  set (a cancel, or the heartbeat finding the lease lost) the read returns and the call
  stops with ``CallCancelled``; the connection is then discarded. A thousand runs waiting
  on their models cost no wake-ups. ``CallCancelled`` is an ``OpenAIError``, which the SDK
  propagates without retrying.
- Addresses: for a tenant's custom endpoint every connection re-checks the addresses the
  host resolves to and connects to the address it checked (no DNS rebinding in between).
"""

import itertools
import socket
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass, field

import httpcore2
import httpx2
import openai
from openai._constants import DEFAULT_CONNECTION_LIMITS

from . import endpoints
from .base import CancelSignal

# Connection pools per model endpoint and process: a thousand threads in flight make about 32
# connections a pool (GuardedTransport).
MODEL_POOL_SHARDS = 32

# Headers the SDK fills from the platform's environment; a custom endpoint never gets them.
PLATFORM_HEADERS = ("openai-organization", "openai-project")


class CallCancelled(openai.OpenAIError):
    """The run was cancelled or lost its lease while its model call was in flight."""


class AddressRefused(openai.OpenAIError):
    """A custom endpoint's host resolved to an address a tenant may not reach."""


@dataclass
class Attempt:
    status_code: int | None
    latency_ms: int
    error: str = ""


@dataclass
class CallState:
    cancel: CancelSignal
    attempts: list[Attempt] = field(default_factory=list)


_current: ContextVar[CallState | None] = ContextVar("model_call", default=None)


@contextmanager
def observe_call(cancel: CancelSignal):
    """Around one SDK call: its attempts are collected in the yielded ``CallState``."""
    state = CallState(cancel=cancel)
    token = _current.set(state)
    try:
        yield state
    finally:
        _current.reset(token)


def current_cancel() -> CancelSignal | None:
    state = _current.get()
    return state.cancel if state else None


def _raise_if_cancelled() -> None:
    cancel = current_cancel()
    if cancel is not None and cancel.is_set():
        raise CallCancelled("The run was cancelled or lost its lease; the model call was stopped.")


class _CancellableStream(httpcore2.NetworkStream):
    def __init__(self, inner: httpcore2.NetworkStream):
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        cancel = current_cancel()
        if cancel is None:
            return self._inner.read(max_bytes, timeout)
        _raise_if_cancelled()
        try:
            with cancel.waking(self._interrupt):
                data = self._inner.read(max_bytes, timeout)
        except Exception:
            _raise_if_cancelled()  # the waker's shutdown broke the read: say why
            raise
        _raise_if_cancelled()  # the waker's shutdown ended the read early (b"")
        return data

    def _interrupt(self) -> None:
        """Wake a read blocked on this stream (from the thread that set the cancel): shut the
        socket down underneath it. The plain socket's call, also for TLS, so the reading
        thread's SSL object is left to that thread."""
        sock = self._inner.get_extra_info("socket")
        if sock is not None:
            with suppress(OSError):  # already closed: nothing is blocked on it
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        _raise_if_cancelled()
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):
        return _CancellableStream(self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str):
        return self._inner.get_extra_info(info)


class GuardedBackend(httpcore2.NetworkBackend):
    """Plain TCP, with the tenant address rule applied at connect time when ``host_allowed``
    is given (hosts it accepts skip the rule)."""

    def __init__(self, *, host_allowed: Callable[[str], bool] | None):
        self._inner = httpcore2.SyncBackend()
        self._host_allowed = host_allowed

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        target = host
        if self._host_allowed is not None and not self._host_allowed(host):
            try:
                addresses = endpoints.resolve_addresses(host, port)
            except endpoints.EndpointRefused as exc:
                raise AddressRefused(str(exc)) from None
            for address in addresses:
                reason = endpoints.address_refusal(address)
                if reason:
                    raise AddressRefused(
                        f"The tenant-supplied host {host!r} is refused: it resolves to {reason}."
                    )
            target = addresses[0]
        stream = self._inner.connect_tcp(target, port, timeout, local_address, socket_options)
        return _CancellableStream(stream)

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise AddressRefused("Model endpoints are reached over TCP only.")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class GuardedTransport(httpx2.HTTPTransport):
    """httpx's transport over ``GuardedBackend``: for URLs a tenant supplied.

    With ``shards`` above 1 its connections are split into that many pools, and each thread
    always uses the same one (assigned in turn on its first request). httpcore's pool makes a
    pass over all of its connections, under one lock, when a request starts and when its
    response closes; with a thousand runs of one worker waiting on the same endpoint that
    pass cost more CPU than the request itself. A shard holds the connections of its
    threads only, reused across their runs; the keep-alive budget is divided between shards.
    """

    def __init__(self, *, host_allowed: Callable[[str], bool] | None, shards: int = 1):
        super().__init__(limits=DEFAULT_CONNECTION_LIMITS)
        limits = DEFAULT_CONNECTION_LIMITS
        # httpx has no parameter for the network backend: the pools are built here with ours.
        self._pools = [
            httpcore2.ConnectionPool(
                ssl_context=httpx2.create_ssl_context(),
                max_connections=limits.max_connections,
                max_keepalive_connections=-(-limits.max_keepalive_connections // shards),
                keepalive_expiry=limits.keepalive_expiry,
                network_backend=GuardedBackend(host_allowed=host_allowed),
            )
            for _ in range(shards)
        ]
        self._thread_shard = threading.local()
        self._turns = itertools.count()

    @property
    def _pool(self) -> httpcore2.ConnectionPool:
        """The calling thread's pool (``HTTPTransport.handle_request`` sends through it)."""
        try:
            return self._pools[self._thread_shard.index]
        except AttributeError:
            self._thread_shard.index = next(self._turns) % len(self._pools)
            return self._pools[self._thread_shard.index]

    @_pool.setter
    def _pool(self, built) -> None:
        pass  # the pool ``HTTPTransport.__init__`` builds, without our backend: never used

    def close(self) -> None:
        for pool in self._pools:
            pool.close()

    def __exit__(self, *exc) -> None:
        self.close()


class ModelTransport(GuardedTransport):
    """One transport per endpoint and process (its connections in ``MODEL_POOL_SHARDS``
    pools); records every attempt of the current call."""

    def __init__(self, *, custom: bool, send_authorization: bool = True, shards: int = MODEL_POOL_SHARDS):
        super().__init__(host_allowed=endpoints.host_allowed if custom else None, shards=shards)
        self._custom = custom
        self._send_authorization = send_authorization

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        _raise_if_cancelled()
        state = _current.get()
        if self._custom:
            for name in PLATFORM_HEADERS:
                request.headers.pop(name, None)
        if not self._send_authorization:
            request.headers.pop("authorization", None)
        began = time.monotonic()
        try:
            response = super().handle_request(request)
        except Exception as exc:
            if state is not None:
                state.attempts.append(Attempt(None, _ms_since(began), _attempt_error(exc)))
            raise
        if state is not None:
            state.attempts.append(Attempt(response.status_code, _ms_since(began)))
        return response


def _attempt_error(exc: Exception) -> str:
    if isinstance(exc, CallCancelled):
        return "cancelled"
    if isinstance(exc, AddressRefused):
        return "address refused"
    if isinstance(exc, httpx2.TimeoutException):
        return "timeout"
    return f"connection error ({type(exc).__name__})"


def _ms_since(began: float) -> int:
    return int((time.monotonic() - began) * 1000)
