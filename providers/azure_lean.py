"""Ranged reads of blobs (Get Blob) and listings (List Blobs) without azure-core's pipeline,
for Azure sites read with an account key or a SAS and no proxy.

Why: a copy from Azure spends most of its client CPU in the SDK's per-request machinery
(a dozen pipeline policies, `requests`, response deserialization), about 4x rclone's CPU in
bench scenario 3. The SDK also reads a range as 4 MiB GETs, each held whole in memory
before it is copied into the part buffer. Here a range is one GET whose body is read
straight into the caller's buffer, and a listing page is parsed by ElementTree instead of
the SDK's generic deserializer; an empty range is a HEAD (Get Blob Properties) proving
the blob's version. Everything else (`head`, writes) stays on the SDK.

The same guarantees as the SDK path:
- signed with Shared Key (`SharedKeySigner`, the string-to-sign of the SDK's own policy,
  checked against it in tests/providers/test_azure_shared_key.py) or carrying the site's SAS;
  the API version is `API_VERSION`. Not importing azure-storage-blob here spares a copy
  from Azure ~0.2 s of start-up in each process (bench/RESULTS.md);
- sent by urllib3 (a range of at most 1 MiB by libcurl, providers/curl_http.py) with TLS
  verified against the same CA bundle as `requests` (certifi), no redirect followed, no
  proxy, no retry (the executor's retry layer decides), the same timeouts;
- every request checked by the RequestGuard before a byte leaves, and recorded after, under
  its URL without the query (a SAS signature travels there);
- an error answer is returned as (status, Azure error code, message) for the adapter's one
  status mapping; a transport failure raises urllib3's exception for the adapter's `_fail`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import formatdate
from urllib.parse import quote, unquote, urlsplit

import urllib3
from requests.utils import DEFAULT_CA_BUNDLE_PATH

from providers.base import RequestGuard
from providers.curl_http import SMALL_BODY, CurlAnswer, CurlSender
from providers.lean_http import endpoint_pool, release, send_with_connect_retry

# The Blob service version these requests speak: the one azure-storage-blob 12.31 (the
# version installed here) speaks by default, so both paths of an adapter speak one version;
# pinned, not read from the SDK, whose import is what this module avoids. A test checks that
# the installed SDK knows it. An older SDK speaks an older version on its own path.
API_VERSION = "2026-10-06"

# The standard headers of a Shared Key string-to-sign, in its order (Date and Range stay
# empty here: the requests carry x-ms-date and x-ms-range).
_SIGNED_HEADERS = (
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
)


# The x-ms- headers this module sends.
_X_MS = frozenset({"x-ms-date", "x-ms-range", "x-ms-version"})


class SharedKeySigner:
    """The Authorization header of Azure Storage's Shared Key scheme for one account, built
    as azure-storage-blob's SharedKeyCredentialPolicy builds it for the requests this
    module sends, and only those (the signer refuses others): no Range header, x-ms-
    headers among `_X_MS` (plain string order is the service's order for them), each
    query parameter once."""

    def __init__(self, account: str, account_key: str) -> None:
        self._account = account
        self._key = base64.b64decode(account_key)

    def authorization(self, method: str, url: str, headers: Mapping[str, str]) -> str:
        """For a request to `url` (its query already encoded) with these headers."""
        named = {k.lower(): v for k, v in headers.items() if v}
        if named.get("content-length") == "0":
            del named["content-length"]
        parts = urlsplit(url)
        fields = sorted(
            (n, v) for n, _, v in (p.partition("=") for p in parts.query.split("&") if p)
        )
        unknown = {k for k in named if k.startswith("x-ms-")} - _X_MS
        if "range" in named or unknown or len({n for n, _ in fields}) != len(fields):
            # Where the SDK's string-to-sign and this one part: not signed at all.
            raise ValueError("a request this signer was not written for")
        text = [method, *(named.get(h, "") for h in _SIGNED_HEADERS)]
        text += [f"{k}:{v}" for k, v in sorted(named.items()) if k.startswith("x-ms-")]
        resource = f"/{self._account}{parts.path}"
        for name, value in fields:
            resource += f"\n{name.lower()}:{unquote(value)}"
        text.append(resource)
        digest = hmac.new(self._key, "\n".join(text).encode("utf-8"), hashlib.sha256).digest()
        return f"SharedKey {self._account}:{base64.b64encode(digest).decode('ascii')}"


def can_sign(account_key: str | None, sas: str | None) -> bool:
    """Whether the lean reads can authenticate for these credentials."""
    return bool(sas) or bool(account_key)


_XML_MESSAGE = re.compile(r"<Message>([^<]*)</Message>")


class AzureAnswer:
    """One Get Blob answer: its status, headers, and (for 2xx) the body, unread."""

    def __init__(self, response: urllib3.BaseHTTPResponse | CurlAnswer) -> None:
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
        release(self.response)


@dataclass(frozen=True)
class ListedBlob:
    """One blob of a List Blobs page, as the service wrote it (header-style values)."""

    name: str
    size: int
    etag: str | None
    last_modified: str | None
    content_md5: str | None  # base64
    content_type: str | None
    content_encoding: str | None
    cache_control: str | None
    content_disposition: str | None
    content_language: str | None
    tier: str | None
    metadata: dict[str, str]
    tag_count: int = 0
    blob_type: str | None = None


def parse_blob_list(body: bytes) -> tuple[list[ListedBlob], str | None]:
    """A List Blobs answer: its blobs, and the marker of the next page (None at the end).
    A name the service could not put in XML comes percent-encoded (Encoded="true")."""
    root = ET.fromstring(body)
    if root.tag != "EnumerationResults" or root.find("Blobs") is None:
        raise ValueError(f"not a listing: <{root.tag}>")  # a proxy's page is not "empty"
    blobs: list[ListedBlob] = []
    for blob in root.iterfind("Blobs/Blob"):
        name_el = blob.find("Name")
        name = (name_el.text or "") if name_el is not None else ""
        if name_el is not None and name_el.get("Encoded", "").lower() == "true":
            name = unquote(name)
        props_el = blob.find("Properties")
        props = {p.tag: p.text for p in props_el} if props_el is not None else {}
        meta_el = blob.find("Metadata")
        metadata = {m.tag: m.text or "" for m in meta_el} if meta_el is not None else {}
        blobs.append(
            ListedBlob(
                name=name,
                size=int(props.get("Content-Length") or ""),  # missing: ValueError, never 0
                etag=props.get("Etag"),
                last_modified=props.get("Last-Modified"),
                content_md5=props.get("Content-MD5") or None,
                content_type=props.get("Content-Type") or None,
                content_encoding=props.get("Content-Encoding") or None,
                cache_control=props.get("Cache-Control") or None,
                content_disposition=props.get("Content-Disposition") or None,
                content_language=props.get("Content-Language") or None,
                tier=props.get("AccessTier") or None,
                metadata=metadata,
                tag_count=int(props.get("TagCount") or 0),
                blob_type=props.get("BlobType") or None,
            )
        )
    return blobs, root.findtext("NextMarker") or None


class LeanBlobReads:
    """Signed ranged GETs of blobs of one account (see the module doc)."""

    def __init__(
        self,
        endpoint: str,
        account: str,
        account_key: str | None,
        sas: str | None,
        guard: RequestGuard | None,
        *,
        connect_timeout: float,
        read_timeout: float,
    ) -> None:
        parts = urlsplit(endpoint)
        # Lowercased as urllib3 and the signers have it (libcurl would keep its case).
        self._origin = f"{parts.scheme}://{parts.netloc.lower()}"
        self._base = f"{self._origin}{parts.path.rstrip('/')}"
        self._sas = sas
        self._signer: SharedKeySigner | None = None
        if account_key and not sas:
            self._signer = SharedKeySigner(account, account_key)
        self._guard = guard
        # The bundle `requests` verifies with on the SDK path (certifi; trust_env is off).
        self._pool = endpoint_pool(
            self._origin, DEFAULT_CA_BUNDLE_PATH, connect_timeout, read_timeout
        )
        # A small range is read through libcurl (providers/curl_http.py): less CPU each.
        self._curl = CurlSender(DEFAULT_CA_BUNDLE_PATH, connect_timeout, read_timeout)

    def close(self) -> None:
        self._pool.close()
        self._curl.close()

    def list_page(self, container: str, prefix: str, marker: str | None, page: int) -> AzureAnswer:
        """GET one List Blobs page of a container (metadata included); body preloaded."""
        params = {"restype": "container", "comp": "list", "include": "metadata"}
        params["maxresults"] = str(page)
        if prefix:
            params["prefix"] = prefix
        if marker:
            params["marker"] = marker
        query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
        return self._send(f"{self._base}/{container}", query, {}, preload=True)

    def get(
        self, container: str, key: str, start: int, end: int | None, etag: str | None
    ) -> AzureAnswer:
        """GET bytes [start, end) of a blob (to its end when `end` is None), conditioned
        on `etag` (quoted) when given. The answer's body is left unread."""
        url = f"{self._base}/{container}/{quote(key, safe='~/')}"
        headers = {"x-ms-range": f"bytes={start}-{'' if end is None else end - 1}"}
        if etag is not None:
            headers["If-Match"] = etag
        small = None if end is None else end - start
        return self._send(url, "", headers, preload=False, small=small)

    def properties(self, container: str, key: str, etag: str) -> AzureAnswer:
        """HEAD a blob (Get Blob Properties) if it is still the version of `etag` (quoted):
        how an empty range proves that the blob is still the version listed."""
        url = f"{self._base}/{container}/{quote(key, safe='~/')}"
        return self._send(url, "", {"If-Match": etag}, preload=True, method="HEAD")

    def _send(
        self,
        url: str,
        query: str,
        headers: dict[str, str],
        preload: bool,
        small: int | None = None,
        method: str = "GET",
    ) -> AzureAnswer:
        """Sign (or add the SAS to) one GET (or HEAD) and send it; `url` has no query,
        `query` is its own query, already encoded. `small`: the most bytes the answer of a
        GET holds, when the caller knows; at most 1 MiB, it is read through libcurl."""
        headers = {"x-ms-version": API_VERSION, "x-ms-date": formatdate(usegmt=True), **headers}
        full = f"{url}?{query}" if query else url
        if self._signer is not None:
            headers["Authorization"] = self._signer.authorization(method, full, headers)
        if self._sas:
            full = f"{full}&{self._sas}" if query else f"{full}?{self._sas}"
        guard = self._guard

        def send() -> urllib3.BaseHTTPResponse | CurlAnswer:
            if guard is not None:
                guard.check(method, url)
            if method == "GET" and small is not None and small <= SMALL_BODY:
                return self._curl.send("GET", full, headers, b"", small)
            return self._pool.urlopen(
                method,
                full[len(self._origin) :],
                headers=headers,
                redirect=False,
                preload_content=preload,
                decode_content=False,  # the stored bytes: a gzip-encoded blob is not inflated
            )

        def failed(exc: urllib3.exceptions.HTTPError) -> None:
            if guard is not None:
                guard.record(method, url, 0, None)

        response = send_with_connect_retry(send, failed)
        if self._guard is not None:
            self._guard.record(method, url, 0, response.status)
        return AzureAnswer(response)


def header_map(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers by lowercased name (urllib3 keeps the case the service sent)."""
    return {k.lower(): v for k, v in headers.items()}
