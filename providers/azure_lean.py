"""Ranged reads of blobs (Get Blob) without azure-core's pipeline, for Azure sites read with
an account key or a SAS and no proxy.

Why: a copy from Azure spends most of its client CPU in the SDK's per-request machinery
(a dozen pipeline policies, `requests`, response deserialization), about 4x rclone's CPU in
bench scenario 3. The SDK also reads a range as 4 MiB GETs, each held whole in memory
before it is copied into the part buffer. Here a range is one GET whose body is read
straight into the caller's buffer. Everything else (listing, HEAD, writes) stays on the SDK.

The same guarantees as the SDK path:
- signed by the SDK's own Shared Key policy (or carrying the site's SAS), with the API
  version the SDK speaks;
- sent by urllib3 with TLS verified against the same CA bundle as `requests` (certifi), no
  redirect followed, no retry (the executor's retry layer decides), the same timeouts;
- every request checked by the RequestGuard before a byte leaves, and recorded after, under
  its URL without the query (a SAS signature travels there);
- an error answer is returned as (status, Azure error code, message) for the adapter's one
  status mapping; a transport failure raises urllib3's exception for the adapter's `_fail`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from email.utils import formatdate
from typing import Any, cast
from urllib.parse import quote, urlsplit

import urllib3
from azure.core.pipeline import PipelineContext, PipelineRequest
from azure.core.rest import HttpRequest

# The SDK's signer: the exact string-to-sign its own requests use (untyped there).
from azure.storage.blob._shared.authentication import (
    SharedKeyCredentialPolicy as _SdkSharedKeyPolicy,
)
from requests.utils import DEFAULT_CA_BUNDLE_PATH

from providers.base import RequestGuard

_XML_MESSAGE = re.compile(r"<Message>([^<]*)</Message>")


class AzureAnswer:
    """One Get Blob answer: its status, headers, and (for 2xx) the body, unread."""

    def __init__(self, response: urllib3.BaseHTTPResponse) -> None:
        self.response = response
        self.status = response.status
        self.headers = response.headers

    def error(self) -> tuple[int, str | None, str]:
        """(status, Azure error code, the service's message lowercased) of an error answer."""
        body = self.response.data[:65536].decode("utf-8", "replace") if self.response.data else ""
        found = _XML_MESSAGE.search(body)
        return self.status, self.headers.get("x-ms-error-code"), (found[1] if found else "").lower()

    def read(self, size: int) -> bytes:
        data: bytes = self.response.read(size)
        return data

    def close(self) -> None:
        if self.response.length_remaining != 0:  # unread (or unknown) bytes left
            self.response.close()  # the connection cannot be reused
        self.response.release_conn()


class LeanBlobReads:
    """Signed ranged GETs of blobs of one account (see the module doc)."""

    def __init__(
        self,
        endpoint: str,
        account: str,
        account_key: str | None,
        sas: str | None,
        api_version: str,
        guard: RequestGuard | None,
        *,
        connect_timeout: float,
        read_timeout: float,
        max_connections: int = 32,
    ) -> None:
        parts = urlsplit(endpoint)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._base = f"{self._origin}{parts.path.rstrip('/')}"
        self._sas = sas
        self._signer: Any = None
        if account_key and not sas:
            self._signer = cast(Any, _SdkSharedKeyPolicy)(account, account_key)
        self._version = api_version
        self._guard = guard
        kwargs: dict[str, Any] = {}
        if parts.scheme == "https":
            kwargs = {"cert_reqs": "CERT_REQUIRED", "ca_certs": DEFAULT_CA_BUNDLE_PATH}
        self._pool = urllib3.connection_from_url(
            self._origin,
            maxsize=max_connections,
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            retries=False,
            **kwargs,
        )

    def close(self) -> None:
        self._pool.close()

    def get(
        self, container: str, key: str, start: int, end: int | None, etag: str | None
    ) -> AzureAnswer:
        """GET bytes [start, end) of a blob (to its end when `end` is None), conditioned
        on `etag` (quoted) when given. The answer's body is left unread."""
        url = f"{self._base}/{container}/{quote(key, safe='~/')}"
        headers = {
            "x-ms-version": self._version,
            "x-ms-date": formatdate(usegmt=True),
            "x-ms-range": f"bytes={start}-{'' if end is None else end - 1}",
        }
        if etag is not None:
            headers["If-Match"] = etag
        if self._signer is not None:
            request = PipelineRequest(
                HttpRequest("GET", url, headers=headers), PipelineContext(None)
            )
            self._signer.on_request(request)
            headers = dict(request.http_request.headers)
        sent = f"{url}?{self._sas}" if self._sas else url
        if self._guard is not None:
            self._guard.check("GET", url)
        try:
            response = self._pool.urlopen(
                "GET",
                sent[len(self._origin) :],
                headers=headers,
                redirect=False,
                preload_content=False,
                decode_content=False,  # the stored bytes: a gzip-encoded blob is not inflated
            )
        except urllib3.exceptions.HTTPError:
            if self._guard is not None:
                self._guard.record("GET", url, 0, None)
            raise
        if self._guard is not None:
            self._guard.record("GET", url, 0, response.status)
        return AzureAnswer(response)


def header_map(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers by lowercased name (urllib3 keeps the case the service sent)."""
    return {k.lower(): v for k, v in headers.items()}
