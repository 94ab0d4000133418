"""The routing guard: every request of every adapter goes to a host the plan allows (before
a plan exists, a host a plan would allow for the site read: `migrate.session.site_guard`).

Adapters call `check(method, url)` at their HTTP stack's lowest hook (botocore's
`before-send`, an azure-core pipeline policy, libcloud's connection), for every request and
every redirect, before a byte of the body leaves; and `record(...)` after the answer. The
hosts recorded are the route attestation that `migrate status --routes` and the report show.

Refused, whatever the allowlist says:
- a host that is not on the allowlist (exact host, with port when not the scheme's
  default; never a wildcard: a plan names each host, each bucket's under virtual-host
  addressing);
- global and accelerated endpoints that hide the region (s3.amazonaws.com, ...);
- plain HTTP, except to loopback or to a host whose site declares `allow_http`;
- at construction: a proxy in the environment that no site declares.
"""

from __future__ import annotations

import ipaddress
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatch
from urllib.parse import SplitResult, urlsplit

from migrate.errors import GlobalEndpointRefused, RouteRefused

# Endpoints whose hostname does not say the region: a request there may be served anywhere.
GLOBAL_ENDPOINTS = (
    "s3.amazonaws.com",
    "s3-external-1.amazonaws.com",
    "s3-accelerate.amazonaws.com",
    "s3-accelerate.dualstack.amazonaws.com",
    "storage.googleapis.com",
    "commondatastorage.googleapis.com",  # GCS's older name for the same global endpoint
)
_GLOBAL_SUFFIXES = (
    ".s3-accelerate.amazonaws.com",
    ".s3-accelerate.dualstack.amazonaws.com",
    ".s3.amazonaws.com",
    ".storage.googleapis.com",  # GCS's virtual-hosted form, BUCKET.storage.googleapis.com
    ".commondatastorage.googleapis.com",
)


def proxy_variables(env: Mapping[str, str]) -> list[str]:
    """The environment's proxy variables for HTTP(S), in any case (`Https_Proxy` too): the
    standard library reads them so for requests and botocore."""
    return sorted(
        name
        for name, value in env.items()
        if value and name.lower() in ("http_proxy", "https_proxy", "all_proxy")
    )


_DEFAULT_PORTS = {"http": 80, "https": 443}


def host_of(url: str) -> tuple[str, str, int]:
    """(scheme, lowercase host, port) of a URL."""
    parts = urlsplit(url)
    scheme = (parts.scheme or "https").lower()
    host = (parts.hostname or "").lower().rstrip(".")
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme, 443)
    except ValueError:
        raise RouteRefused(f"request to {url[:80]!r} refused: invalid port") from None
    return scheme, host, port


def _host_key(scheme: str, host: str, port: int) -> str:
    # An IPv6 address keeps its brackets: `[2001:db8::5]:8333`, never `2001:db8::5:8333`,
    # which would read as another address on the default port.
    shown = f"[{host}]" if ":" in host else host
    return shown if port == _DEFAULT_PORTS.get(scheme) else f"{shown}:{port}"


def endpoint_host(url: str) -> str:
    """The allowlist form of an endpoint: host, or host:port when the port is not default
    (an IPv6 address in brackets)."""
    return _host_key(*host_of(url))


def bare_host(key: str) -> str:
    """The host of an allowlist entry, its port left out (an IPv6 address without its
    brackets)."""
    if key.startswith("["):
        return key[1:].split("]", 1)[0]
    return key.rsplit(":", 1)[0] if key.count(":") == 1 else key


def is_loopback(host: str) -> bool:
    host = host.rstrip(".")  # as the guard reads a host: `127.0.0.1.` is 127.0.0.1
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_global_endpoint(host: str, extra: Iterable[str] = ()) -> bool:
    """`extra`: the catalog's global endpoints, as fnmatch patterns."""
    host = bare_host(host.lower())
    if host in GLOBAL_ENDPOINTS or host.endswith(_GLOBAL_SUFFIXES):
        return True
    return any(fnmatch(host, pattern.lower()) for pattern in extra)


def with_scheme(url: str) -> str:
    """An endpoint or proxy URL written without a scheme (botocore and the proxy variables
    take `host:port`) is read as http://."""
    return url if "://" in url else f"http://{url}"


def split_url(url: str) -> SplitResult:
    """The parts of an endpoint or proxy URL (`with_scheme`). ValueError where no parser
    reads it."""
    return urlsplit(with_scheme(url))


def _proxy_address(url: str) -> tuple[str, str, int | None] | str:
    """Scheme, host and port of a proxy URL (its credentials, if any, left out); the text
    itself where it cannot be read."""
    try:
        parts = split_url(url)
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").lower().rstrip(".")
        return (scheme, host, parts.port or _DEFAULT_PORTS.get(scheme))
    except ValueError:
        return url


def proxy_host(url: str) -> str:
    """A proxy's host as an allowlist names it, as an endpoint's: a plan allows the proxies
    its sites declare."""
    return endpoint_host(with_scheme(url))


def undeclared_proxies(declared: Iterable[str], env: Mapping[str, str] | None = None) -> list[str]:
    """Proxy variables set in the environment to a proxy no site declares (the same
    scheme, host and port: the variable may hold the proxy's credentials, the sites file
    may not)."""
    env = os.environ if env is None else env
    allowed = {_proxy_address(d) for d in declared}
    return [name for name in proxy_variables(env) if _proxy_address(env[name]) not in allowed]


@dataclass
class _Use:
    requests: int
    bytes_sent: int
    first_seen: str
    last_seen: str


class RoutingGuard:
    """Implements providers.base.RequestGuard for one run."""

    def __init__(
        self,
        allowlist: Iterable[str],
        *,
        http_allowed: Iterable[str] = (),
        declared_proxies: Iterable[str] = (),
        global_endpoints: Iterable[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._exact = {a.lower() for a in allowlist}
        self._http = {h.lower() for h in http_allowed}
        self._global = tuple(global_endpoints)
        self._lock = threading.Lock()
        self._uses: dict[tuple[str, str], _Use] = {}
        proxies = undeclared_proxies(declared_proxies, env)
        if proxies:
            raise RouteRefused(
                f"proxy set in the environment ({', '.join(proxies)}) is not declared by any site",
                hint='unset it, or declare it with `proxy = "..."` in the site that needs it',
            )

    def allowed(self, host_port: str) -> bool:
        return host_port in self._exact

    def check(self, method: str, url: str) -> None:
        scheme, host, port = host_of(url)
        key = _host_key(scheme, host, port)
        if is_global_endpoint(host, self._global):
            raise GlobalEndpointRefused(
                f"{method} to {key} refused: a global endpoint that does not say where "
                "the data is served",
                hint="use the regional endpoint of the site's region",
            )
        if not self.allowed(key):
            raise RouteRefused(
                f"{method} to {key} refused: host not on the allowlist",
                hint="a redirect or a misconfigured endpoint; check the sites file and the "
                "plan's allowlist",
            )
        if scheme != "https" and not (is_loopback(host) or key in self._http or host in self._http):
            raise RouteRefused(
                f"{method} to {key} refused: plain HTTP outside loopback",
                hint="use https, or declare allow_http = true for a self-hosted site",
            )

    def record(self, method: str, url: str, sent_bytes: int, status: int | None) -> None:
        key = endpoint_host(url)
        scheme = host_of(url)[0]
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self._lock:
            use = self._uses.get((key, scheme))
            if use is None:
                self._uses[(key, scheme)] = _Use(1, sent_bytes, now, now)
            else:
                use.requests += 1
                use.bytes_sent += sent_bytes
                use.last_seen = now

    def drain(self) -> list[tuple[str, str, int, int, str, str]]:
        """The uses recorded since the last drain: (host, scheme, requests, bytes, first, last)."""
        with self._lock:
            out = [
                (h, s, u.requests, u.bytes_sent, u.first_seen, u.last_seen)
                for (h, s), u in sorted(self._uses.items())
            ]
            self._uses.clear()
        return out
