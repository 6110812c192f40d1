"""Which model endpoint an agent may talk to, with which key (DESIGN §7a).

Endpoints are defined by the operator in ``AUTOMATION_MODEL_ENDPOINTS`` (name → base URL,
the name of the environment variable holding its key, prices, retries, timeout); an agent
names one in ``runtime_config.endpoint``. Operator endpoints may be anywhere, loopback
included: the operator chose them. A tenant's own ``base_url`` is accepted only with
``AUTOMATION_ALLOW_CUSTOM_MODEL_ENDPOINTS``, only when every address its host resolves to
is a public one (unless the host is in ``AUTOMATION_CUSTOM_MODEL_ENDPOINT_ALLOWED_HOSTS``),
and it is only ever sent the tenant's own ``api_key``, never a platform key. The address
rule is checked when the agent is saved, when the run starts, and again on every
connection (``transport.GuardedBackend``), so a name that re-resolves inward later is
refused too.
"""

import ipaddress
import os
import socket
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from urllib.parse import urlsplit

from django.conf import settings

from .base import RuntimeFailure

DEFAULT_ENDPOINT = "default"
DEFAULT_MAX_RETRIES = 2
DEFAULT_TIMEOUT_SECONDS = 60.0
MAX_RETRIES_LIMIT = 10
MAX_TIMEOUT_SECONDS = 600.0
CUSTOM = "custom"


class EndpointRefused(RuntimeFailure):
    """The agent's endpoint configuration is not allowed; the message says why and what to do."""


@dataclass(frozen=True)
class Endpoint:
    name: str
    base_url: str
    api_key: str = field(default="", repr=False)
    input_price_per_million: Decimal = Decimal(0)
    output_price_per_million: Decimal = Decimal(0)
    max_retries: int = DEFAULT_MAX_RETRIES
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    custom: bool = False

    def cost(self, input_tokens: int, output_tokens: int) -> Decimal:
        million = Decimal(1_000_000)
        return (
            Decimal(input_tokens) * self.input_price_per_million
            + Decimal(output_tokens) * self.output_price_per_million
        ) / million


def operator_endpoints() -> dict:
    configured = settings.AUTOMATION_MODEL_ENDPOINTS
    return configured if isinstance(configured, dict) else {}


def _bounded_int(value, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise EndpointRefused(f"{what} must be a whole number from {low} to {high}, got {value!r}.")
    return int(value)


def _bounded_float(value, what: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low < value <= high:
        raise EndpointRefused(f"{what} must be a number of seconds above {low:g} and at most {high:g}.")
    return float(value)


def _price(value, what: str) -> Decimal:
    try:
        price = Decimal(str(value))
    except InvalidOperation:
        price = Decimal(-1)
    if not price.is_finite() or price < 0:
        raise EndpointRefused(f"{what} must be a non-negative number, got {value!r}.")
    return price


def _operator_endpoint(name: str, *, with_key: bool = True) -> Endpoint:
    spec = operator_endpoints()[name]
    where = f"Model endpoint {name!r} in AUTOMATION_MODEL_ENDPOINTS"
    if not isinstance(spec, dict) or not isinstance(spec.get("base_url"), str) or not spec["base_url"]:
        raise EndpointRefused(f"{where} needs a 'base_url'.")
    key_env = spec.get("api_key_env") or ""
    api_key = os.environ.get(key_env, "") if key_env else ""
    if with_key and key_env and not api_key:
        raise EndpointRefused(
            f"{where}: the environment variable {key_env} that should hold its key is not set."
        )
    return Endpoint(
        name=name,
        base_url=spec["base_url"],
        api_key=api_key,
        input_price_per_million=_price(spec.get("input_price_per_million", 0), f"{where}: input price"),
        output_price_per_million=_price(spec.get("output_price_per_million", 0), f"{where}: output price"),
        max_retries=_bounded_int(
            spec.get("max_retries", DEFAULT_MAX_RETRIES), f"{where}: max_retries", 0, MAX_RETRIES_LIMIT
        ),
        timeout_seconds=_bounded_float(
            spec.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS),
            f"{where}: timeout_seconds",
            0,
            MAX_TIMEOUT_SECONDS,
        ),
    )


def _defined() -> str:
    names = sorted(operator_endpoints())
    return ", ".join(names) if names else "none is defined"


def resolve(config: dict, *, with_key: bool = True) -> Endpoint:
    """The endpoint ``runtime_config`` names, or ``EndpointRefused`` saying why not.
    ``with_key=False`` checks the choice without needing the key (the web process has none)."""
    name = config.get("endpoint")
    base_url = config.get("base_url")
    if name is not None and base_url is not None:
        raise EndpointRefused("Give either runtime_config.endpoint (a named endpoint) or base_url, not both.")
    if name is not None:
        if not isinstance(name, str) or name not in operator_endpoints():
            raise EndpointRefused(f"Unknown model endpoint {name!r}; the operator defines: {_defined()}.")
        return _operator_endpoint(name, with_key=with_key)
    if base_url is not None:
        return _custom_endpoint(config)
    if DEFAULT_ENDPOINT in operator_endpoints():
        return _operator_endpoint(DEFAULT_ENDPOINT, with_key=with_key)
    raise EndpointRefused(
        f"The openai runtime needs runtime_config.endpoint, one of the operator's model endpoints ({_defined()})."
    )


def _custom_endpoint(config: dict) -> Endpoint:
    if not settings.AUTOMATION_ALLOW_CUSTOM_MODEL_ENDPOINTS:
        raise EndpointRefused(
            "Custom model endpoints (runtime_config.base_url) are turned off on this platform; "
            f"name one of the operator's endpoints in runtime_config.endpoint ({_defined()})."
        )
    base_url = check_custom_url(config["base_url"])
    api_key = config.get("api_key") or ""
    if not isinstance(api_key, str):
        raise EndpointRefused("runtime_config.api_key must be a string.")
    return Endpoint(
        name=CUSTOM,
        base_url=base_url,
        api_key=api_key,
        max_retries=_bounded_int(
            config.get("max_retries", DEFAULT_MAX_RETRIES), "runtime_config.max_retries", 0, MAX_RETRIES_LIMIT
        ),
        timeout_seconds=_bounded_float(
            config.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS),
            "runtime_config.timeout_seconds",
            0,
            MAX_TIMEOUT_SECONDS,
        ),
        custom=True,
    )


def host_allowed(host: str) -> bool:
    allowed = {h.strip().lower().rstrip(".") for h in settings.AUTOMATION_CUSTOM_MODEL_ENDPOINT_ALLOWED_HOSTS}
    return host.lower().rstrip(".") in allowed


def address_refusal(address: str) -> str:
    """Why a custom endpoint may not connect to ``address``; empty when it is a public address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return f"{ip} is a loopback address"
    if ip.is_link_local:
        return f"{ip} is a link-local address (cloud metadata services live there)"
    if ip.is_private:
        return f"{ip} is a private network address"
    if not ip.is_global or ip.is_multicast:
        return f"{ip} is not a public address"
    return ""


def resolve_addresses(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise EndpointRefused(f"The model endpoint host {host!r} does not resolve.") from exc
    return list(dict.fromkeys(info[4][0] for info in infos))


def check_custom_url(url) -> str:
    """``url`` when a tenant may use it as a model endpoint, else ``EndpointRefused``."""
    if not isinstance(url, str) or len(url) > 500:
        raise EndpointRefused("runtime_config.base_url must be an http(s) URL of at most 500 characters.")
    try:
        parts = urlsplit(url.strip())
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise EndpointRefused("runtime_config.base_url is not a valid URL.") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EndpointRefused("runtime_config.base_url must be an http(s) URL with a host.")
    if parts.username or parts.password:
        raise EndpointRefused(
            "runtime_config.base_url must not carry credentials; use runtime_config.api_key."
        )
    if not host_allowed(parts.hostname):
        for address in resolve_addresses(parts.hostname, port):
            reason = address_refusal(address)
            if reason:
                raise EndpointRefused(
                    f"The custom model endpoint {parts.hostname!r} is refused: it resolves to {reason}. "
                    "Ask the operator for a named endpoint (AUTOMATION_MODEL_ENDPOINTS) to reach local models."
                )
    return url.strip()


def config_problem(runtime: str, config) -> str:
    """What is wrong with an agent's runtime and ``runtime_config``; empty when it can run."""
    if not isinstance(config, dict):
        return "runtime_config must be a JSON object."
    if runtime != "openai":
        name = config.get("endpoint")
        if name is not None and name not in operator_endpoints():
            return f"Unknown model endpoint {name!r}; the operator defines: {_defined()}."
        return ""
    try:
        resolve(config, with_key=False)
    except EndpointRefused as exc:
        return str(exc)
    if not config.get("model"):
        return "The openai runtime needs a 'model' in runtime_config."
    return ""
