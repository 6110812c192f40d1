"""A small Microsoft Graph client: app-only tokens from ``msal``, plain HTTP from ``requests``.

- Tokens: ``msal.ConfidentialClientApplication`` with client credentials. msal keeps the
  token in its in-memory cache and asks for a new one 5 minutes before it expires; a 401 from
  Graph (a token revoked early) drops the cache and the call is tried once more.
- The authority is ``MS_GRAPH_AUTHORITY_URL``/``MS_GRAPH_TENANT_ID`` with authority
  validation and instance discovery off: msal would otherwise ask login.microsoftonline.com
  whether the authority is known, which an air-gapped deployment (or a test stub) cannot answer.
- Throttling: 429 and 503 (and 504) are retried after ``Retry-After`` (seconds or an HTTP date)
  up to ``MS_GRAPH_MAX_RETRIES`` times; a wait longer than ``MS_GRAPH_MAX_RETRY_AFTER_SECONDS``
  is not slept in-line but raised as ``GraphThrottled`` for the caller to schedule.
- Links Graph returns (``@odata.nextLink``, ``@odata.deltaLink``) are followed only when they
  point under ``MS_GRAPH_BASE_URL``, so a stored link can never send our token elsewhere.
"""

import email.utils
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import msal
import requests
from django.conf import settings

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
RETRIED_STATUSES = {429, 503, 504}


class GraphError(Exception):
    """A Graph call that did not succeed; ``status`` is the HTTP status (``None``: no answer)."""

    def __init__(self, message: str, *, status: int | None = None, code: str = ""):
        super().__init__(message)
        self.status = status
        self.code = code


class GraphThrottled(GraphError):
    """Graph asked us to wait ``retry_after`` seconds, longer than we wait in-line."""

    def __init__(self, message: str, *, status: int, retry_after: float):
        super().__init__(message, status=status, code="throttled")
        self.retry_after = retry_after


class GraphNotConfigured(GraphError):
    """``MS_GRAPH_TENANT_ID``, ``MS_GRAPH_CLIENT_ID`` or ``MS_GRAPH_CLIENT_SECRET`` is empty."""


@dataclass(frozen=True)
class GraphConfig:
    tenant_id: str
    client_id: str
    client_secret: str
    base_url: str
    authority_url: str
    ca_bundle: str
    timeout: float
    max_retries: int
    max_retry_after: float

    @classmethod
    def from_settings(cls) -> "GraphConfig":
        return cls(
            tenant_id=settings.MS_GRAPH_TENANT_ID,
            client_id=settings.MS_GRAPH_CLIENT_ID,
            client_secret=settings.MS_GRAPH_CLIENT_SECRET,
            base_url=settings.MS_GRAPH_BASE_URL.rstrip("/"),
            authority_url=settings.MS_GRAPH_AUTHORITY_URL.rstrip("/"),
            ca_bundle=settings.MS_GRAPH_CA_BUNDLE,
            timeout=settings.MS_GRAPH_TIMEOUT_SECONDS,
            max_retries=settings.MS_GRAPH_MAX_RETRIES,
            max_retry_after=settings.MS_GRAPH_MAX_RETRY_AFTER_SECONDS,
        )

    @property
    def missing(self) -> list[str]:
        names = {
            "MS_GRAPH_TENANT_ID": self.tenant_id,
            "MS_GRAPH_CLIENT_ID": self.client_id,
            "MS_GRAPH_CLIENT_SECRET": self.client_secret,
        }
        return [name for name, value in names.items() if not value]


class GraphSession(requests.Session):
    """One HTTP session for msal and for Graph, with our CA bundle and timeout on every request.

    Per request, because requests lets ``REQUESTS_CA_BUNDLE`` in the environment override a
    session-wide ``verify``; the operator's ``MS_GRAPH_CA_BUNDLE`` must win.
    """

    def __init__(self, *, verify, timeout: float):
        super().__init__()
        self.graph_verify, self.graph_timeout = verify, timeout

    def request(self, method, url, **kwargs):
        kwargs.setdefault("verify", self.graph_verify)
        kwargs.setdefault("timeout", self.graph_timeout)
        return super().request(method, url, **kwargs)


class GraphClient:
    def __init__(self, config: GraphConfig, *, sleep=time.sleep):
        self.config = config
        self.sleep = sleep
        self.session = GraphSession(verify=config.ca_bundle or True, timeout=config.timeout)
        self._app: msal.ConfidentialClientApplication | None = None
        self._lock = threading.Lock()

    def _msal_app(self) -> msal.ConfidentialClientApplication:
        with self._lock:
            if self._app is None:
                self._app = msal.ConfidentialClientApplication(
                    self.config.client_id,
                    client_credential=self.config.client_secret,
                    authority=f"{self.config.authority_url}/{self.config.tenant_id}",
                    validate_authority=False,
                    instance_discovery=False,
                    http_client=self.session,
                )
            return self._app

    def token(self) -> str:
        if self.config.missing:
            raise GraphNotConfigured(
                f"Microsoft Graph is not configured: set {', '.join(self.config.missing)}."
            )
        try:
            result = self._msal_app().acquire_token_for_client(scopes=[GRAPH_SCOPE])
        except (ValueError, requests.RequestException) as exc:  # authority discovery failed
            raise GraphError(f"Could not reach the Microsoft identity platform: {exc}") from exc
        if "access_token" not in result:
            raise GraphError(
                f"No Graph token: {result.get('error', 'error')}: {result.get('error_description', '')}".strip(),
                code=str(result.get("error", "")),
            )
        return result["access_token"]

    def url(self, path_or_link: str) -> str:
        if not path_or_link.startswith(("http://", "https://")):
            return f"{self.config.base_url}/{path_or_link.lstrip('/')}"
        base, link = urlsplit(self.config.base_url), urlsplit(path_or_link)
        if (link.scheme, link.netloc) != (base.scheme, base.netloc) or not link.path.startswith(base.path):
            raise GraphError(f"Refusing to follow a link outside {self.config.base_url}.")
        return path_or_link

    def request(self, method: str, path_or_link: str, *, json=None, params=None, headers=None):
        """The decoded JSON answer (``None`` for an empty one); raises ``GraphError``."""
        url = self.url(path_or_link)
        reauthorized = False
        attempt = 0
        while True:
            request_headers = {"Authorization": f"Bearer {self.token()}", **(headers or {})}
            try:
                response = self.session.request(
                    method,
                    url,
                    json=json,
                    params=params,
                    headers=request_headers,
                    timeout=self.config.timeout,
                )
            except requests.RequestException as exc:
                if attempt >= self.config.max_retries:
                    raise GraphError(f"{method} {path_or_link}: Graph did not answer: {exc}") from exc
                attempt += 1
                self.sleep(min(2**attempt, self.config.max_retry_after))
                continue
            if response.status_code == 401 and not reauthorized:
                reauthorized = True
                self._msal_app().remove_tokens_for_client()
                continue
            if response.status_code in RETRIED_STATUSES:
                wait = retry_after_seconds(response.headers.get("Retry-After"), default=2 ** (attempt + 1))
                if attempt >= self.config.max_retries or wait > self.config.max_retry_after:
                    raise GraphThrottled(
                        f"{method} {path_or_link}: Graph answered {response.status_code}; retry after {wait:.0f} s.",
                        status=response.status_code,
                        retry_after=wait,
                    )
                attempt += 1
                self.sleep(wait)
                continue
            if response.status_code >= 400:
                code, message = graph_error(response)
                raise GraphError(
                    f"{method} {path_or_link}: {response.status_code} {code}: {message}".strip(),
                    status=response.status_code,
                    code=code,
                )
            return response.json() if response.content else None


def retry_after_seconds(value: str | None, *, default: float) -> float:
    """``Retry-After`` as seconds: a number, or an HTTP date; ``default`` when absent or unreadable."""
    if not value:
        return float(default)
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return float(default)


def graph_error(response: requests.Response) -> tuple[str, str]:
    try:
        error = response.json().get("error") or {}
    except ValueError:
        return "", response.text[:200]
    if not isinstance(error, dict):
        return "", str(error)[:200]
    return str(error.get("code", "")), str(error.get("message", ""))[:300]


_clients: dict[GraphConfig, GraphClient] = {}
_clients_lock = threading.Lock()


def client() -> GraphClient:
    """The process's client for the current settings (one msal token cache per configuration)."""
    config = GraphConfig.from_settings()
    with _clients_lock:
        if config not in _clients:
            _clients[config] = GraphClient(config)
        return _clients[config]
