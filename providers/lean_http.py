"""What the lean paths (s3_lean, azure_lean) share: one urllib3 pool per endpoint, sent
through with no redirect and no urllib3 retry, and one more try of a connection that could
not be opened, as botocore's and the Azure SDK's own retries did on the paths they replace.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import urllib3

T = TypeVar("T")

# Nothing was sent when these happen: trying again cannot duplicate a request.
CONNECT_FAILURES = (
    urllib3.exceptions.NewConnectionError,
    urllib3.exceptions.ConnectTimeoutError,
)
CONNECT_ATTEMPTS = 2
CONNECT_RETRY_WAIT = 1.0
# Connections kept per endpoint: above the threads that may use one at once (copies, reads
# ahead, part senders), so that none is dropped and reopened.
POOL_CONNECTIONS = 256


def endpoint_pool(
    origin: str, ca_bundle: str | None, connect_timeout: float, read_timeout: float
) -> urllib3.HTTPConnectionPool:
    """The connection pool of one endpoint (`scheme://host:port`); TLS verified against
    `ca_bundle` for https. Requests go to the pool directly: no URL routing per request."""
    kwargs: dict[str, Any] = {}
    if origin.startswith("https:"):
        kwargs = {"cert_reqs": "CERT_REQUIRED", "ca_certs": ca_bundle}
    return urllib3.connection_from_url(
        origin,
        maxsize=POOL_CONNECTIONS,
        timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
        retries=False,
        **kwargs,
    )


def send_with_connect_retry(
    send: Callable[[], T], on_failure: Callable[[urllib3.exceptions.HTTPError], None]
) -> T:
    """`send()`, tried once more after a short wait when the connection could not be
    opened. `on_failure` sees every failed attempt (the guard records it); the last
    failure is raised."""
    for attempt in range(1, CONNECT_ATTEMPTS + 1):
        try:
            return send()
        except urllib3.exceptions.HTTPError as exc:
            on_failure(exc)
            if attempt == CONNECT_ATTEMPTS or not isinstance(exc, CONNECT_FAILURES):
                raise
            time.sleep(CONNECT_RETRY_WAIT)
    raise AssertionError("unreachable")


def release(response: urllib3.BaseHTTPResponse) -> None:
    """Give a response's connection back to the pool when its body was read to the end;
    close it otherwise (unread bytes would be taken for the next answer)."""
    if response.length_remaining != 0:  # unread (or unknown) bytes left
        response.close()
    response.release_conn()
