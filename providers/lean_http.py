"""What the lean paths (s3_lean, azure_lean) share: one urllib3 pool per endpoint, sent
through with no redirect and no urllib3 retry; one more try of a connection that could not
be opened, and up to three asks of a listing page answered 503 or cut, as botocore's and
the Azure SDK's own retries did on the paths they replace. Copies are retried by the
executor's one retry layer, not here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import urllib3
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from migrate.errors import Retryable
from providers.curl_http import CurlAnswer

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
# A listing page answered 503 or cut by a reset is asked again (the inventory has no retry
# layer of its own; botocore and the Azure SDK retried these inside the call).
PAGE_ATTEMPTS = 3


def endpoint_pool(
    origin: str,
    ca_bundle: str | None,
    connect_timeout: float,
    read_timeout: float,
    *,
    classes: tuple[type[urllib3.HTTPConnectionPool], type[urllib3.HTTPSConnectionPool]] = (
        urllib3.HTTPConnectionPool,
        urllib3.HTTPSConnectionPool,
    ),
) -> urllib3.HTTPConnectionPool:
    """The connection pool of one endpoint (`scheme://host:port`); TLS verified against
    `ca_bundle` for https. Requests go to the pool directly: no URL routing per request.
    `classes`: the pool classes for http and https (botocore's, for Expect: 100-continue)."""
    url = urllib3.util.parse_url(origin)
    kwargs: dict[str, Any] = {}
    pool_class: type[urllib3.HTTPConnectionPool] = classes[0]
    if url.scheme == "https":
        kwargs = {"cert_reqs": "CERT_REQUIRED", "ca_certs": ca_bundle}
        pool_class = classes[1]
    return pool_class(
        url.host or "",
        url.port,
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


def release(response: urllib3.BaseHTTPResponse | CurlAnswer) -> None:
    """Give a response's connection back to the pool when its body was read to the end;
    close it otherwise (unread bytes would be taken for the next answer)."""
    if response.length_remaining != 0:  # unread (or unknown) bytes left
        response.close()
    response.release_conn()


def with_page_retries(fetch: Callable[[], T]) -> T:
    """One listing page, asked again (up to PAGE_ATTEMPTS, 1-4 s apart) while the failure
    is Retryable; any other error, or the last one, is raised."""
    retrying = Retrying(
        stop=stop_after_attempt(PAGE_ATTEMPTS),
        wait=wait_exponential(multiplier=1, max=4),
        retry=retry_if_exception_type(Retryable),
        reraise=True,
    )
    return retrying(fetch)
