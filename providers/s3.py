"""S3-compatible stores through botocore: AWS S3, the European S3 clouds, self-hosted SeaweedFS,
Ceph RGW and the like.

Guarantees beyond the contract of providers/base.py:

- One botocore client per site, built from the site alone: endpoint, region, addressing
  style and signature version from the sites file, credentials only from
  `resolve_credentials(site)`. No endpoint, proxy or region is taken from the environment
  or from shared config files (AWS_ENDPOINT_URL, HTTP(S)_PROXY are ignored).
- With a RequestGuard, every HTTP request (retries included) is checked before a byte
  leaves and recorded after its answer. Redirects are never followed: botocore's S3 region
  redirector is removed, so a 301/307 or a wrong-region answer is a `Permanent` error.
- Every SDK exception becomes a migrate error in `_map_error`, with site, bucket and key in
  the message and no secret.
- Bodies stream: writes read exactly `length` bytes from the caller's seekable file object
  (from its current position; botocore re-reads it to sign over plain HTTP and to retry),
  reads return the HTTP stream itself.
- Listings are in UTF-8 byte order. Stores that list in path order instead (SeaweedFS
  walks directories, so 'a/b' comes before 'a b') are listed one directory level at a time
  and merged into byte order; `start_after` is then applied by the adapter, because such a
  store's StartAfter skips the contents of a key's same-named directory.
"""

from __future__ import annotations

import base64
import contextlib
import heapq
import io
import os
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import partial
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, TypeVar, cast
from urllib.parse import quote, urlsplit

import botocore.compat
import botocore.exceptions as bce
import botocore.loaders
import botocore.session
import botocore.utils
import urllib3.exceptions
from botocore.config import Config
from botocore.credentials import Credentials as BotoCredentials

from migrate.errors import (
    ChecksumMismatch,
    CompletionRaced,
    ConfigError,
    CredentialsRejected,
    EndpointUnreachable,
    KeyRejected,
    ListingOutOfOrder,
    MigrateError,
    NoAnswer,
    NotFound,
    Permanent,
    PreconditionFailed,
    Retryable,
    RouteRefused,
    SourceChanged,
    Unsupported,
    register_secret,
)
from migrate.routing import is_loopback
from migrate.sites import Site, proxy_url, resolve_credentials
from providers.base import (
    ABSENT,
    HEADER_TOKEN,
    RESTORED_IN_PLACE,
    Capabilities,
    ObjectInfo,
    PartResult,
    Protection,
    ReadStream,
    Replication,
    ReplicationTarget,
    RequestGuard,
    StoreLimits,
    UploadInfo,
    WriteAttrs,
    WriteBody,
    WriteResult,
    expires_instant,
    not_a_url,
    proxy_failed,
    proxy_refused,
    tunnel_refused_407,
    unresolved,
    wrong_range,
)
from providers.lean_http import release, with_page_retries
from providers.s3_lean import (
    MAX_LEAN_PUT,
    LeanS3,
    list_url,
    parse_list_page,
    plain_header_value,
)

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

T = TypeVar("T")

_PAGE = 1000
_ARCHIVED = "migrate:archived"  # set on a listed item by _mark_restores: not S3's field
_HEADS_AT_ONCE = 16
# S3 response field -> our algorithm name. MD5 has no such field: it comes from the ETag.
_CHECKSUM_FIELDS = {
    "ChecksumSHA256": "sha256",
    "ChecksumSHA1": "sha1",
    "ChecksumCRC32": "crc32",
    "ChecksumCRC32C": "crc32c",
    "ChecksumCRC64NVME": "crc64nvme",
}
_PLAIN_MD5_ETAG = re.compile(r"^[0-9a-fA-F]{32}$")
_PARTS_ETAG = re.compile(r"-[0-9]+$")  # a multipart upload's: md5(part md5s)-N
# Stores whose listing walks directories instead of sorting keys by bytes. The catalog will
# carry this as a quirk of the software; until then, the site's declared software decides,
# and where none is declared, the Server header of the first listing (SeaweedFS names
# itself there): trusting a path-ordered listing as byte order would skip keys after a
# start-after, and an early stop at a run's last key could miss an object in the way.
_PATH_ORDERED_SOFTWARE = frozenset({"seaweedfs"})


def _software_of(server: str | None) -> str:
    """The software a Server header names ('SeaweedFS 8000GB 4.48' -> 'seaweedfs')."""
    return (server or "").strip().split(" ")[0].split("/")[0].lower()


# The key itself refused: every request of the site would be (KeyRejected).
_KEY_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "InvalidClientTokenId",
}
# A permission refused: possibly this object's only (a bucket policy on a prefix).
_CREDENTIAL_CODES = {"AccessDenied", "AllAccessDisabled", *_KEY_CODES}
_NOT_FOUND_CODES = {"NoSuchBucket", "NoSuchKey", "NoSuchUpload", "NoSuchVersion", "NotFound"}
_CHECKSUM_CODES = {
    "BadDigest",
    "InvalidDigest",
    "XAmzContentSHA256Mismatch",
    "XAmzContentChecksumMismatch",
    "InvalidChecksum",
    "ChecksumMismatch",
}
_RETRYABLE_CODES = {
    "SlowDown",
    # AWS: a conditional PUT raced another write of the key; tried again it gets its
    # answer (written, or 412). (A completion's is not retried: see _map_error.)
    "ConditionalRequestConflict",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequests",
    "OperationAborted",
}
_RETRYABLE_STATUS = {429, 500, 502, 503, 504}
_GATEWAY_STATUS = {502, 504}  # Bad Gateway, Gateway Timeout
_GATEWAY_CODES = ("BadGateway", "Bad Gateway", "GatewayTimeout", "Gateway Timeout")
# The store cannot hold this key beside an existing one (a file where a prefix is needed).
_UNSUPPORTED_CODES = {"ExistingObjectIsFile", "ExistingObjectIsDirectory", "NotImplemented"}


def _crt_errors() -> tuple[type[Exception], ...]:
    """awscrt's error class when botocore uses awscrt (it then loaded it already)."""
    if not botocore.compat.HAS_CRT:
        return ()
    from awscrt.exceptions import AwsCrtError  # type: ignore[import,unused-ignore]

    return (AwsCrtError,)


# What the SDK stack raises besides ClientError; with awscrt installed (botocore[crt], not
# a dependency here) botocore signs through it, and its errors are the SDK's too.
_SDK_ERRORS: tuple[type[Exception], ...] = (
    bce.BotoCoreError,
    urllib3.exceptions.HTTPError,
    OSError,
    *_crt_errors(),
)
_CALL_ERRORS: tuple[type[Exception], ...] = (bce.ClientError, *_SDK_ERRORS)
_NULL_VERSION = "null"  # the version id of objects written while versioning was off
_REDIRECT_CODES = {"PermanentRedirect", "TemporaryRedirect", "Redirect", "301", "302", "307"}
# arn:partition:service:region:account:resource. An S3 bucket ARN leaves the region empty;
# S3 on Outposts names it (resource: outpost/<id>/bucket/<name>).
_ARN = re.compile(r"^arn:[^:]*:[^:]*:(?P<region>[^:]*):[^:]*:(?P<resource>.+)$")
# Answers that mean "this call cannot tell", not "the site is unusable".
_FATAL_FOR_REPLICATION = (CredentialsRejected, NotFound, EndpointUnreachable, ConfigError)


class _KeyNotFound(NotFound):
    """No object under the key (not a missing bucket or upload)."""


def _condition_kwargs(expect: str | None) -> dict[str, str]:
    """A write's condition as botocore's parameters (see StoreAdapter.put_object)."""
    if expect is None:
        return {}
    return {"IfNoneMatch": "*"} if expect == ABSENT else {"IfMatch": f'"{expect}"'}


# Seconds without a byte of an answer before a request counts as unanswered (NoAnswer).
READ_TIMEOUT = 60.0


def tagging_header(tags: Mapping[str, str]) -> str:
    """Tags as S3's x-amz-tagging header takes them: a URL query, every character but
    the unreserved ones escaped."""
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in tags.items())


def _tag_count(r: Mapping[str, Any]) -> int:
    """How many tags a GET or HEAD answer says the object has: botocore parses it for
    GetObject (TagCount) only; its header is read for HeadObject."""
    count = r.get("TagCount")
    if count is None:
        headers = r.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        count = headers.get("x-amz-tagging-count")
    try:
        return int(count or 0)
    except (TypeError, ValueError):
        return 0


def _unquote(etag: str | None) -> str | None:
    return etag.strip('"') if etag else None


def _bucket_of_arn(arn: str) -> tuple[str, str | None]:
    """(bucket name, region named by the ARN or None) of a replication destination."""
    match = _ARN.match(arn)
    if match is None:
        return arn, None
    resource = match["resource"]
    bucket = resource.rsplit("bucket/", 1)[-1] if "bucket/" in resource else resource
    return bucket, match["region"] or None


def _b64_to_hex(value: str) -> str | None:
    """S3 checksums are base64; a COMPOSITE one ends with -N, which is kept. A value that
    is not base64 is dropped rather than trusted."""
    digest, sep, count = value.partition("-")
    try:
        raw = base64.b64decode(digest, validate=True)
    except ValueError:
        return None
    return raw.hex() + (sep + count if sep else "")


def _hex_to_b64(value: str) -> str:
    return base64.b64encode(bytes.fromhex(value)).decode("ascii")


def _checksums(response: Mapping[str, Any], etag: str | None, etag_is_md5: bool) -> dict[str, str]:
    """The checksums an answer states, as hex. A checksum is of the whole object where the
    answer says so (ChecksumType FULL_OBJECT) or the object is one part (no `-N` ETag: a
    single PUT's, a part's); a COMPOSITE one (of the parts' checksums) keeps its `-N`, and
    one stated without it (moto's) is dropped rather than taken for the whole object's."""
    kind = response.get("ChecksumType")
    whole = kind == "FULL_OBJECT" or (kind is None and not _PARTS_ETAG.search(etag or ""))
    found: dict[str, str] = {}
    for field, name in _CHECKSUM_FIELDS.items():
        value = _b64_to_hex(response[field]) if response.get(field) else None
        if value and (whole or "-" in value):
            found[name] = value
    if etag_is_md5 and etag and _PLAIN_MD5_ETAG.match(etag):
        found["md5"] = etag.lower()
    return found


def _etag_is_md5(response: Mapping[str, Any]) -> bool:
    """A single-part ETag is the MD5 of the bytes unless SSE-KMS or SSE-C encrypted them."""
    sse = response.get("ServerSideEncryption") or ""
    return not sse.startswith("aws:kms") and not response.get("SSECustomerAlgorithm")


class _BoundedBody:
    """Exactly `length` bytes of the caller's file object, from where it stands now.

    botocore rewinds with seek(0) before a retry and hashes the payload with tell/seek:
    positions here are relative to the starting point, so a part taken from the middle of a
    file is re-read correctly and never runs past its end.
    """

    def __init__(self, body: BinaryIO, length: int) -> None:
        self._body = body
        self._length = length
        self._pos = 0
        try:
            self._origin: int | None = body.tell() if body.seekable() else None
        except (AttributeError, OSError):
            self._origin = None

    def __len__(self) -> int:
        return self._length

    def read(self, size: int | None = -1) -> bytes:
        remaining = self._length - self._pos
        if remaining <= 0:
            return b""
        n = remaining if size is None or size < 0 else min(size, remaining)
        data = self._body.read(n)
        self._pos += len(data)
        return data

    def tell(self) -> int:
        return self._pos

    def seekable(self) -> bool:
        return self._origin is not None

    def seek(self, offset: int, whence: int = 0) -> int:
        if self._origin is None:
            raise io.UnsupportedOperation("this body cannot be rewound")
        target = {0: offset, 1: self._pos + offset, 2: self._length + offset}[whence]
        target = max(0, min(target, self._length))
        self._body.seek(self._origin + target)
        self._pos = target
        return target

    def close(self) -> None:
        """The caller owns the file object: botocore must not close it."""


class _ViewBody:
    """A seekable reader over bytes already in memory, without copying them: botocore's
    CRT signer (where awscrt is installed) wraps a bytes-like body in BytesIO (a copy of
    the whole part for a bytearray) but uses a file-like one as it is; the HTTP layer then
    reads it in blocks."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._view = memoryview(data)
        self._pos = 0

    def __len__(self) -> int:
        return len(self._view)

    def read(self, size: int | None = -1) -> bytes:
        end = (
            len(self._view) if size is None or size < 0 else min(self._pos + size, len(self._view))
        )
        chunk = self._view[self._pos : end].tobytes()
        self._pos = max(self._pos, end)
        return chunk

    def tell(self) -> int:
        return self._pos

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        target = {0: offset, 1: self._pos + offset, 2: len(self._view) + offset}[whence]
        self._pos = max(0, min(target, len(self._view)))
        return self._pos

    def close(self) -> None:
        """The caller owns the bytes."""


class _RangeStream:
    """The GetObject body; read errors become migrate errors, like every other call."""

    def __init__(
        self,
        body: Any,
        on_error: Callable[[Exception], MigrateError],
        info: ObjectInfo | None = None,
    ) -> None:
        self._body = body
        self._on_error = on_error
        self.info = info

    def read(self, size: int = -1, /) -> bytes:
        try:
            data: bytes = self._body.read(None if size < 0 else size)
        except _SDK_ERRORS as exc:
            raise self._on_error(exc) from None
        return data

    def close(self) -> None:
        self._body.close()


class _EmptyStream:
    info: ObjectInfo | None = None

    def read(self, size: int = -1, /) -> bytes:
        return b""

    def close(self) -> None:
        pass


class _GuardHooks:
    """The RequestGuard on botocore's lowest hook. `before-send` fires for every attempt,
    after signing and before the connection is used; `response-received` after each
    attempt's answer (or transport error). The client runs a call on the caller's thread,
    so a thread-local carries the request from one hook to the other."""

    def __init__(self, guard: RequestGuard) -> None:
        self._guard = guard
        self._pending = threading.local()

    def before_send(self, request: Any, **_: Any) -> None:
        method, url = str(request.method), str(request.url)
        self._pending.value = None
        self._guard.check(method, url)
        self._pending.value = (method, url, _sent_bytes(request))

    def response_received(self, response_dict: Mapping[str, Any] | None = None, **_: Any) -> None:
        pending = getattr(self._pending, "value", None)
        if pending is None:
            return
        self._pending.value = None
        method, url, sent = pending
        status = response_dict.get("status_code") if response_dict else None
        self._guard.record(method, url, sent, int(status) if status is not None else None)


def _sent_bytes(request: Any) -> int:
    length = request.headers.get("Content-Length")
    if length is not None:
        try:
            return int(length)
        except ValueError:
            pass
    body = request.body
    if isinstance(body, bytes | bytearray | str):
        return len(body)
    return 0


class _LeanBody:
    """The body of a lean GET: read() as botocore's stream does; close() gives the
    connection back to the pool only when the body was read to its end."""

    def __init__(self, response: Any) -> None:
        self._response = response

    def read(self, size: int | None = None) -> bytes:
        data: bytes = self._response.read(size)
        return data

    def close(self) -> None:
        release(self._response)


def _lean_for(site: Site, region: str, guard: RequestGuard | None) -> LeanS3 | None:
    """The lean path (providers/s3_lean.py) for sites it can serve as botocore would:
    path-style addressing on a declared endpoint, SigV4, static keys, no proxy."""
    if site.addressing != "path" or site.endpoint is None or site.proxy:
        return None
    if site.signature_version != "s3v4":
        return None
    creds = resolve_credentials(site)
    if not (creds.access_key and creds.secret_key):
        return None
    return LeanS3(
        site.endpoint,
        region,
        BotoCredentials(creds.access_key, creds.secret_key, creds.session_token),
        guard,
        read_timeout=READ_TIMEOUT,
    )


def _remove_region_redirector(client: Any) -> int:
    """Unhook botocore's S3RegionRedirector(v2): it silently re-sends a request to the
    region named in a 301/400 answer, which would bypass the site's declared region.
    botocore has no switch for it; its handlers are found on the client's own emitter."""
    from botocore.utils import S3RegionRedirector, S3RegionRedirectorv2

    emitter = client.meta.events
    inner = getattr(emitter, "_emitter", emitter)
    removed = 0
    for event in (
        "needs-retry.s3",
        "before-parameter-build.s3",
        "before-endpoint-resolution.s3",
        "before-call.s3",
    ):
        for handler in list(inner._handlers.prefix_search(event)):
            owner = getattr(handler, "__self__", None)
            if isinstance(owner, S3RegionRedirector | S3RegionRedirectorv2):
                emitter.unregister(event, handler)
                removed += 1
    return removed


def _timestamp(value: str) -> datetime:
    """Listing and header timestamps. botocore's default parser (dateutil) took 55 % of an
    inventory's CPU; S3 listings give ISO 8601, which the standard library reads fast.
    Anything else, or a time without a zone, goes to botocore's own parser."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        return botocore.utils.parse_timestamp(value)
    return parsed


class _S3Loader(botocore.loaders.Loader):
    """botocore's loader, for S3 clients only. Before it loads a model, botocore checks the
    service's name against every service it ships: ~450 directories stat'ed for each kind
    of model file, ~14 ms twice in every process. S3 is the only service loaded here (any
    other name fails loudly, as an unknown service)."""

    def list_available_services(self, type_name: str) -> list[str]:
        return ["s3"]


def _data_paths() -> list[str]:
    """$AWS_DATA_PATH's folders, read as botocore.loaders.create_loader reads them."""
    value = os.environ.get("AWS_DATA_PATH")
    if not value:
        return []
    return [os.path.expanduser(os.path.expandvars(p)) for p in value.split(os.pathsep)]


# botocore's data loader, shared by the clients of sites with keys: each session would
# otherwise parse the S3 model files again (~70 ms for a second site). It is made without
# reading any AWS config file (a session's own loader would, for its profile).
_LOADER: list[botocore.loaders.Loader] = []
_LOADER_LOCK = threading.Lock()


def _core_session(profile: str | None = None) -> botocore.session.Session:
    """A new botocore session (not boto3's: boto3 adds nothing a client needs here, and
    importing it with s3transfer costs every process ~70 ms), with the shared loader; with
    the site's profile, so that an AWS_PROFILE naming another does not apply."""
    core = botocore.session.get_session()
    if profile:
        core.set_config_variable("profile", profile)
    with _LOADER_LOCK:
        if not _LOADER:
            _LOADER.append(_S3Loader(extra_search_paths=_data_paths()))
        core.register_component("data_loader", _LOADER[0])
    core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=_timestamp)
    return core


def _why_no_endpoint(site: Site) -> str:
    """What the catalog says of the site's region (unknown, or none declared), if anything."""
    try:
        from providers.catalog import active_catalog

        findings = active_catalog().endpoint_findings(site)
    except (ImportError, ConfigError):
        return ""
    prefix = f"site {site.name}: "
    return "".join(f"; {f.removeprefix(prefix)}" for f in findings[:1])


def build_client(site: Site) -> S3Client:
    """A botocore S3 client for the site, configured from the site only."""
    creds = resolve_credentials(site)
    endpoint = site.endpoint
    if endpoint is None and site.provider != "aws":
        raise ConfigError(
            f"site {site.name}: no endpoint for provider {site.provider!r}{_why_no_endpoint(site)}",
            hint="set `endpoint` in the sites file",
        )
    if endpoint is not None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise not_a_url(site.name, endpoint)
        if (
            parts.scheme == "http"
            and not is_loopback(parts.hostname)  # the guard's test: "127.0.0.l" is a name
            and not site.allow_http
        ):
            raise ConfigError(
                f"site {site.name}: endpoint {endpoint} uses plain HTTP",
                hint="use https, or declare allow_http = true for this site",
            )
    region = site.region
    if region is None or region == "local":
        if endpoint is None:
            raise ConfigError(f"site {site.name}: `region` is required for AWS sites")
        region = "us-east-1"  # self-hosted stores sign with any region; this one is universal

    keys = bool(creds.access_key and creds.secret_key)
    if not keys and not creds.profile:
        # The default chain would reach for instance metadata or stray variables.
        raise ConfigError(
            f"site {site.name}: no credentials referenced",
            hint="set credentials.access_key_env and secret_key_env, or credentials.profile",
        )

    config = Config(
        region_name=region,
        signature_version=site.signature_version,
        # No SHA-256 of the payload for the signature: every write carries Content-MD5 or a
        # SHA-256 the store is confirmed to verify (often both), signed headers the server
        # checks against the body, so the body stays bound to the signature without hashing
        # it once more.
        # Accelerate, dual-stack and FIPS named here: an AWS config file's settings are
        # merged under these, and its `use_accelerate_endpoint` broke every site (a review).
        s3=cast(  # the stubs lack use_dualstack_endpoint, which botocore reads here
            Any,
            {
                "addressing_style": site.addressing,
                "payload_signing_enabled": False,
                "use_accelerate_endpoint": False,
                "use_dualstack_endpoint": False,
            },
        ),
        use_dualstack_endpoint=False,
        use_fips_endpoint=False,
        connect_timeout=5,
        read_timeout=READ_TIMEOUT,
        # One retry at most: the project's own retry layer decides the rest.
        retries={"total_max_attempts": 2, "mode": "standard"},
        max_pool_connections=32,
        # We send our own checksums; botocore must not add or check others.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        # An empty mapping (not None) stops botocore reading HTTP(S)_PROXY.
        proxies={"http": proxy, "https": proxy} if (proxy := proxy_url(site)) else {},
        ignore_configured_endpoint_urls=True,  # type: ignore[call-arg]  # stubs lag botocore
        # "auto" (from a profile or AWS_DEFAULTS_MODE) asks the instance metadata service
        # for the region while the client is made: a request outside the guard.
        defaults_mode="legacy",  # type: ignore[arg-type]  # stubs lag botocore
        tcp_keepalive=True,
    )
    if keys:
        key, secret, token = creds.access_key, creds.secret_key, creds.session_token
    else:
        key, secret, token = _profile_keys(site.name, creds.profile or "")
    try:
        client = cast(
            "S3Client",
            _core_session(None if keys else creds.profile).create_client(
                "s3",
                endpoint_url=endpoint,
                region_name=region,
                config=config,
                aws_access_key_id=key,
                aws_secret_access_key=secret,
                aws_session_token=token,
            ),
        )
    except bce.ProfileNotFound as exc:
        raise ConfigError(  # botocore reads AWS_PROFILE even for a site with keys
            f"site {site.name}: AWS_PROFILE names profile {exc.kwargs.get('profile')!r}, "
            "which is not in the AWS config files",
            hint="unset AWS_PROFILE (this site's keys come from its sites file), or create it",
        ) from None
    except (ValueError, bce.BotoCoreError) as exc:
        raise ConfigError(f"site {site.name}: {exc}") from None
    _remove_region_redirector(client)
    return client


# Profile entries that make botocore fetch credentials from a host (STS, SSO, a container
# or instance metadata endpoint) or run a command: requests that would leave outside the
# routing guard, to hosts the plan does not list.
_FETCHED_CREDENTIALS = (
    "role_arn",
    "credential_source",
    "credential_process",
    "web_identity_token_file",
    "sso_session",
    "sso_start_url",
    "sso_account_id",
    "sso_role_name",
)


def _profile_keys(site: str, profile: str) -> tuple[str, str, str | None]:
    """The keys written in an AWS profile (shared credentials or config file), read without
    botocore's credential chain: with a profile and no keys it would ask the instance
    metadata service, a container endpoint or STS, outside the guard."""
    session = botocore.session.Session(profile=profile)
    try:
        scoped = session.get_scoped_config()
    except bce.ProfileNotFound:
        raise ConfigError(f"site {site}: AWS profile {profile!r} not found") from None
    except bce.ConfigParseError as exc:  # its path, never its content
        raise ConfigError(
            f"site {site}: AWS profile {profile!r}: {exc}",
            hint="fix that file's syntax (`key = value` lines under `[profile]` headers)",
        ) from None
    fetched = [name for name in _FETCHED_CREDENTIALS if scoped.get(name)]
    hint = (
        "write keys in the profile, or export temporary ones (`aws configure "
        "export-credentials --profile NAME --format env`) and name their variables in "
        "credentials.access_key_env, secret_key_env and session_token_env"
    )
    if fetched:
        raise ConfigError(
            f"site {site}: AWS profile {profile!r} fetches its credentials "
            f"({', '.join(fetched)}): that would contact hosts the plan does not allow",
            hint=hint,
        )
    key, secret = scoped.get("aws_access_key_id"), scoped.get("aws_secret_access_key")
    if not key or not secret:
        raise ConfigError(
            f"site {site}: AWS profile {profile!r} has no aws_access_key_id and "
            "aws_secret_access_key",
            hint=hint,
        )
    register_secret(str(secret))
    register_secret(str(key))  # as a key from the environment: a store may echo it
    token = scoped.get("aws_session_token")
    if token:
        register_secret(str(token))
    return str(key), str(secret), str(token) if token else None


class S3Adapter:
    """The StoreAdapter over an S3-compatible API (see the module and providers/base.py)."""

    def __init__(
        self,
        site: Site,
        *,
        guard: RequestGuard | None = None,
        confirmed_checksums: Sequence[str] = (),
        limits: StoreLimits | None = None,
    ) -> None:
        """`confirmed_checksums`: what the catalog says this store verifies on write. The
        SHA-256 is sent to every store, but relied on alone only where it is confirmed.
        `limits`: the catalog's sizes for this store, where they differ from S3's."""
        self.site_name = site.name
        self.site = site
        sent = ("md5", "sha256")
        self.capabilities = Capabilities(
            native_checksums=("md5", "sha256", "sha1", "crc32", "crc32c", "crc64nvme"),
            verifies_checksums=sent,
            confirmed_checksums=tuple(c for c in sent if c in confirmed_checksums),
            lists_uploads=True,
            conditional_read=True,
            versioning=True,
            tiers=True,
            # AWS accepts 1,024-byte keys with any segment length; stores with a filer
            # (SeaweedFS: 255) get theirs from the catalog.
            max_segment_bytes=None,
            # ListObjectsV2's order, or the walk's on stores listing in path order.
            ranged_listing=True,
            expires_header=True,
        )
        if limits is not None:
            self.capabilities = limits.applied_to(self.capabilities)
        self._client = build_client(site)
        self._lean = _lean_for(site, self._client.meta.region_name, guard)
        # True: walk; False: flat; None: not declared, told by the first listing's answer.
        self._walk_listing: bool | None = (
            True if (site.software or "").lower() in _PATH_ORDERED_SOFTWARE else None
        )
        if guard is not None:
            hooks = _GuardHooks(guard)
            self._client.meta.events.register("before-send.s3", hooks.before_send)
            self._client.meta.events.register("response-received.s3", hooks.response_received)

    # -- error mapping -----------------------------------------------------------------

    def _where(self, container: str | None, key: str | None) -> str:
        if container is None:
            return self.site_name
        if key is None:
            return f"{self.site_name}: bucket {container!r}"
        return f"{self.site_name}: {container}/{key!r}"

    def _map_error(
        self, exc: Exception, container: str | None = None, key: str | None = None
    ) -> MigrateError:
        """The one translation of SDK errors into migrate errors."""
        where = self._where(container, key)
        if isinstance(exc, MigrateError):
            return exc
        if isinstance(exc, bce.ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            meta = exc.response.get("ResponseMetadata", {})
            status = int(meta.get("HTTPStatusCode") or 0)
            headers = meta.get("HTTPHeaders", {})
            op = exc.operation_name
            if status in (301, 302, 307) or code in _REDIRECT_CODES:
                region = headers.get("x-amz-bucket-region")
                hint = f"the bucket is in region {region}; " if region else ""
                return Permanent(
                    f"{where}: the endpoint answered with a redirect ({status or code}), "
                    "which is never followed",
                    hint=hint + "set the site's region and endpoint to the bucket's own",
                )
            if code == "AuthorizationHeaderMalformed":
                return Permanent(
                    f"{where}: the endpoint refused the request's signing region",
                    hint="check the site's region",
                )
            if code == "InvalidObjectState":
                return Permanent(
                    f"{where}: the object is archived", hint="restore it before copying"
                )
            if code in _UNSUPPORTED_CODES or status == 501:
                return Unsupported(f"{where}: the store cannot do {op} here ({code or status})")
            if code in _CHECKSUM_CODES:
                return ChecksumMismatch(f"{where}: the store refused the bytes ({code})")
            if status == 412 or code in ("PreconditionFailed", "412"):
                return SourceChanged(f"{where}: the object changed (ETag or version differs)")
            if status == 407:  # the declared proxy's answer, not the store's
                return proxy_refused(where, self.site.proxy)
            if status == 403 or code in _CREDENTIAL_CODES:
                rejected = KeyRejected if code in _KEY_CODES else CredentialsRejected
                return rejected(
                    f"{where}: credentials rejected ({code or status})",
                    hint=f"check the credentials referenced by site {self.site_name}",
                )
            if status == 404 or code in _NOT_FOUND_CODES or code == "404":
                if code == "NoSuchBucket" or (key is None and container is not None):
                    return NotFound(
                        f"{self.site_name}: bucket {container!r} not found at "
                        f"{self.site.endpoint or 'AWS S3'}",
                        hint=f"check the bucket's name and site {self.site_name}'s endpoint "
                        f"and region in the sites file; `migrate sites check "
                        f"{self.site_name}` tries each bucket it lists",
                    )
                if code == "NoSuchUpload":
                    return NotFound(f"{where}: multipart upload not found")
                return _KeyNotFound(f"{where}: not found")
            if code == "ConditionalRequestConflict" and op == "CompleteMultipartUpload":
                # AWS: a completion that raced another write of the key is not tried again
                # as it is; the upload must begin anew (each part sent again). Permanent: the
                # copier first looks whether the object is its own upload's (a first
                # completion stored, its answer lost), else the executor drops the upload
                # and the next run's check sees what is there.
                return CompletionRaced(
                    f"{where}: the store refused to complete the upload: another write of "
                    "the key raced it (ConditionalRequestConflict)",
                    hint="run the phase again: the object is copied in a new upload, or "
                    "reported as a conflict if another writer's object is there now",
                )
            if status in _GATEWAY_STATUS and code in (None, "", str(status), *_GATEWAY_CODES):
                # A gateway's answer (a load balancer before a store that is gone): no answer
                # of the store's.
                return NoAnswer(f"{where}: {op} failed with {status} from a gateway, try again")
            if status in _RETRYABLE_STATUS or code in _RETRYABLE_CODES:
                return Retryable(f"{where}: {op} failed with {code or status}, try again")
            message = str(err.get("Message") or "").strip()
            detail = f": {message}" if message else ""
            return Permanent(f"{where}: {op} failed with {code or status}{detail}")
        if isinstance(exc, bce.EndpointConnectionError) and unresolved(exc):
            # The URL botocore asked (AWS's own endpoint where the site declares none).
            asked = str(getattr(exc, "kwargs", {}).get("endpoint_url") or self.site.endpoint or "")
            host = urlsplit(asked).hostname or "(AWS S3's)"
            return EndpointUnreachable(
                f"{self.site_name}: the endpoint's host {host} does not resolve (DNS)",
                hint="check the host name in the site's endpoint (or the catalog's for its "
                "region) and this machine's DNS",
            )
        if isinstance(exc, bce.EndpointConnectionError | bce.ConnectTimeoutError):
            return EndpointUnreachable(
                f"{self.site_name}: no answer from {self.site.endpoint or 'AWS S3'}",
                hint="check the endpoint, the network and any firewall",
            )
        if isinstance(exc, bce.SSLError):
            return EndpointUnreachable(
                f"{self.site_name}: TLS failed with {self.site.endpoint or 'AWS S3'}",
                hint="check that the endpoint speaks https on that port and that its "
                "certificate is trusted (a private CA: AWS_CA_BUNDLE names its bundle)",
            )
        if isinstance(exc, bce.ProxyConnectionError) and tunnel_refused_407(
            repr(getattr(exc, "kwargs", {}).get("error"))  # read, never shown: names the proxy
        ):
            # An https endpoint through the proxy: its CONNECT answered 407.
            return proxy_refused(self.site_name, self.site.proxy)
        if isinstance(exc, bce.ProxyConnectionError):
            return proxy_failed(
                self.site_name,
                self.site.proxy or "",
                repr(getattr(exc, "kwargs", {}).get("error")),  # read, never shown
            )
        if isinstance(exc, bce.FlexibleChecksumError):
            return ChecksumMismatch(f"{where}: response checksum does not match")
        if isinstance(
            exc,
            bce.ReadTimeoutError
            | bce.ConnectionClosedError
            | bce.ResponseStreamingError
            | bce.IncompleteReadError
            | bce.HTTPClientError
            | bce.ConnectionError
            | urllib3.exceptions.HTTPError
            | ConnectionError
            | TimeoutError,
        ):
            return NoAnswer(f"{where}: connection interrupted ({type(exc).__name__})")
        if isinstance(exc, io.UnsupportedOperation):
            return Permanent(
                f"{where}: the body cannot be rewound",
                hint="signing over plain HTTP and retrying both need a seekable body",
            )
        if isinstance(exc, bce.NoCredentialsError | bce.PartialCredentialsError):
            return ConfigError(f"{self.site_name}: credentials incomplete")
        if isinstance(exc, bce.ParamValidationError):
            return Permanent(f"{where}: invalid request: {exc}")
        return Permanent(f"{where}: {type(exc).__name__}")

    def _body(
        self, body: WriteBody, length: int, container: str, key: str
    ) -> _BoundedBody | _ViewBody:
        if isinstance(body, bytes | bytearray | memoryview):
            if len(body) != length:
                raise Permanent(
                    f"{self._where(container, key)}: body of {len(body)} bytes, expected {length}"
                )
            return _ViewBody(body)
        bounded = _BoundedBody(body, length)
        if not bounded.seekable():
            # botocore re-reads the body to sign it over HTTP and to retry.
            raise Unsupported(
                f"{self._where(container, key)}: the S3 adapter needs a seekable body"
            )
        return bounded

    def _call(
        self, fn: Callable[..., T], container: str | None, key: str | None, **kwargs: Any
    ) -> T:
        try:
            return fn(**kwargs)
        except _CALL_ERRORS as exc:
            raise self._map_error(exc, container, key) from None

    # -- the contract ------------------------------------------------------------------

    def check(self, container: str) -> None:
        self._call(self._client.head_bucket, container, None, Bucket=container)
        # Any web server answers a HEAD with 200: the store must also list as S3 does.
        try:
            page = self._call(
                self._client.list_objects_v2, container, None, Bucket=container, MaxKeys=1
            )
        except CredentialsRejected:
            return  # credentials that may list a prefix only: their listing comes later
        if "MaxKeys" not in page and "KeyCount" not in page and "Name" not in page:
            raise EndpointUnreachable(
                f"{self.site_name}: bucket {container!r}: the endpoint does not list it as "
                "an S3 store does",
                hint="check the site's endpoint and provider: is it this store's S3 API?",
            )

    def check_account(self) -> str:
        try:
            self._client.list_buckets()
        except bce.ClientError as exc:
            # Refused the listing, not the signature: credentials known to the store.
            if exc.response.get("Error", {}).get("Code") in ("AccessDenied", "AllAccessDisabled"):
                return "credentials accepted (they may not list buckets, which no copy needs)"
            raise self._map_error(exc) from None
        except _SDK_ERRORS as exc:
            raise self._map_error(exc) from None
        return "credentials accepted (its buckets listed)"

    def create_container(self, container: str) -> None:
        kwargs: dict[str, Any] = {"Bucket": container}
        region = self._client.meta.region_name
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self._client.create_bucket(**kwargs)
        except bce.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                # BucketAlreadyExists may also mean someone else's: prove it is ours.
                self.check(container)
                return
            error = self._map_error(exc, container)
            if code == "AccessDenied":
                # Keys that may write objects but not create buckets are common (the buckets
                # made beforehand, in a console): one already there, and readable, will do.
                # (Other refusals, a wrong secret or an expired token, are what they say.)
                try:
                    self.check(container)
                    return
                except (NotFound, CredentialsRejected):
                    pass
                raise CredentialsRejected(
                    f"{self.site_name}: bucket {container!r}: creating it was refused ({code})",
                    hint="create the plan's buckets beforehand, or let these credentials "
                    "create buckets (s3:CreateBucket); then run the phase again",
                ) from None
            raise error from None
        except _SDK_ERRORS as exc:
            raise self._map_error(exc, container) from None

    def list_objects(
        self, container: str, prefix: str = "", start_after: str | None = None
    ) -> Iterator[ObjectInfo]:
        if self._walk_listing:
            return self._list_walk(container, prefix, start_after)
        return self._list_flat(container, prefix, start_after)

    def _info(self, container: str, item: Mapping[str, Any]) -> ObjectInfo:
        etag = _unquote(item.get("ETag"))
        storage_class = item.get("StorageClass")
        return ObjectInfo(
            container=container,
            key=item["Key"],
            size=int(item.get("Size", 0)),
            etag=etag,
            last_modified=item.get("LastModified"),
            # A listing carries no checksum header: only the ETag, an MD5 where plain.
            checksums={"md5": etag.lower()} if etag and _PLAIN_MD5_ETAG.match(etag) else {},
            storage_class=storage_class,
            metadata=None,
            archived=bool(item.get(_ARCHIVED, False)),  # see _mark_restores
        )

    def _mark_restores(self, container: str, page: Mapping[str, Any]) -> None:
        """Mark each object of an archive class on a listing's page with whether it cannot
        be read now. A restore leaves the class as it was and listings do not say it
        happened (AWS can, on request, but other stores ignore the request, and so does
        moto): one HEAD for each such object tells, a page's HEADs sent at once."""
        archive = [
            cast(dict[str, Any], item)
            for item in page.get("Contents", [])
            if item.get("StorageClass") in RESTORED_IN_PLACE
        ]
        if not archive:
            return
        with ThreadPoolExecutor(min(_HEADS_AT_ONCE, len(archive))) as pool:
            states = list(pool.map(partial(self._not_restored, container),
                                   [item["Key"] for item in archive]))  # fmt: skip
        for item, state in zip(archive, states, strict=True):
            item[_ARCHIVED] = state

    def _not_restored(self, container: str, key: str) -> bool:
        try:
            return self.head(container, key).archived
        except NotFound:  # deleted since it was listed: as the listing said
            return True

    def _pages(
        self, container: str, prefix: str, delimiter: str | None, start_after: str | None
    ) -> Iterator[Mapping[str, Any]]:
        # botocore asks for EncodingType=url itself and decodes each key exactly once.
        kwargs: dict[str, Any] = {"Bucket": container, "Prefix": prefix, "MaxKeys": _PAGE}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        if start_after:
            kwargs["StartAfter"] = start_after
        while True:
            if self._lean is not None:
                page = with_page_retries(partial(self._lean_list, container, dict(kwargs)))
            else:
                page = self._call(self._client.list_objects_v2, container, None, **kwargs)
            self._mark_restores(container, page)
            yield page
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated"):
                return
            if not token or token == kwargs.get("ContinuationToken"):
                # Stopping here would leave the rest of the bucket out of the inventory.
                raise Permanent(
                    f"{self.site_name}: listing {container}: the store says there is more "
                    "but gives no new continuation token (does it speak ListObjectsV2?)"
                )
            kwargs.pop("StartAfter", None)
            kwargs["ContinuationToken"] = token

    def _lean_list(self, container: str, kwargs: Mapping[str, Any]) -> Mapping[str, Any]:
        assert self._lean is not None
        url = list_url(
            self._lean.bucket_url(container),
            kwargs["Prefix"],
            kwargs.get("Delimiter"),
            kwargs.get("StartAfter"),
            kwargs.get("ContinuationToken"),
            kwargs["MaxKeys"],
        )
        lean = self._lean
        response, _ = self._call(
            lambda: lean.request("ListObjectsV2", "GET", url, {}), container, None
        )
        try:
            page = parse_list_page(response.data, _timestamp)
        except (ET.ParseError, ValueError):
            raise Permanent(
                f"{self.site_name}: listing {container}: the store's answer is not a readable "
                "listing"
            ) from None
        server = response.headers.get("server")
        page["ResponseMetadata"] = {"HTTPHeaders": {"server": server}}
        return page

    def _list_flat(
        self, container: str, prefix: str, start_after: str | None
    ) -> Iterator[ObjectInfo]:
        """The store's own order, checked: resuming, the conflict check and verify merge
        listings by key, so a store listing out of key order is refused, not trusted."""
        last: str | None = None
        first = True
        for page in self._pages(container, prefix, None, start_after):
            # Decided on this listing's first page (another listing may decide meanwhile).
            if first and self._walk_listing is not False:
                headers = page.get("ResponseMetadata", {}).get("HTTPHeaders", {})
                walk = _software_of(headers.get("server")) in _PATH_ORDERED_SOFTWARE
                self._walk_listing = walk
                if walk:  # nothing yielded yet: the walk lists from the start
                    yield from self._list_walk(container, prefix, start_after)
                    return
            first = False
            for item in page.get("Contents", []):
                key = item["Key"]
                if start_after is not None and key == start_after:
                    continue  # a store taking StartAfter as inclusive
                # Below start_after: a store that ignores it, or lists in path order (the
                # keys between would be missed): out of order too.
                below = last if last is not None else start_after
                if below is not None and key <= below:  # code point order is UTF-8 byte order
                    raise ListingOutOfOrder(
                        f"{self.site_name}: listing {container}: the store lists keys out of "
                        f"order ({key!r} after {below!r}): it lists in path order, or ignores "
                        'StartAfter; if it is SeaweedFS, declare its software = "seaweedfs" '
                        "and run again"
                    )
                last = key
                yield self._info(container, item)

    def _list_walk(
        self, container: str, prefix: str, start_after: str | None
    ) -> Iterator[ObjectInfo]:
        """Byte order on stores that list in path order (a directory's keys before its
        siblings named with a character below '/': 'a/b' before 'a b'), and whose
        StartAfter skips a key's 'directory' twin. One delimited listing per level: each
        level comes in name order, a directory 'd/' is held back until no sibling below
        'd/' in byte order can still come, then walked. Memory: one page and the held-back
        entries per level of depth."""
        pending: list[tuple[str, int, Mapping[str, Any] | None]] = []
        seq = 0
        for page in self._pages(container, prefix, "/", None):
            watermark = ""
            for item in page.get("Contents", []):
                key = item["Key"]
                if key == prefix and key.endswith("/") and not _unquote(item.get("ETag")):
                    # SeaweedFS: the directory itself, kept when its last object went (no
                    # ETag, which an object written there, a folder marker, has).
                    continue
                watermark = max(watermark, key)
                if start_after is None or key > start_after:
                    heapq.heappush(pending, (key, seq, item))
                    seq += 1
            for common in page.get("CommonPrefixes", []):
                sub = common["Prefix"]
                watermark = max(watermark, sub[:-1])
                if start_after is None or sub > start_after or start_after.startswith(sub):
                    heapq.heappush(pending, (sub, seq, None))
                    seq += 1
            # Later entries are named >= watermark: whatever sorts below it is final.
            while pending and pending[0][0] < watermark:
                yield from self._emit(container, heapq.heappop(pending), start_after)
        while pending:
            yield from self._emit(container, heapq.heappop(pending), start_after)

    def _emit(
        self,
        container: str,
        entry: tuple[str, int, Mapping[str, Any] | None],
        start_after: str | None,
    ) -> Iterator[ObjectInfo]:
        name, _, item = entry
        if item is not None:
            yield self._info(container, item)
        else:
            inner = start_after if start_after and start_after.startswith(name) else None
            yield from self._list_walk(container, name, inner)

    def head(self, container: str, key: str) -> ObjectInfo:
        r = self._call(
            self._client.head_object, container, key,
            Bucket=container, Key=key, ChecksumMode="ENABLED",
        )  # fmt: skip
        return self._described(container, key, r, int(r.get("ContentLength", 0)))

    def _described(self, container: str, key: str, r: Mapping[str, Any], size: int) -> ObjectInfo:
        """The object as a HEAD or GET response describes it."""
        etag = _unquote(r.get("ETag"))
        # HEAD omits the header for STANDARD; listings name it: report the same for both.
        storage_class = r.get("StorageClass") or "STANDARD"
        restored = 'ongoing-request="false"' in (r.get("Restore") or "")
        return ObjectInfo(
            container=container,
            key=key,
            size=size,
            etag=etag,
            last_modified=r.get("LastModified"),
            checksums=_checksums(r, etag, _etag_is_md5(r)),
            storage_class=storage_class,
            version_id=r.get("VersionId"),
            content_type=r.get("ContentType"),
            metadata=dict(r.get("Metadata", {})),
            content_encoding=r.get("ContentEncoding"),
            cache_control=r.get("CacheControl"),
            content_disposition=r.get("ContentDisposition"),
            content_language=r.get("ContentLanguage"),
            expires=_expires(r),
            archived=storage_class in RESTORED_IN_PLACE and not restored,
            tags=_tag_count(r),
        )

    def read_tags(
        self, container: str, key: str, *, version_id: str | None = None
    ) -> dict[str, str]:
        kwargs = {"VersionId": version_id} if version_id else {}
        r = self._call(
            self._client.get_object_tagging, container, key,
            Bucket=container, Key=key, **kwargs,
        )  # fmt: skip
        return {t["Key"]: t["Value"] for t in r.get("TagSet", [])}

    def open_range(
        self,
        container: str,
        key: str,
        start: int = 0,
        end: int | None = None,
        *,
        if_match: str | None = None,
        version_id: str | None = None,
    ) -> ReadStream:
        if end is not None and end <= start:
            return _EmptyStream()
        kwargs: dict[str, Any] = {"Bucket": container, "Key": key}
        if start > 0 or end is not None:
            kwargs["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        if if_match:
            kwargs["IfMatch"] = f'"{_unquote(if_match)}"'
        if version_id:
            kwargs["VersionId"] = version_id
        if self._lean is not None:
            return self._lean_get(container, key, start, end, kwargs)
        r = self._call(self._client.get_object, container, key, **kwargs)
        return self._range_answer(container, key, start, end, r, r["Body"])

    def _lean_get(
        self, container: str, key: str, start: int, end: int | None, kwargs: Mapping[str, str]
    ) -> ReadStream:
        assert self._lean is not None
        # A bounded range is at most that long: a small one is held whole (libcurl).
        small = None if end is None else end - start
        url = self._lean.url(container, key)
        if "VersionId" in kwargs:
            url += "?versionId=" + quote(kwargs["VersionId"], safe="")
        headers = {"If-Match": kwargs["IfMatch"]} if "IfMatch" in kwargs else {}
        if "Range" in kwargs:
            headers["Range"] = kwargs["Range"]
        lean = self._lean
        response, r = self._call(
            lambda: lean.request("GetObject", "GET", url, headers, stream=True, small_answer=small),
            container,
            key,
        )
        return self._range_answer(container, key, start, end, r, _LeanBody(response))

    def _range_answer(
        self,
        container: str,
        key: str,
        start: int,
        end: int | None,
        r: Mapping[str, Any],
        body: Any,
    ) -> ReadStream:
        """The stream of a GetObject answer (either path), once it is the range asked."""
        if start > 0 or end is not None:
            wrong = wrong_range(r.get("ContentRange"), start, end)
            if wrong is not None:
                body.close()
                raise Permanent(f"{self.site_name}: {container}/{key}: {wrong}")
        # "bytes 0-99/1234": the whole object's size is after the slash.
        whole = str(r.get("ContentRange") or "").rpartition("/")[2]
        size = int(whole) if whole.isdigit() else int(r.get("ContentLength", 0))
        return _RangeStream(
            body,
            lambda exc: self._map_error(exc, container, key),
            self._described(container, key, r, size),
        )

    def _lean_put(
        self,
        container: str,
        key: str,
        body: bytes | bytearray | memoryview,
        attrs: WriteAttrs,
        checksums: Mapping[str, str],
        expect: str | None,
    ) -> Mapping[str, Any] | None:
        """PUT a small in-memory body on the lean path; None where its headers need
        botocore's handling (non-ASCII values, unusual metadata names)."""
        assert self._lean is not None
        headers = {"Content-Length": str(len(body))}
        if expect == ABSENT:
            headers["If-None-Match"] = "*"
        elif expect is not None:
            headers["If-Match"] = f'"{expect}"'

        for name, value in (
            ("Content-Type", attrs.content_type),
            ("Content-Encoding", attrs.content_encoding),
            ("Cache-Control", attrs.cache_control),
            ("Content-Disposition", attrs.content_disposition),
            ("Content-Language", attrs.content_language),
            ("Expires", attrs.expires),
            ("x-amz-storage-class", attrs.storage_class),
            ("x-amz-tagging", tagging_header(attrs.tags) if attrs.tags else None),
        ):
            if value:
                headers[name] = value
        for name, value in attrs.metadata.items():
            if not HEADER_TOKEN.match(name):
                return None
            headers[f"x-amz-meta-{name}"] = value
        kwargs = self._checksum_kwargs(checksums)
        if "ContentMD5" in kwargs:
            headers["Content-MD5"] = kwargs["ContentMD5"]
        if "ChecksumSHA256" in kwargs:
            headers["x-amz-checksum-sha256"] = kwargs["ChecksumSHA256"]
        if not all(plain_header_value(v) for v in headers.values()):
            return None
        url, data, lean = self._lean.url(container, key), bytes(body), self._lean
        # A checksum header the store verifies is the body's SHA-256: it signs the payload.
        known = checksums["sha256"] if "ChecksumSHA256" in kwargs else None
        _, r = self._call(
            lambda: lean.request("PutObject", "PUT", url, headers, data, payload_sha256=known),
            container,
            key,
        )
        return r

    def _lean_upload_part(
        self,
        container: str,
        key: str,
        upload_id: str,
        part_number: int,
        body: memoryview,
        checksums: Mapping[str, str],
    ) -> Mapping[str, Any] | None:
        """Send one part on the lean path: the caller's buffer as it is, signed with the
        SHA-256 the store verifies. None where that SHA-256 is not at hand."""
        assert self._lean is not None
        kwargs = self._checksum_kwargs(checksums)
        if self._sha256_parts() and "ChecksumSHA256" not in kwargs:
            return None  # botocore computes it (see upload_part)
        headers = {"Content-Length": str(len(body))}
        if "ContentMD5" in kwargs:
            headers["Content-MD5"] = kwargs["ContentMD5"]
        known = None
        if "ChecksumSHA256" in kwargs:
            headers["x-amz-checksum-sha256"] = kwargs["ChecksumSHA256"]
            known = checksums["sha256"]
        url = (
            f"{self._lean.url(container, key)}?partNumber={part_number}"
            f"&uploadId={quote(upload_id, safe='')}"
        )
        lean = self._lean
        _, r = self._call(
            lambda: lean.request("UploadPart", "PUT", url, headers, body, payload_sha256=known),
            container,
            key,
        )
        return r

    def _write_kwargs(self, attrs: WriteAttrs) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if attrs.content_type:
            kwargs["ContentType"] = attrs.content_type
        if attrs.content_encoding:
            kwargs["ContentEncoding"] = attrs.content_encoding
        if attrs.cache_control:
            kwargs["CacheControl"] = attrs.cache_control
        if attrs.content_disposition:
            kwargs["ContentDisposition"] = attrs.content_disposition
        if attrs.content_language:
            kwargs["ContentLanguage"] = attrs.content_language
        if attrs.expires and (when := expires_instant(attrs.expires)) is not None:
            # botocore sends a date, written its own way (verify compares the moment); a
            # value that is no date cannot go through it (nor is it held against the copy).
            kwargs["Expires"] = when
        if attrs.metadata:
            kwargs["Metadata"] = dict(attrs.metadata)
        if attrs.storage_class:
            kwargs["StorageClass"] = attrs.storage_class
        if attrs.tags:
            kwargs["Tagging"] = tagging_header(attrs.tags)
        return kwargs

    def _checksum_kwargs(self, checksums: Mapping[str, str]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if "md5" in checksums:
            kwargs["ContentMD5"] = _hex_to_b64(checksums["md5"])
        if "sha256" in checksums and "sha256" in self.capabilities.verifies_checksums:
            kwargs["ChecksumSHA256"] = _hex_to_b64(checksums["sha256"])
        return kwargs

    def put_object(
        self,
        container: str,
        key: str,
        body: WriteBody,
        length: int,
        attrs: WriteAttrs,
        checksums: Mapping[str, str],
        *,
        expect: str | None = None,
    ) -> WriteResult:
        r: Mapping[str, Any] | None = None
        with self._conditioned(container, key, expect):
            if (
                self._lean is not None
                and isinstance(body, bytes | bytearray | memoryview)
                and len(body) == length <= MAX_LEAN_PUT
            ):
                r = self._lean_put(container, key, body, attrs, checksums, expect)
            if r is None:
                r = self._call(
                    self._client.put_object, container, key,
                    Bucket=container, Key=key, Body=self._body(body, length, container, key),
                    ContentLength=length, **self._write_kwargs(attrs),
                    **self._checksum_kwargs(checksums), **_condition_kwargs(expect),
                )  # fmt: skip
        etag = _unquote(r.get("ETag"))
        return WriteResult(
            etag=etag,
            version_id=r.get("VersionId"),
            checksums=_checksums(r, etag, _etag_is_md5(r)),
            etag_hashes_bytes=_etag_is_md5(r),
        )

    @contextlib.contextmanager
    def _conditioned(self, container: str, key: str, expect: str | None) -> Iterator[None]:
        """A write's 412 is the key holding another object than `expect` named (a read's
        412 is the source changing: SourceChanged)."""
        try:
            yield
        except (SourceChanged, _KeyNotFound) as failed:
            # AWS answers a write expecting an ETag, the key now empty, 404 NoSuchKey.
            if expect is None or (isinstance(failed, _KeyNotFound) and expect == ABSENT):
                raise
            raise PreconditionFailed(
                f"{self._where(container, key)}: the key holds "
                + ("an object" if expect == ABSENT else "another object than the one expected")
                + " (the write's condition failed); nothing was written"
            ) from None

    def _sha256_parts(self) -> bool:
        return "sha256" in self.capabilities.verifies_checksums

    def create_multipart(self, container: str, key: str, attrs: WriteAttrs) -> str:
        kwargs = self._write_kwargs(attrs)
        if self._sha256_parts():
            # Declared here so that each part's SHA-256 is verified and kept by the store.
            kwargs["ChecksumAlgorithm"] = "SHA256"
        r = self._call(
            self._client.create_multipart_upload, container, key,
            Bucket=container, Key=key, **kwargs,
        )  # fmt: skip
        return r["UploadId"]

    def upload_part(
        self,
        container: str,
        key: str,
        upload_id: str,
        part_number: int,
        body: WriteBody,
        length: int,
        checksums: Mapping[str, str],
    ) -> PartResult:
        r: Mapping[str, Any] | None = None
        if self._lean is not None and isinstance(body, memoryview) and len(body) == length:
            r = self._lean_upload_part(container, key, upload_id, part_number, body, checksums)
        if r is None:
            kwargs = self._checksum_kwargs(checksums)
            if self._sha256_parts() and "ChecksumSHA256" not in kwargs:
                # The upload declared SHA-256: botocore computes it for this part.
                kwargs["ChecksumAlgorithm"] = "SHA256"
            r = self._call(
                self._client.upload_part, container, key,
                Bucket=container, Key=key, UploadId=upload_id, PartNumber=part_number,
                Body=self._body(body, length, container, key), ContentLength=length, **kwargs,
            )  # fmt: skip
        etag = _unquote(r.get("ETag"))
        return PartResult(
            part_number=part_number,
            etag=etag,
            size=length,
            checksums=_checksums(r, etag, _etag_is_md5(r)),
            etag_hashes_bytes=_etag_is_md5(r),
        )

    def complete_multipart(
        self,
        container: str,
        key: str,
        upload_id: str,
        parts: Sequence[PartResult],
        attrs: WriteAttrs | None = None,  # set at create: S3 and this store keep them
        *,
        expect: str | None = None,
    ) -> WriteResult:
        listed: list[dict[str, Any]] = []
        for part in sorted(parts, key=lambda p: p.part_number):
            entry: dict[str, Any] = {"PartNumber": part.part_number, "ETag": f'"{part.etag}"'}
            sha = part.checksums.get("sha256")
            if sha and self._sha256_parts() and "-" not in sha:
                entry["ChecksumSHA256"] = _hex_to_b64(sha)
            listed.append(entry)
        with self._conditioned(container, key, expect):
            r = self._call(
                self._client.complete_multipart_upload, container, key,
                Bucket=container, Key=key, UploadId=upload_id,
                MultipartUpload={"Parts": listed}, **_condition_kwargs(expect),
            )  # fmt: skip
        etag = _unquote(r.get("ETag"))
        return WriteResult(
            etag=etag,
            version_id=r.get("VersionId"),
            checksums=_checksums(r, etag, etag_is_md5=False),
            etag_hashes_bytes=_etag_is_md5(r),
        )

    def replace_metadata(
        self,
        container: str,
        key: str,
        attrs: WriteAttrs,
        *,
        if_match: str,
        size: int,
        version_id: str | None = None,
    ) -> WriteResult:
        """A copy of the object onto itself with the new attributes (S3 has no other way to
        change metadata), conditioned on the current object's ETag: the store copies,
        nothing is sent. In a versioned bucket the copy is a new version, and `version_id`,
        written with that ETag, is then a duplicate: it is removed."""
        if size > self.capabilities.max_copy_size:
            done = self._replace_by_parts(container, key, attrs, if_match, size)
        else:
            done = self._copy_onto_itself(container, key, attrs, if_match)
        self._drop_duplicate_version(container, key, version_id, done)
        return done

    def _drop_duplicate_version(
        self, container: str, key: str, duplicate: str | None, copy: WriteResult
    ) -> None:
        """Remove exactly the version a copy onto itself made redundant. The copy was
        conditioned on the current object's ETag, the one `duplicate` was written with, so
        the new version holds its bytes (a writer in between changed the ETag and failed the
        copy). One under a retention lock stays, and so does one that cannot be removed now:
        the copy is in place, and a duplicate costs storage, not integrity. Unless the store
        answers that exactly that version went, the object must still be the copy: a store
        that ignored the version and hid the object behind a delete marker fails it."""
        if not duplicate or duplicate == _NULL_VERSION:
            return
        if not copy.version_id or copy.version_id == duplicate:
            return
        try:
            r = self._call(
                self._client.delete_object, container, key,
                Bucket=container, Key=key, VersionId=duplicate,
            )  # fmt: skip
        except MigrateError:
            return
        if r.get("VersionId") == duplicate and not r.get("DeleteMarker"):
            return
        try:
            current = self.head(container, key)
        except NotFound:
            current = None
        if current is None or (copy.etag is not None and current.etag != copy.etag):
            raise Permanent(
                f"{self.site_name}: {container}/{key}: after removing the duplicate version "
                f"{duplicate}, the object is no longer the copy just written",
                hint="this store's versioning does not behave as S3's: check the object, and "
                "plan with --no-large-object-sha256 for it",
            )

    def _copy_onto_itself(
        self, container: str, key: str, attrs: WriteAttrs, if_match: str
    ) -> WriteResult:
        source = {"Bucket": container, "Key": key}
        extra: dict[str, Any] = {}
        if self._sha256_parts():
            # Stores that recompute it give the whole object's SHA-256 back: one more proof.
            extra["ChecksumAlgorithm"] = "SHA256"
        # No tags sent: the copy keeps the object's own (TaggingDirective COPY). Sent again,
        # some stores refuse what their PUT took (SeaweedFS: a value with '&' or '%').
        kept = self._write_kwargs(replace(attrs, tags=None))
        r = self._call(
            self._client.copy_object, container, key,
            Bucket=container, Key=key, CopySource=source, CopySourceIfMatch=f'"{if_match}"',
            MetadataDirective="REPLACE", **kept, **extra,
        )  # fmt: skip
        result = r.get("CopyObjectResult", {})
        etag = _unquote(result.get("ETag"))
        return WriteResult(
            etag=etag,
            version_id=r.get("VersionId"),
            checksums=_checksums(result, etag, etag_is_md5=False),
        )

    def _replace_by_parts(
        self, container: str, key: str, attrs: WriteAttrs, if_match: str, size: int
    ) -> WriteResult:
        """Above the single-copy limit: a multipart upload whose parts are server-side
        copies of ranges of the object, each conditioned on its ETag; aborted on failure,
        so the object stays as it was."""
        caps = self.capabilities
        part = max(-(-size // caps.max_parts), min(caps.max_copy_size, caps.max_part_size))
        if attrs.tags is None:  # a new object: it keeps the tags only if they are set again
            attrs = replace(attrs, tags=self.read_tags(container, key))
        upload_id = self.create_multipart(container, key, attrs)
        try:
            parts: list[PartResult] = []
            for number, start in enumerate(range(0, size, part), start=1):
                end = min(size, start + part) - 1
                r = self._call(
                    self._client.upload_part_copy, container, key,
                    Bucket=container, Key=key, UploadId=upload_id, PartNumber=number,
                    CopySource={"Bucket": container, "Key": key},
                    CopySourceRange=f"bytes={start}-{end}", CopySourceIfMatch=f'"{if_match}"',
                )  # fmt: skip
                result = r.get("CopyPartResult", {})
                etag = _unquote(result.get("ETag"))
                sums = _checksums(result, etag, etag_is_md5=False)
                parts.append(PartResult(number, etag, end - start + 1, sums))
            return self.complete_multipart(container, key, upload_id, parts, attrs)
        except BaseException:
            with contextlib.suppress(MigrateError):
                self.abort_multipart(container, key, upload_id)
            raise

    def abort_multipart(self, container: str, key: str, upload_id: str) -> None:
        try:
            self._client.abort_multipart_upload(Bucket=container, Key=key, UploadId=upload_id)
        except bce.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NoSuchUpload":
                return  # already aborted or completed: the contract asks for no error
            raise self._map_error(exc, container, key) from None
        except _SDK_ERRORS as exc:
            raise self._map_error(exc, container, key) from None

    def list_multipart_uploads(self, container: str, prefix: str = "") -> Iterator[UploadInfo]:
        kwargs: dict[str, Any] = {"Bucket": container, "Prefix": prefix, "MaxUploads": _PAGE}
        while True:
            page = self._call(self._client.list_multipart_uploads, container, None, **kwargs)
            for item in page.get("Uploads", []):
                initiated: datetime | None = item.get("Initiated")
                yield UploadInfo(
                    container=container,
                    key=item["Key"],
                    upload_id=item["UploadId"],
                    initiated=initiated,
                )
            if not page.get("IsTruncated"):
                return
            kwargs["KeyMarker"] = page.get("NextKeyMarker", "")
            kwargs["UploadIdMarker"] = page.get("NextUploadIdMarker", "")

    def list_parts(self, container: str, key: str, upload_id: str) -> Iterator[PartResult]:
        kwargs: dict[str, Any] = {
            "Bucket": container,
            "Key": key,
            "UploadId": upload_id,
            "MaxParts": _PAGE,
        }
        while True:
            page = self._call(self._client.list_parts, container, key, **kwargs)
            last = None
            for item in page.get("Parts", []):
                etag = _unquote(item.get("ETag"))
                last = int(item["PartNumber"])
                yield PartResult(
                    part_number=last,
                    etag=etag,
                    size=int(item.get("Size", 0)),
                    checksums=_checksums(item, etag, etag_is_md5=True),
                )
            # A store that leaves out NextPartNumberMarker is read on from its last part,
            # never from the start again (that would list the first page for ever).
            marker = page.get("NextPartNumberMarker") or last
            if not page.get("IsTruncated") or not marker:
                return
            kwargs["PartNumberMarker"] = marker

    def replication(self, container: str) -> Replication:
        """The bucket's replication rules (GetBucketReplication): each enabled rule's
        destination bucket is a target. Its region is the ARN's where the ARN names one,
        else the `x-amz-bucket-region` header of a HEAD on that bucket sent to this site's
        own endpoint (AWS sends the header with a 301 or 403 too; nothing is followed).

        ReplicationConfigurationNotFoundError: no replication (known). AccessDenied,
        NotImplemented or any other refusal of this one call: known=False, with the reason.
        Replication set up outside the S3 API (a self-hosted store's own sync, Ceph
        multisite zones) is not visible here."""
        where = self._where(container, None)
        try:
            answer = self._client.get_bucket_replication(Bucket=container)
        except bce.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code == "ReplicationConfigurationNotFoundError":
                return Replication(detail=f"{where}: no bucket replication configured")
            error = self._map_error(exc, container)
            if code != "AccessDenied" and isinstance(error, _FATAL_FOR_REPLICATION):
                raise error from None
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            why = (
                "the credentials may not read it (s3:GetReplicationConfiguration)"
                if code == "AccessDenied"
                else f"the store answered {code or 'an error'} (HTTP {status})"
            )
            return Replication(
                known=False, detail=f"{where}: replication settings not readable: {why}"
            )
        except _SDK_ERRORS as exc:
            raise self._map_error(exc, container) from None
        targets: list[ReplicationTarget] = []
        regions: dict[str, str | None] = {}
        for rule in answer.get("ReplicationConfiguration", {}).get("Rules", []):
            if rule.get("Status") != "Enabled":
                continue
            destination: Mapping[str, Any] = rule.get("Destination", {})
            arn = str(destination.get("Bucket", ""))
            bucket, region = _bucket_of_arn(arn)
            if region is None and bucket:
                if bucket not in regions:
                    regions[bucket] = self._bucket_region(bucket)
                region = regions[bucket]
            name = rule.get("ID") or f"priority {rule.get('Priority', '?')}"
            account = destination.get("Account")
            targets.append(
                ReplicationTarget(
                    kind="bucket-replication",
                    region=region,
                    description=f"{where}: replication rule {name!r} copies objects to bucket "
                    f"{bucket or arn!r}" + (f" of account {account}" if account else ""),
                )
            )
        detail = f"{where}: {len(targets)} enabled replication rule(s)"
        return Replication(targets=tuple(targets), detail=detail)

    def _optional(
        self, fn: Callable[[], Mapping[str, Any]], container: str, what: str, unknown: list[str]
    ) -> tuple[Mapping[str, Any] | None, str]:
        """One settings call: (answer, "") or, when the store refuses this call only,
        (None, error code) with the reason added to `unknown`. Missing bucket, rejected
        credentials and an unreachable endpoint propagate."""
        try:
            return fn(), ""
        except bce.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code == "ObjectLockConfigurationNotFoundError":
                return None, code  # an answer: the bucket has no Object Lock
            error = self._map_error(exc, container)
            if code != "AccessDenied" and isinstance(error, _FATAL_FOR_REPLICATION):
                raise error from None
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            unknown.append(f"{what}: {code or 'error'} (HTTP {status})")
            return None, code
        except _SDK_ERRORS as exc:
            raise self._map_error(exc, container) from None

    def protection(self, container: str) -> Protection:
        """GetBucketVersioning, GetObjectLockConfiguration and, on a versioned bucket, one
        page of ListObjectVersions (1,000 entries) to count older versions and delete
        markers. Legal holds and retention on S3 are per object (a request each): with
        Object Lock on they are unknown, without it there are none."""
        where = self._where(container, None)
        unknown: list[str] = []
        answer, _ = self._optional(
            lambda: self._client.get_bucket_versioning(Bucket=container),
            container, "versioning", unknown,
        )  # fmt: skip
        versioning: Literal["enabled", "suspended", "off"] | None = None
        if answer is not None:
            status = answer.get("Status")
            versioning = (
                "enabled"
                if status == "Enabled"
                else "suspended"
                if status == "Suspended"
                else "off"
            )
        lock_answer, code = self._optional(
            lambda: self._client.get_object_lock_configuration(Bucket=container),
            container, "object lock", unknown,
        )  # fmt: skip
        lock: bool | None = None
        if lock_answer is not None:
            config = lock_answer.get("ObjectLockConfiguration", {})
            lock = config.get("ObjectLockEnabled") == "Enabled"
        elif code == "ObjectLockConfigurationNotFoundError":
            lock = False
        older: int | None = 0 if versioning == "off" else None
        counted_all = True
        if versioning in ("enabled", "suspended"):
            page, _ = self._optional(
                lambda: self._client.list_object_versions(Bucket=container, MaxKeys=_PAGE),
                container, "versions", unknown,
            )  # fmt: skip
            if page is not None:
                versions = page.get("Versions", [])
                older = sum(1 for v in versions if not v.get("IsLatest"))
                older += len(page.get("DeleteMarkers", []))
                counted_all = not page.get("IsTruncated")
        detail = f"{where}: versioning {versioning or 'unknown'}, object lock " + (
            "unknown" if lock is None else "on" if lock else "off"
        )
        if unknown:
            detail += "; not readable: " + ", ".join(unknown)
        return Protection(
            versioning=versioning,
            older_versions=older,
            counted_all=counted_all,
            object_lock=lock,
            legal_hold=None if lock is not False else False,
            detail=detail,
        )

    def _bucket_region(self, bucket: str) -> str | None:
        """The region S3 says a bucket is in, from one HEAD to this site's endpoint; None
        when the answer does not say (or the routing guard refuses the bucket's host)."""
        try:
            answer: Mapping[str, Any] = self._client.head_bucket(Bucket=bucket)
        except bce.ClientError as exc:
            answer = exc.response
        except RouteRefused:
            return None
        except _SDK_ERRORS as exc:
            raise self._map_error(exc, bucket) from None
        headers = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        region = headers.get("x-amz-bucket-region")
        return str(region) if region else None

    def delete(self, container: str, key: str) -> None:
        # S3 answers 204 for an absent key too; a NotFound here means the bucket is gone.
        self._call(self._client.delete_object, container, key, Bucket=container, Key=key)

    def close(self) -> None:
        self._client.close()
        if self._lean is not None:
            self._lean.close()


def _expires(r: Mapping[str, Any]) -> str | None:
    """The Expires header as the store gave it (botocore keeps the text as ExpiresString and
    parses a valid one into Expires; the lean path gives the text alone)."""
    raw = r.get("ExpiresString")
    if raw:
        return str(raw)
    when = r.get("Expires")
    if isinstance(when, datetime):
        return format_datetime(when.astimezone(UTC), usegmt=True)
    return str(when) if when else None
