"""The requests that carry an object's bytes (ranged GET, PUT, UploadPart) and the
listing (ListObjectsV2) without botocore's call pipeline, for S3 sites with path-style
addressing.

Why: for 16 KiB objects the client's CPU is the limit on a small machine, and a botocore
call (parameter validation, serialization, a dozen event hooks, response parsing) costs
about 1.8 ms of CPU where signing and sending the same request costs about 0.7 ms
(bench/RESULTS.md). For 16 MiB parts the cost is elsewhere: botocore hashes every body
again to sign it (over HTTP, or without a checksum header) and hands http.client the body
as a file read in small copies. Here a part goes out as the caller's buffer, and its
SHA-256, already computed for the store to verify, is also the signed payload hash.
A listing page of 1,000 keys costs botocore's parser ~90 ms of CPU; ElementTree reads the
same page in ~7 ms, which is most of an inventory's CPU.
Everything else (listings, creating and completing uploads, other calls) stays on botocore.

The same guarantees as the botocore path:
- signed with SigV4 and the site's credentials, exactly as botocore's S3 signer signs them
  (providers/sigv4.py, checked against it);
- sent by urllib3 with TLS verified against botocore's CA bundle, no redirect followed, no
  retry (the executor's retry layer decides), no proxy (sites with a proxy do not use this
  path), the same timeouts;
- every request checked by the RequestGuard before a byte leaves, and recorded after;
- an error answer becomes the ClientError botocore would raise, and a transport failure
  the botocore exception it stands for, so the adapter's one `_map_error` maps both.
"""

from __future__ import annotations

import contextlib
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, cast
from urllib.parse import quote, unquote_plus, urlsplit

import botocore.exceptions as bce
import botocore.session
import urllib3
from botocore.awsrequest import AWSHTTPConnection, AWSHTTPSConnection
from botocore.credentials import Credentials
from botocore.httpsession import get_cert_path

from providers.base import RequestGuard
from providers.curl_http import SMALL_BODY, CurlAnswer, CurlSender
from providers.lean_http import CONNECT_FAILURES, endpoint_pool, send_with_connect_retry
from providers.sigv4 import S3Signer

# Single PUTs up to this size are sent by this path (one copy into bytes, to sign and send).
MAX_LEAN_PUT = 1024 * 1024
# Bodies above this wait for the store's "100 Continue" (botocore's threshold too).
EXPECT_CONTINUE_ABOVE = 1024 * 1024
_XML_FIELD = re.compile(r"<(Code|Message)>([^<]*)</\1>")
_META = "x-amz-meta-"
# Response header -> the key botocore's parsed response uses for it.
_HEADERS = {
    "etag": "ETag",
    "x-amz-version-id": "VersionId",
    "content-type": "ContentType",
    "content-encoding": "ContentEncoding",
    "cache-control": "CacheControl",
    "content-disposition": "ContentDisposition",
    "content-language": "ContentLanguage",
    "expires": "ExpiresString",
    "content-range": "ContentRange",
    "x-amz-storage-class": "StorageClass",
    "x-amz-tagging-count": "TagCount",
    "x-amz-restore": "Restore",
    "x-amz-server-side-encryption": "ServerSideEncryption",
    "x-amz-server-side-encryption-customer-algorithm": "SSECustomerAlgorithm",
    "x-amz-checksum-sha256": "ChecksumSHA256",
    "x-amz-checksum-sha1": "ChecksumSHA1",
    "x-amz-checksum-crc32": "ChecksumCRC32",
    "x-amz-checksum-crc32c": "ChecksumCRC32C",
    "x-amz-checksum-crc64nvme": "ChecksumCRC64NVME",
    "x-amz-checksum-type": "ChecksumType",
}


def plain_header_value(value: str) -> bool:
    """Values this path sends as they are: printable ASCII. Others take botocore's path,
    which has its own rules for them."""
    return value.isascii() and value.isprintable()


# Whether the last request sent on this thread was answered before its body went out.
_early = threading.local()


class _NotReusedAfterEarlyAnswer:
    """For botocore's connections (Expect: 100-continue): never reused after an early answer.

    A store that answers before the body went out (503 SlowDown, 403) may keep reading the
    body the headers announced and take the next request on the connection for it. The
    pool asks `is_connected` before reusing a connection; after an early answer the
    answer is no, and the pool opens a new one. The request also tells its thread whether
    the body went out, for the route attestation's byte count."""

    def request(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().request(*args, **kwargs)  # type: ignore[misc]
        finally:
            _early.value = getattr(self, "_response_received", False)

    @property
    def is_connected(self) -> bool:
        early: bool = getattr(self, "_response_received", False)
        connected: bool = super().is_connected  # type: ignore[misc]
        return not early and connected


# botocore's stubs mark these bases as mutually incompatible (their own classes too).
class _ExpectHTTPConnection(_NotReusedAfterEarlyAnswer, AWSHTTPConnection):  # type: ignore[misc]
    pass


class _ExpectHTTPSConnection(_NotReusedAfterEarlyAnswer, AWSHTTPSConnection):  # type: ignore[misc]
    pass


class _ExpectHTTPConnectionPool(urllib3.HTTPConnectionPool):
    ConnectionCls = cast(Any, _ExpectHTTPConnection)  # a BaseHTTPConnection at run time


class _ExpectHTTPSConnectionPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = cast(Any, _ExpectHTTPSConnection)


class LeanS3:
    """Signed GET and PUT of single objects, for one site (see the module doc)."""

    def __init__(
        self,
        endpoint: str,
        region: str,
        credentials: Credentials,
        guard: RequestGuard | None,
        *,
        connect_timeout: float = 5,
        read_timeout: float = 60,
    ) -> None:
        parts = urlsplit(endpoint)
        # Lowercased as urllib3 and the signers have it (libcurl would keep its case).
        self._origin = f"{parts.scheme}://{parts.netloc.lower()}"
        self._base = f"{self._origin}{parts.path.rstrip('/')}"
        self._signer = S3Signer(credentials, region)
        self._guard = guard
        bundle = None
        if parts.scheme == "https":
            # The CA bundle botocore uses: AWS_CA_BUNDLE or `ca_bundle` in the AWS config,
            # else its default bundle.
            found = botocore.session.get_session().get_config_variable("ca_bundle")
            bundle = found or get_cert_path(True)
        # botocore's connection classes: they send a large body only once the store said
        # "100 Continue", as botocore does, so an early refusal (403, 503 SlowDown) costs
        # no upload of the part.
        self._pool = endpoint_pool(
            self._origin,
            bundle,
            connect_timeout,
            read_timeout,
            classes=(_ExpectHTTPConnectionPool, _ExpectHTTPSConnectionPool),
        )

        # Small requests go through libcurl (providers/curl_http.py): less CPU each.
        self._curl = CurlSender(bundle, connect_timeout, read_timeout)

    def close(self) -> None:
        self._pool.close()
        self._curl.close()

    def url(self, bucket: str, key: str) -> str:
        return f"{self._base}/{bucket}/{quote(key, safe='/~')}"

    def bucket_url(self, bucket: str) -> str:
        return f"{self._base}/{bucket}"

    def request(
        self,
        operation: str,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | memoryview = b"",
        *,
        stream: bool = False,
        payload_sha256: str | None = None,
        small_answer: int | None = None,
    ) -> tuple[urllib3.BaseHTTPResponse | CurlAnswer, dict[str, Any]]:
        """Send one signed request; returns the response (its body unread when `stream`)
        and its headers as botocore would have parsed them. Raises ClientError for an
        error answer, botocore's transport exceptions for a failed exchange.
        `payload_sha256` is the body's SHA-256 (hex) when the caller has it; a memoryview
        body is sent as it is, without a copy. `small_answer`: the most bytes a GET's
        answer may hold, when the caller knows it is small; such a GET, and a PUT of a
        small body, go through libcurl, held whole."""
        signed: dict[str, Any] = self._signer.sign(  # Any: Expect, added per send, is bytes
            method, url, headers, body, payload_sha256=payload_sha256
        )
        # urllib3 sends any buffer as it is (its annotation names bytes only).
        payload: Any = body or None
        guard = self._guard

        large = len(body) > EXPECT_CONTINUE_ABOVE
        # libcurl sends no "Expect": a body that should wait for "100 Continue" stays here.
        small = (
            not large
            and len(body) <= SMALL_BODY
            and (method == "PUT" or (small_answer is not None and small_answer <= SMALL_BODY))
        )

        def send(expect: bool) -> urllib3.BaseHTTPResponse | CurlAnswer:
            if guard is not None:
                guard.check(method, url)
            if small:
                limit = small_answer if small_answer is not None else SMALL_BODY
                return self._curl.send(method, url, signed, body, limit)
            # Expect is not signed (botocore leaves it out); its connection class looks for
            # the bytes value.
            out = {**signed, "Expect": b"100-continue"} if expect else signed
            return self._pool.urlopen(
                method,
                url[len(self._origin) :],
                body=payload,
                headers=out,
                redirect=False,
                preload_content=not stream,
                # The stored bytes, as botocore gives them: a gzip-encoded object must not
                # be inflated on the way (its size, MD5 and ranges are the stored ones).
                decode_content=False,
            )

        def failed(exc: urllib3.exceptions.HTTPError) -> None:
            if guard is not None:
                sent = 0 if isinstance(exc, CONNECT_FAILURES) else len(body)
                guard.record(method, url, sent, None)

        def exchange(expect: bool) -> urllib3.BaseHTTPResponse | CurlAnswer:
            _early.value = False
            response = send_with_connect_retry(lambda: send(expect), failed)
            if guard is not None:
                # An answer before "100 Continue" (503, 403, 417): the body never left.
                sent = 0 if _early.value else len(body)
                guard.record(method, url, sent, response.status)
            return response

        try:
            response = exchange(large)
            if large and response.status == 417:  # the store does not take Expect
                response = exchange(False)
        except urllib3.exceptions.HTTPError as exc:
            raise _transport_error(exc, url) from None
        parsed = parse_headers(response.headers)
        if response.status >= 300:
            raise _client_error(operation, response, parsed)
        return response, parsed


def list_url(
    base_url: str,
    prefix: str,
    delimiter: str | None,
    start_after: str | None,
    token: str | None,
    max_keys: int,
) -> str:
    """The ListObjectsV2 URL of a bucket (`base_url`), keys asked URL-encoded as botocore
    asks them (a key may hold characters XML 1.0 cannot carry)."""
    params = {"list-type": "2", "encoding-type": "url", "max-keys": str(max_keys)}
    params["prefix"] = prefix
    if delimiter:
        params["delimiter"] = delimiter
    if start_after:
        params["start-after"] = start_after
    if token:
        params["continuation-token"] = token
    # SigV4 signs the query as sent: each value encoded as its canonical form requires.
    query = "&".join(f"{k}={quote(v, safe='-_.~')}" for k, v in sorted(params.items()))
    return f"{base_url}?{query}"


def parse_list_page(body: bytes, timestamp: Callable[[str], datetime]) -> dict[str, Any]:
    """A ListObjectsV2 answer as botocore parses it, for the fields the adapter reads:
    Contents (Key, ETag, Size, LastModified, StorageClass), CommonPrefixes (Prefix),
    IsTruncated, NextContinuationToken. Keys and prefixes are URL-decoded when the answer
    says they are encoded, as botocore does (unquote_plus)."""
    root = ET.fromstring(body)
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    cut = len(ns)
    if root.tag[cut:] != "ListBucketResult":  # a proxy's page, an error: not an empty listing
        raise ValueError(f"not a listing: <{root.tag[cut:]}>")
    encoded = (root.findtext(f"{ns}EncodingType") or "").strip().lower() == "url"
    page: dict[str, Any] = {"IsTruncated": False}
    contents: list[dict[str, Any]] = []
    prefixes: list[dict[str, str]] = []
    for child in root:
        tag = child.tag[cut:]
        if tag == "Contents":
            item: dict[str, Any] = {}
            for field in child:
                name, text = field.tag[cut:], field.text or ""
                if name == "Key":
                    item["Key"] = unquote_plus(text) if encoded else text
                elif name == "ETag":
                    item["ETag"] = text
                elif name == "Size":
                    item["Size"] = int(text)
                elif name == "LastModified":
                    item["LastModified"] = timestamp(text)
                elif name == "StorageClass":
                    item["StorageClass"] = text
            if "Key" not in item:
                raise ValueError("a listed object without a Key")
            contents.append(item)
        elif tag == "CommonPrefixes":
            sub = child.findtext(f"{ns}Prefix") or ""
            prefixes.append({"Prefix": unquote_plus(sub) if encoded else sub})
        elif tag == "IsTruncated":
            page["IsTruncated"] = (child.text or "").strip().lower() == "true"
        elif tag == "NextContinuationToken" and child.text:
            page["NextContinuationToken"] = child.text
    if contents:
        page["Contents"] = contents
    if prefixes:
        page["CommonPrefixes"] = prefixes
    return page


def parse_headers(headers: Mapping[str, str]) -> dict[str, Any]:
    parsed: dict[str, Any] = {}
    metadata: dict[str, str] = {}
    for name, value in headers.items():
        low = name.lower()
        if low.startswith(_META):
            metadata[name[len(_META) :]] = value
        elif low in _HEADERS:
            parsed[_HEADERS[low]] = value
        elif low == "content-length":
            parsed["ContentLength"] = int(value)
        elif low == "last-modified":
            # An unreadable date is no date, rather than an error escaping the adapter.
            with contextlib.suppress(TypeError, ValueError):
                parsed["LastModified"] = parsedate_to_datetime(value)
    parsed["Metadata"] = metadata
    return parsed


def _client_error(
    operation: str, response: urllib3.BaseHTTPResponse | CurlAnswer, parsed: Mapping[str, Any]
) -> bce.ClientError:
    body = response.data[:65536].decode("utf-8", "replace") if response.data else ""
    fields = dict(_XML_FIELD.findall(body))
    error = {"Code": fields.get("Code") or str(response.status), "Message": fields.get("Message")}
    headers = {k.lower(): v for k, v in response.headers.items()}
    meta = {"HTTPStatusCode": response.status, "HTTPHeaders": headers}
    answer: Any = {**parsed, "Error": error, "ResponseMetadata": meta}
    return bce.ClientError(answer, operation)


def _transport_error(exc: urllib3.exceptions.HTTPError, url: str) -> Exception:
    """The botocore exception the botocore path would have raised for this failure."""
    if isinstance(exc, urllib3.exceptions.SSLError):
        return bce.SSLError(endpoint_url=url, error=exc)
    if isinstance(exc, urllib3.exceptions.ConnectTimeoutError):
        return bce.ConnectTimeoutError(endpoint_url=url, error=exc)
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        return bce.EndpointConnectionError(endpoint_url=url, error=exc)
    if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
        return bce.ReadTimeoutError(endpoint_url=url, error=exc)
    return bce.ConnectionClosedError(endpoint_url=url, error=exc)
