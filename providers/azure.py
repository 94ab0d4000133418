"""Azure Blob Storage: the adapter for `provider = "azure"` sites (and Azurite in tests).

Two libraries, each where it does what the contract needs:

- apache-libcloud (Azure Blobs driver) for the container calls: `check` (HEAD container)
  and `create_container`. They need nothing libcloud's driver lacks.
- azure-storage-blob (BlobServiceClient / ContainerClient / BlobClient) for everything on
  blobs, because libcloud 3.9's driver falls short there:
  - listing: pages are fixed at 100 blobs per request (the SDK asks for 5,000, 50 times
    fewer round trips) and carry no access tier, which the inventory needs (an Archive
    blob needs rehydration before it can be read);
  - head: `get_object` gives neither the access tier nor Cache-Control, and costs two
    requests (container, then blob);
  - ranged read: no If-Match, so a blob rewritten during its copy would go unnoticed;
  - writes: `upload_object_via_stream` computes its own MD5 and cuts the stream into
    4 MiB blocks, so the server never checks the caller's MD5 and a wrong body is stored;
    there is no call to stage one block with its MD5, commit a block list, or list the
    uncommitted blocks of an upload being resumed;
  - delete: the driver builds the path with `urljoin`, which collapses `a//b`: the wrong
    blob (or none) would be deleted.

Guarantees and limits specific to Azure:

- Multipart is a block blob: `create_multipart` stores nothing and returns a random id;
  each part is a block whose id is `<upload id>-<part number, 6 digits>` (equal lengths, as
  Azure requires), staged with its Content-MD5, which the service verifies; complete
  commits the block list in part order. Nothing is visible before the commit.
- Azure has no "upload" object: unfinished uploads cannot be listed (`lists_uploads` is
  False) and there is no call to drop uncommitted blocks, so `abort_multipart` stores and
  deletes nothing; Azure discards uncommitted blocks after 7 days.
- `complete_multipart` (whose contract carries no attributes) sets the content settings,
  metadata and tier given to `create_multipart`, kept in memory by upload id. A process
  that resumes an upload after a crash must pass them to `complete_multipart(attrs=...)`;
  otherwise the blob is committed without them.
- `put_object` and `upload_part` read their body into memory (at most `max_single_put` /
  the part size) so that a short body fails at once and a retry can resend the same bytes;
  the MD5 goes to the service, which refuses a mismatch and stores nothing. SHA-1/SHA-256
  given by the caller are checked here, before sending.
- `open_range` is one Get Blob of the whole range, read as the caller asks, on the lean
  path (providers/azure_lean.py) for sites with an account key or SAS and no proxy; else
  through the SDK in chunks of 4 MiB (one GET each, every one conditioned on the ETag of
  the first), so an open stream holds at most 4 MiB.
- Listing has no StartAfter on the service versions Azurite and most accounts speak:
  `start_after` re-lists from the prefix and skips the keys up to it, page by page.
- Keys with `.`/`..` path segments or a backslash cannot be stored as given (URLs
  normalize them, Azure turns `\\` into `/`): writes refuse them with Unsupported, reads
  say NotFound, delete does nothing (their URL would name another blob).
- Errors: one function (`AzureAdapter._fail`) maps both libraries' exceptions; the SDK
  retries twice with short waits, so an unreachable endpoint fails in under 30 s.

Routing: both libraries send through `requests`; one `HTTPAdapter` mounted on each session
calls `guard.check` before every request (retries included) and `guard.record` after.
Redirects are never followed (the SDK's redirect policy is off, libcloud's session allows
none), environment proxies are ignored, and the site's declared proxy is used.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
import ssl
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, NoReturn
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

import requests
from azure.core import MatchConditions
from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import RequestsTransport
from libcloud.common.azure import AZURE_TIME_FORMAT
from libcloud.common.types import InvalidCredsError, LibcloudError
from libcloud.storage.drivers.azure_blobs import (
    AzureBlobsConnection,
    AzureBlobsStorageDriver,
)
from libcloud.storage.types import (
    ContainerAlreadyExistsError,
    ContainerDoesNotExistError,
    InvalidContainerNameError,
)
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import SSLError as Urllib3SSLError
from urllib3.util.retry import Retry

from migrate.errors import (
    ChecksumMismatch,
    ConfigError,
    CredentialsRejected,
    EndpointUnreachable,
    KeyRejected,
    MigrateError,
    NoAnswer,
    NotFound,
    Permanent,
    PreconditionFailed,
    Retryable,
    SourceChanged,
    Unsupported,
)
from migrate.routing import endpoint_host, is_loopback
from migrate.sites import Site, proxy_url, resolve_credentials
from providers.azure_lean import (
    AzureAnswer,
    LeanBlobReads,
    ListedBlob,
    can_sign,
    header_map,
    parse_blob_list,
)
from providers.base import (
    ABSENT,
    Capabilities,
    ObjectInfo,
    PartResult,
    Protection,
    ReadStream,
    Replication,
    ReplicationTarget,
    RequestGuard,
    UploadInfo,
    WriteAttrs,
    WriteBody,
    WriteResult,
    not_a_url,
    proxy_failed,
    proxy_refused,
    tunnel_refused_407,
    unresolved,
    wrong_range,
)
from providers.lean_http import with_page_retries

if TYPE_CHECKING:
    from azure.storage.blob import (
        BlobClient,
        BlobProperties,
        BlobServiceClient,
        ContainerClient,
        ContentSettings,
        StandardBlobTier,
        StorageStreamDownloader,
    )

_MiB = 1024 * 1024
_MAX_SINGLE_PUT = 256 * _MiB  # Azure takes 5000 MiB; the body is held in memory
_MAX_BLOCK = 4000 * _MiB  # Azure's largest block
_MAX_BLOCKS = 50_000
# Uploads whose attributes are kept for a completion given none: far more than are in flight.
_UPLOAD_ATTRS_KEPT = 4096
_CHUNK_GET = 4 * _MiB  # bytes per GET of a ranged read, and an open stream's buffer
_READ_BLOCK = 256 * 1024  # bytes per read from the socket while a GET's body arrives
_PAGE = 5000  # blobs per List Blobs request (the service's maximum)
# Blob index tags, as Set Blob Tags documents them: at most 10; a key of 1-128 characters,
# a value of 0-256; ASCII letters, digits, space and + - . / : = _ only (S3's may hold
# more: '&', '@', accented letters).
_MAX_TAGS = 10
_TAG_TEXT = re.compile(r"[A-Za-z0-9 +\-./:=_]*")
_CONNECT_TIMEOUT = 5
_READ_TIMEOUT = 60
_LIBCLOUD_TIMEOUT = 10  # libcloud has one timeout for connect and read: container calls only
_DEFAULT_SUFFIX = "core.windows.net"
_ARCHIVE = "Archive"
# What a call through either library may raise besides the project's errors.
_NETWORK_ERRORS = (AzureError, requests.RequestException, Urllib3Error, OSError)
_META_HEADER = "x-ms-meta-"
_CONNECT_FAILURES = (NewConnectionError, NameResolutionError, ConnectTimeoutError)
_RETRYABLE_CODES = {"ServerBusy", "OperationTimedOut", "InternalError", "TooManyRequests"}
# 403 codes that mean "these credentials may not do this call", not "wrong credentials".
_PERMISSION_CODES = {
    "AuthorizationPermissionMismatch",
    "AuthorizationResourceTypeMismatch",
    "AuthorizationServiceMismatch",
    "AuthorizationProtocolMismatch",
    "AuthorizationSourceIPMismatch",
}

# A geo-redundant account (GRS, RA-GRS, GZRS, RA-GZRS) keeps its secondary copy in the region
# paired with its primary: "The paired secondary region is determined based on the primary
# region, and can't be changed" (Microsoft, articles/storage/common/storage-redundancy.md in
# MicrosoftDocs/azure-docs, ms.date 2023-07-17). The pairs below are the European rows of
# "Azure regional pairs" (https://learn.microsoft.com/azure/reliability/cross-region-replication-azure,
# MicrosoftDocs/azure-docs articles/reliability/cross-region-replication-azure.md, ms.date
# 2022-12-12, read 2026-11-23), each row two-way. Region codes are the display names in lower
# case without spaces. A region missing here (e.g. the unpaired Poland Central, Italy North)
# has an unknown secondary: the plan says so rather than guessing.
AZURE_REGION_PAIRS: dict[str, str] = {
    "northeurope": "westeurope",
    "westeurope": "northeurope",
    "francecentral": "francesouth",
    "francesouth": "francecentral",
    "germanywestcentral": "germanynorth",
    "germanynorth": "germanywestcentral",
    "norwayeast": "norwaywest",
    "norwaywest": "norwayeast",
    "swedencentral": "swedensouth",
    "swedensouth": "swedencentral",
    "switzerlandnorth": "switzerlandwest",
    "switzerlandwest": "switzerlandnorth",
    "uksouth": "ukwest",
    "ukwest": "uksouth",
}


@dataclass(frozen=True)
class _Target:
    """Where and how to talk to the account (the key and SAS never leave this object)."""

    endpoint: str  # service URL, e.g. https://acct.blob.core.windows.net or http://h:p/acct
    account: str
    account_key: str | None
    sas: str | None

    def __repr__(self) -> str:
        return f"_Target(endpoint={self.endpoint!r}, account={self.account!r})"


def _parse_connection_string(value: str) -> dict[str, str]:
    parts: dict[str, str] = {}
    for item in value.split(";"):
        if "=" in item:
            name, _, val = item.partition("=")  # values (keys, SAS) may hold '='
            parts[name.strip().lower()] = val.strip()
    return parts


# Azure's container names (learn.microsoft.com, "Naming and referencing containers, blobs,
# and metadata"): 3 to 63 lowercase letters, digits and hyphens, a letter or digit at each
# end, no two hyphens together; and the service's own $root, $web and $logs.
_CONTAINER_NAME = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$|^\$(root|web|logs)$")


def _host_port(url: str) -> str:
    """host[:port] of an endpoint, as the allowlist writes it; its text if unreadable (never
    a user:password: a connection string's endpoint holding one is refused before)."""
    try:
        return endpoint_host(url)
    except MigrateError:
        return urlsplit(url).netloc.rpartition("@")[2] or url


def _check_container_names(site: Site) -> None:
    """A name Azure cannot have is a mistake in the sites file: said before any request
    (the service answers it with a generic 400)."""
    for name in site.buckets:
        if not _CONTAINER_NAME.match(name):
            raise ConfigError(
                f"site {site.name}: {name!r} cannot be an Azure container's name (3 to 63 "
                "lowercase letters, digits and hyphens, a letter or digit at each end, no "
                "two hyphens together)",
                hint="write the container's name as the Azure portal shows it",
            )


def _target(site: Site, expected_endpoint: str | None = None) -> _Target:
    """`expected_endpoint`: the endpoint the catalog gives this site (the one its plan
    judges and allows), when the site declares none."""
    _check_container_names(site)
    creds = resolve_credentials(site)
    conn = _parse_connection_string(creds.connection_string or "")
    account = site.account or conn.get("accountname")
    endpoint = site.endpoint or conn.get("blobendpoint")
    named = conn.get("blobendpoint")
    if named is not None:
        try:
            split = urlsplit(named)
            split.port  # noqa: B018 (read for its check: a port out of range or not a number)
            readable = bool(split.hostname) and split.scheme in ("http", "https")
        except ValueError:  # an unclosed `[` (urlsplit's "Invalid IPv6 URL"), a bad port
            readable = False
        if not readable:
            raise ConfigError(
                f"site {site.name}: the connection string's BlobEndpoint is not a URL "
                "with a host (scheme://host[:port][/path], the port a number up to 65535)",
                hint="copy the connection string again from the storage account's access "
                "keys, or remove its BlobEndpoint and declare the site's `endpoint`",
            )
    if site.endpoint and named and _host_port(named) != _host_port(site.endpoint):
        # The site's endpoint is used and the other host ignored: said, as when the site
        # declares none (a walkthrough: requests went where the file said, silently).
        raise ConfigError(
            f"site {site.name}: the connection string points at {_host_port(named)}, the "
            f"site's endpoint at {_host_port(site.endpoint)}",
            hint="make them name the same host: which one the data should go to is the "
            "site's `endpoint`, the one plans judge and allow",
        )
    if not endpoint and account:
        protocol = conn.get("defaultendpointsprotocol", "https")
        suffix = conn.get("endpointsuffix", _DEFAULT_SUFFIX)
        endpoint = f"{protocol}://{account}.blob.{suffix}"
    if not endpoint:
        raise ConfigError(
            f"site {site.name}: an Azure site needs `account` (or `endpoint`)",
            hint='write account = "STORAGE_ACCOUNT_NAME" in the site',
        )
    endpoint = endpoint.rstrip("/")
    parsed = urlsplit(endpoint)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise not_a_url(site.name, endpoint)
    if not account:
        # Path-style endpoints (emulators) name the account in the path.
        path_account = parsed.path.strip("/").split("/")[0]
        account = path_account or parsed.hostname.split(".")[0]
    if parsed.scheme == "http" and not site.allow_http and not is_loopback(parsed.hostname):
        raise ConfigError(
            f"site {site.name}: endpoint {endpoint} is plain HTTP beyond this machine",
            hint="use https, or declare allow_http = true in the site",
        )
    key = conn.get("accountkey") or creds.account_key
    sas = conn.get("sharedaccesssignature") or creds.sas_token
    if not key and not sas:
        if creds.connection_string:
            # Set, but holding neither: say so rather than ask for what is set.
            variable = site.credentials.connection_string_env if site.credentials else None
            raise ConfigError(
                f"site {site.name}: the connection string in ${variable} holds no "
                "AccountKey= nor SharedAccessSignature=",
                hint="copy it again from the storage account's access keys, or use "
                "credentials.account_key_env or sas_token_env",
            )
        raise ConfigError(
            f"site {site.name}: no Azure credentials",
            hint="set credentials.connection_string_env, account_key_env or sas_token_env",
        )
    if key:
        try:  # decoded as the SDK and the lean signer decode it
            base64.b64decode(key)
        except ValueError:  # binascii.Error: the key itself is never shown
            raise ConfigError(
                f"site {site.name}: the Azure account key is not valid base64",
                hint="copy the key again from the storage account's access keys",
            ) from None
    if not site.endpoint and expected_endpoint:
        # A connection string naming another host (a private endpoint, a custom domain, an
        # EndpointSuffix) would send every request where no plan looked: refused now, in
        # one line, rather than request by request by the routing guard.
        got, want = endpoint_host(endpoint), endpoint_host(expected_endpoint)
        if got != want:
            where = parsed.netloc.rpartition("@")[2]  # never a user:password
            raise ConfigError(
                f"site {site.name}: the connection string points at {got}, not at {want}, "
                f"the endpoint the catalog gives account {account}",
                hint=f'declare it in the site (endpoint = "{parsed.scheme}://{where}'
                f'{parsed.path}") so that plans judge and allow that host',
            )
    return _Target(endpoint, account, key or None, sas.lstrip("?") if sas else None)


# -- the routing seam -----------------------------------------------------------------------


def _public_url(url: str) -> str:
    """The URL without its query: a SAS signature travels there."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


class _GuardedHTTPAdapter(requests.adapters.HTTPAdapter):
    """The lowest hook of both libraries: every request, retries included, goes through
    `send`; the guard sees it before a byte leaves and records its answer."""

    def __init__(self, guard: RequestGuard | None) -> None:
        # Retries belong to the SDK's policy (visible, bounded), never to urllib3's.
        super().__init__(max_retries=Retry(total=False, redirect=False, raise_on_status=False))
        self._guard = guard

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        if self._guard is None:
            return super().send(request, *args, **kwargs)
        method, url = request.method or "GET", _public_url(request.url or "")
        self._guard.check(method, url)
        sent = _body_length(request)
        try:
            response = super().send(request, *args, **kwargs)
        except BaseException:
            self._guard.record(method, url, sent, None)
            raise
        self._guard.record(method, url, sent, response.status_code)
        return response


def _body_length(request: requests.PreparedRequest) -> int:
    body = request.body
    if isinstance(body, bytes | bytearray | str):
        return len(body)
    declared = request.headers.get("Content-Length")
    return int(declared) if declared and declared.isdigit() else 0


def _configure(
    session: requests.Session, adapter: _GuardedHTTPAdapter, proxy: str | None
) -> requests.Session:
    session.trust_env = False  # an undeclared (environment) proxy is never used
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    if proxy:
        session.proxies = {"http": proxy, "https": proxy}
    return session


# -- libcloud, with the guarded session and SAS support ------------------------------------


class _LibcloudConnection(AzureBlobsConnection):
    """libcloud's Azure connection on our session; signs with a SAS token when given."""

    def __init__(
        self, *args: Any, configure_session: Any, sas_params: dict[str, str] | None, **kwargs: Any
    ) -> None:
        self._configure_session = configure_session
        self._sas_params = sas_params
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]

    def connect(self, *args: Any, **kwargs: Any) -> None:
        super().connect(*args, **kwargs)  # type: ignore[no-untyped-call]
        connection: Any = self.connection
        self._configure_session(connection.session)
        # libcloud lets requests follow redirects: allow none, a redirect is not a new route.
        # (The SDK asks requests not to follow, and this setting would break that mode.)
        connection.session.max_redirects = 0

    def pre_connect_hook(
        self, params: dict[str, Any], headers: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        if self._sas_params is None:
            return super().pre_connect_hook(params, headers)  # type: ignore[no-untyped-call,no-any-return]
        headers = dict(headers)
        headers["x-ms-date"] = time.strftime(AZURE_TIME_FORMAT, time.gmtime())
        headers["x-ms-version"] = self.API_VERSION
        headers.pop("Host", None)
        return {**params, **self._sas_params}, headers


class _LibcloudDriver(AzureBlobsStorageDriver):
    connectionCls = _LibcloudConnection

    def __init__(self, target: _Target, configure_session: Any) -> None:
        parsed = urlsplit(target.endpoint)
        secure = parsed.scheme == "https"
        self._conn_kwargs = {
            # The endpoint says it all: host, and the account in the path for emulators.
            "host": parsed.hostname,
            "account_prefix": parsed.path.strip("/") or None,
            "configure_session": configure_session,
            "sas_params": dict(parse_qsl(target.sas)) if target.sas else None,
        }
        super().__init__(
            key=target.account,
            secret=target.account_key or "",
            secure=secure,
            host=parsed.hostname,
            port=parsed.port or (443 if secure else 80),
            timeout=_LIBCLOUD_TIMEOUT,
        )  # type: ignore[no-untyped-call]

    def _ex_connection_class_kwargs(self) -> dict[str, Any]:
        return dict(self._conn_kwargs)


# -- metadata names ---------------------------------------------------------------------------

# Azure metadata names are C# identifiers: the hyphen in migrate's own names ("migrate-sha256")
# is refused, so those names are stored with "_" and given back with "-". Other names pass
# as they are (the plan's METADATA finding reports names a destination cannot take).
_OWN_PREFIX, _OWN_PREFIX_AZURE = "migrate-", "migrate_"


def _metadata_to_azure(metadata: Mapping[str, str]) -> dict[str, str]:
    return {
        (k.replace("-", "_") if k.startswith(_OWN_PREFIX) else k): v for k, v in metadata.items()
    }


def _metadata_from_azure(metadata: Mapping[str, str | None] | None) -> dict[str, str]:
    # The SDK's listing gives an entry with an empty value as None.
    return {
        (k.replace("_", "-") if k.startswith(_OWN_PREFIX_AZURE) else k): v or ""
        for k, v in (metadata or {}).items()
    }


# -- reads ------------------------------------------------------------------------------------


class _BlobReader:
    """read()/close() over a blob's body: the SDK's chunked download (it holds at most one
    chunk) or one lean Get Blob answer (providers/azure_lean.py); read errors become the
    adapter's errors."""

    def __init__(
        self,
        body: StorageStreamDownloader[bytes] | AzureAnswer | None,
        fail: Callable[[BaseException], NoReturn],
        info: ObjectInfo | None = None,
    ) -> None:
        self._body = body
        self._fail = fail
        self.info = info

    def read(self, size: int = -1, /) -> bytes:
        if self._body is None:
            return b""
        try:
            data = self._body.read(size)
        except _NETWORK_ERRORS as exc:
            self._fail(exc)
        return bytes(data)

    def close(self) -> None:
        if isinstance(self._body, AzureAnswer):
            self._body.close()  # its connection goes back to the pool, or is dropped
        self._body = None


_X_MS_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


def _check_range_answer(site_name: str, response: Any) -> None:
    """Every ranged Get Blob the SDK sends (one read is several, 4 MiB each) must be answered
    with its range: the SDK itself takes only the blob's size from Content-Range, so a store
    whose Range support is broken would have other bytes copied as the part's."""
    asked = _X_MS_RANGE.fullmatch(response.http_request.headers.get("x-ms-range") or "")
    answer = response.http_response
    if asked is None or not 200 <= answer.status_code < 300:
        return
    start, end = int(asked[1]), int(asked[2]) + 1 if asked[2] else None
    wrong = wrong_range(answer.headers.get("content-range"), start, end)
    if wrong is not None:
        with contextlib.suppress(Exception):
            answer.internal_response.close()  # its body will not be read
        path = unquote(urlsplit(response.http_request.url).path)  # no query: no SAS
        raise Permanent(f"{site_name}: {path}: {wrong}")


# -- the adapter ------------------------------------------------------------------------------


class AzureAdapter:
    """A StoreAdapter over one Azure storage account (see the module doc)."""

    def __init__(
        self,
        site: Site,
        *,
        guard: RequestGuard | None = None,
        expected_endpoint: str | None = None,
    ) -> None:
        """`expected_endpoint`: the catalog's endpoint for a site that declares none; a
        connection string pointing elsewhere is a ConfigError (see `_target`)."""
        self.site_name = site.name
        self._region = site.region  # declared: an Azure hostname does not say it
        self.capabilities = Capabilities(
            native_checksums=("md5",),
            verifies_checksums=("md5",),
            max_parts=_MAX_BLOCKS,
            min_part_size=1,
            max_part_size=_MAX_BLOCK,
            max_object_size=_MAX_BLOCKS * _MAX_BLOCK,
            max_single_put=_MAX_SINGLE_PUT,
            lists_uploads=False,
            conditional_read=True,
            versioning=False,
            tiers=True,
            metadata_in_listing=True,
            max_key_bytes=1024,
        )
        target = _target(site, expected_endpoint)
        self._account = target.account
        self._place = _Place(site.name, target.account, target.endpoint)
        self._proxied = bool(site.proxy)
        self._proxy_shown = site.proxy or ""  # the file's, never with proxy_auth_env's secret
        adapter = _GuardedHTTPAdapter(guard)
        proxy = proxy_url(site)  # with its user and password, if it asks for them
        self._sdk_session = _configure(requests.Session(), adapter, proxy)
        # azure-storage-blob takes ~0.2 s to import: its client is made on first use, so a
        # process that only lists and reads on the lean path (the inventory, a copy from
        # Azure) never loads it.
        self._target = target
        self._service_client: BlobServiceClient | None = None
        self._service_lock = threading.Lock()
        # Ranged reads skip the SDK's pipeline where the credentials allow (see azure_lean).
        self._lean: LeanBlobReads | None = None
        if not site.proxy and can_sign(target.account_key, target.sas):
            self._lean = LeanBlobReads(
                target.endpoint,
                target.account,
                target.account_key,
                target.sas,
                guard,
                connect_timeout=_CONNECT_TIMEOUT,
                read_timeout=_READ_TIMEOUT,
            )
        self._libcloud: Any = _LibcloudDriver(
            target, lambda session: _configure(session, adapter, proxy)
        )
        # libcloud's connection keeps per-request state on itself: one request at a time.
        self._libcloud_lock = threading.Lock()
        self._upload_attrs: dict[str, WriteAttrs] = {}  # upload id -> attrs, oldest first
        self._upload_attrs_lock = threading.Lock()

    # -- helpers ---------------------------------------------------------------------------

    @property
    def _service(self) -> BlobServiceClient:
        service = self._service_client
        if service is None:
            with self._service_lock:
                service = self._service_client
                if service is None:
                    service = self._service_client = self._new_service()
        return service

    def _new_service(self) -> BlobServiceClient:
        from azure.storage.blob import BlobServiceClient, ExponentialRetry

        target = self._target
        if target.sas:
            credential: Any = AzureSasCredential(target.sas)
        else:
            credential = AzureNamedKeyCredential(target.account, target.account_key or "")
        return BlobServiceClient(
            account_url=target.endpoint,
            credential=credential,
            transport=RequestsTransport(
                session=self._sdk_session,
                session_owner=False,
                connection_timeout=_CONNECT_TIMEOUT,
                read_timeout=_READ_TIMEOUT,
                # azure-core reads a download 4 KiB per Python iteration by default: a
                # 4 MiB chunk was 1,024 generator steps (15 % of a copy's CPU in bench 3).
                connection_data_block_size=_READ_BLOCK,
            ),
            # Few, short retries: the executor retries Retryable itself, and an unreachable
            # endpoint must fail within 30 s (3 connects of 5 s + 2 waits of 1-3 s).
            retry_policy=ExponentialRetry(
                initial_backoff=1, increment_base=1, retry_total=2, random_jitter_range=1
            ),
            permit_redirects=False,
            raw_response_hook=partial(_check_range_answer, self.site_name),
            max_single_put_size=_MAX_SINGLE_PUT,
            max_block_size=_MAX_BLOCK,
            max_single_get_size=_CHUNK_GET,
            max_chunk_get_size=_CHUNK_GET,
        )

    def _container(self, container: str) -> ContainerClient:
        return self._service.get_container_client(container)

    def _blob(self, container: str, key: str) -> BlobClient:
        return self._service.get_blob_client(container, key)

    def _fail(self, exc: BaseException, what: str, *, container_call: bool = False) -> NoReturn:
        """Raise the project's error for an SDK, libcloud or network exception.

        Messages name the site and object, and the service's error code, never a URL (a
        SAS signature may be in it) nor the exception's own text."""
        where = f"{self.site_name}: {what}"
        if isinstance(exc, MigrateError):
            raise exc
        if self._proxied and _proxy_said_407(exc):
            # An https endpoint through the proxy: its CONNECT answered 407.
            raise _from_status(where, 407, None, container_call, place=self._place) from None
        if self._proxied and (down := _proxy_error(exc)) is not None:
            # Said as for an S3 site: the endpoint was never reached (a review).
            raise proxy_failed(where, self._proxy_shown, str(down)) from None
        if isinstance(exc, HttpResponseError) and exc.status_code is not None:
            detail = str(exc.message or "").lower()
            raise _from_status(
                where, exc.status_code, _error_code(exc), container_call, detail, self._place
            ) from None
        if isinstance(exc, ServiceRequestTimeoutError | ServiceRequestError):
            raise EndpointUnreachable(
                f"{where}: no connection to the endpoint",
                hint="check the site's endpoint/account and the network",
            ) from None
        if isinstance(exc, ServiceResponseError):
            raise NoAnswer(f"{where}: connection lost or timed out during the answer") from None
        if isinstance(exc, InvalidCredsError):  # libcloud's 401 or 403: which, it does not say
            raise _credentials_rejected(where) from None
        if isinstance(exc, ContainerDoesNotExistError):
            raise _container_missing(where, "", self._place) from None
        if isinstance(exc, _CONNECT_FAILURES) and unresolved(exc):
            raise EndpointUnreachable(
                f"{where}: the endpoint's host does not resolve (DNS)",
                hint="check the site's endpoint/account (the host is made from the account) "
                "and this machine's DNS",
            ) from None
        if isinstance(exc, _CONNECT_FAILURES):
            raise EndpointUnreachable(
                f"{where}: no connection to the endpoint",
                hint="check the site's endpoint/account and the network",
            ) from None
        if isinstance(exc, Urllib3SSLError):
            raise EndpointUnreachable(
                f"{where}: no trusted TLS connection to the endpoint",
                hint="the endpoint's certificate does not verify for its host name",
            ) from None
        if isinstance(exc, Urllib3Error):
            raise NoAnswer(f"{where}: network error ({type(exc).__name__})") from None
        if isinstance(exc, requests.TooManyRedirects):
            raise Permanent(f"{where}: the endpoint answered with a redirect (refused)") from None
        if isinstance(exc, requests.exceptions.SSLError | ssl.SSLError):
            raise EndpointUnreachable(
                f"{where}: no trusted TLS connection to the endpoint",
                hint="the endpoint's certificate does not verify for its host name",
            ) from None
        if isinstance(exc, requests.ConnectTimeout):
            raise EndpointUnreachable(f"{where}: connection to the endpoint timed out") from None
        if isinstance(exc, requests.Timeout):
            raise NoAnswer(f"{where}: the endpoint did not answer in time") from None
        if isinstance(exc, requests.ConnectionError):
            if _is_connect_failure(exc):
                raise EndpointUnreachable(
                    f"{where}: no connection to the endpoint",
                    hint="check the site's endpoint/account and the network",
                ) from None
            raise NoAnswer(f"{where}: connection lost") from None
        if isinstance(exc, InvalidContainerNameError):
            raise Permanent(
                f"{where}: not a valid container name",
                hint="3-63 lowercase letters, digits and single hyphens",
            ) from None
        if isinstance(exc, LibcloudError):
            status = _libcloud_status(exc)
            if status is not None:
                raise _from_status(where, status, None, container_call, place=self._place) from None
            raise Permanent(f"{where}: unexpected answer from the service") from None
        if isinstance(exc, AzureError):
            raise Retryable(f"{where}: {type(exc).__name__}") from None
        if isinstance(exc, OSError):
            raise NoAnswer(f"{where}: network error ({type(exc).__name__})") from None
        raise exc

    def _check_key(self, key: str) -> None:
        """Refuse, before any byte is sent, a key Azure would not store as given."""
        if _unstorable(key):
            raise Unsupported(
                f"{self.site_name}: key {key!r} cannot be stored in Azure as given "
                "('.'/'..' path segments are normalized away, '\\' becomes '/')"
            )
        if len(key) > self.capabilities.max_key_bytes:
            raise Unsupported(f"{self.site_name}: key {key[:80]!r}... is over 1024 characters")

    def _info(self, container: str, props: BlobProperties) -> ObjectInfo:
        settings = props.content_settings
        md5 = settings.content_md5
        tier = _enum_value(props.blob_tier)
        return ObjectInfo(
            container=container,
            key=props.name,
            size=int(props.size),
            etag=_unquote(props.etag),
            last_modified=props.last_modified,
            checksums={"md5": bytes(md5).hex()} if md5 else {},
            storage_class=tier,
            content_type=settings.content_type,
            metadata=_metadata_from_azure(props.metadata),
            content_encoding=settings.content_encoding,
            cache_control=settings.cache_control,
            content_disposition=settings.content_disposition,
            content_language=settings.content_language,
            archived=tier == _ARCHIVE,
            tags=int(props.tag_count or 0),
            blob_type=_enum_value(props.blob_type),
        )

    # -- containers (libcloud) ---------------------------------------------------------

    def check(self, container: str) -> None:
        try:
            with self._libcloud_lock:
                self._libcloud.get_container(container)
        except (KeyError, ValueError, AttributeError):
            # libcloud read the answer's headers as Azure's, and they were not there.
            raise EndpointUnreachable(
                f"{self.site_name}: container {container}: the endpoint does not answer as "
                "Azure Blob storage does",
                hint="check the site's endpoint and account",
            ) from None
        except Exception as exc:
            self._fail(exc, f"container {container}", container_call=True)

    def check_account(self) -> str:
        try:
            next(iter(self._service.list_containers(results_per_page=1)), None)
        except HttpResponseError as exc:
            # Refused the listing, not the key or signature: a SAS without list rights.
            if exc.status_code == 403 and _error_code(exc) in (
                "AuthorizationPermissionMismatch",
                "AuthorizationResourceTypeMismatch",
                "AuthorizationServiceMismatch",
            ):
                return "credentials accepted (they may not list containers, which no copy needs)"
            self._fail(exc, "the account", container_call=True)
        except Exception as exc:
            self._fail(exc, "the account", container_call=True)
        return "credentials accepted (its containers listed)"

    def create_container(self, container: str) -> None:
        try:
            with self._libcloud_lock:
                self._libcloud.create_container(container)
        except ContainerAlreadyExistsError:
            return
        except Exception as exc:
            try:
                self._fail(exc, f"create container {container}", container_call=True)
            except CredentialsRejected as refused:
                # As on S3: credentials that may write blobs but not create containers (a
                # SAS, a data role; the containers made beforehand): one already there, and
                # readable, will do. A missing one proves the credentials were accepted and
                # only the creation refused; a key refused outright is said as it is. Read
                # by a listing: a container's SAS may list it, not read its properties.
                try:
                    next(iter(self.list_objects(container)), None)
                    return
                except CredentialsRejected:
                    raise refused from None
                except NotFound:
                    raise CredentialsRejected(
                        f"{self.site_name}: container {container!r}: creating it was refused",
                        hint="create the plan's containers beforehand, or let these "
                        "credentials create containers (an account SAS with write on "
                        "containers, or the Storage Blob Data Contributor role); then run "
                        "the phase again",
                    ) from None

    # -- listing and reads (SDK) -------------------------------------------------------

    def list_objects(
        self, container: str, prefix: str = "", start_after: str | None = None
    ) -> Iterator[ObjectInfo]:
        """Pages of 5,000 blobs, in the service's order (UTF-8 bytes). Python compares str
        by code point, which is the same order as UTF-8 bytes."""
        if self._lean is not None:
            yield from self._lean_list(container, prefix, start_after)
            return
        pages = self._container(container).list_blobs(
            name_starts_with=prefix or None, include=["metadata"], results_per_page=_PAGE
        )
        try:
            for props in pages:
                if start_after is not None and props.name <= start_after:
                    continue
                yield self._info(container, props)
        except _NETWORK_ERRORS as exc:
            self._fail(exc, f"listing {container}/{prefix}")

    def _lean_list(
        self, container: str, prefix: str, start_after: str | None
    ) -> Iterator[ObjectInfo]:
        assert self._lean is not None
        what = f"listing {container}/{prefix}"
        lean = self._lean

        def page(marker: str | None) -> tuple[list[ListedBlob], str | None]:
            try:
                answer = lean.list_page(container, prefix, marker, _PAGE)
                if answer.status >= 300:
                    status, code, detail = answer.error()
                    raise _from_status(
                        f"{self.site_name}: {what}", status, code, True, detail, self._place
                    )
                return parse_blob_list(answer.response.data)
            except _NETWORK_ERRORS as exc:
                self._fail(exc, what)
            except (ET.ParseError, ValueError):
                raise Permanent(
                    f"{self.site_name}: {what}: the service's answer is not a readable listing"
                ) from None

        marker: str | None = None
        while True:
            asked = marker
            blobs, marker = with_page_retries(partial(page, asked))
            if marker is not None and marker == asked:
                raise Permanent(
                    f"{self.site_name}: {what}: the service gave the same page marker twice"
                )
            for blob in blobs:
                if start_after is not None and blob.name <= start_after:
                    continue
                try:
                    info = self._info_from_listing(container, blob)
                except ValueError:  # a malformed date or MD5 (binascii.Error is one)
                    raise Permanent(
                        f"{self.site_name}: {what}: unreadable properties for {blob.name!r}"
                    ) from None
                yield info
            if not marker:
                return

    def _info_from_listing(self, container: str, blob: ListedBlob) -> ObjectInfo:
        """What `_info` says of the SDK's listed BlobProperties, from the page itself."""
        tier = blob.tier
        md5 = base64.b64decode(blob.content_md5).hex() if blob.content_md5 else None
        return ObjectInfo(
            container=container,
            key=blob.name,
            size=blob.size,
            etag=_unquote(blob.etag),
            last_modified=parsedate_to_datetime(blob.last_modified) if blob.last_modified else None,
            checksums={"md5": md5} if md5 else {},
            storage_class=tier,
            content_type=blob.content_type,
            metadata=_metadata_from_azure(blob.metadata),
            content_encoding=blob.content_encoding,
            cache_control=blob.cache_control,
            content_disposition=blob.content_disposition,
            content_language=blob.content_language,
            archived=tier == _ARCHIVE,
            tags=blob.tag_count,
            blob_type=blob.blob_type,
        )

    def head(self, container: str, key: str) -> ObjectInfo:
        if _unstorable(key):  # its URL would name another blob
            raise NotFound(f"{self.site_name}: {container}/{key}: no Azure blob has this name")
        try:
            props = self._blob(container, key).get_blob_properties()
        except _NETWORK_ERRORS as exc:
            self._fail(exc, f"{container}/{key}")
        return self._info(container, props)

    def read_tags(
        self, container: str, key: str, *, version_id: str | None = None
    ) -> dict[str, str]:
        if version_id is not None:
            raise Unsupported(f"{self.site_name}: Azure sites are read without versions")
        if _unstorable(key):  # its URL would name another blob
            raise NotFound(f"{self.site_name}: {container}/{key}: no Azure blob has this name")
        try:
            return dict(self._blob(container, key).get_blob_tags())
        except _NETWORK_ERRORS as exc:
            self._fail(exc, f"{container}/{key}")

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
        try:
            return self._open_range(container, key, start, end, if_match, version_id)
        except SourceChanged as changed:
            self._gone_or_changed(container, key, changed)

    def _gone_or_changed(self, container: str, key: str, changed: SourceChanged) -> NoReturn:
        """Azure answers a read's condition with 412 for a blob deleted since, as for one
        rewritten: gone is said as every other store says it (one HEAD, on a failed
        condition only); a HEAD that fails otherwise leaves the 412's word."""
        try:
            self.head(container, key)
        except NotFound:
            raise
        except MigrateError:
            raise changed from None
        raise changed

    def _open_range(
        self,
        container: str,
        key: str,
        start: int,
        end: int | None,
        if_match: str | None,
        version_id: str | None,
    ) -> ReadStream:
        if version_id is not None:
            raise Unsupported(f"{self.site_name}: Azure sites are read without versions")
        what = f"{container}/{key}"
        if _unstorable(key):  # its URL would name another blob
            raise NotFound(f"{self.site_name}: {what}: no Azure blob has this name")
        condition: dict[str, Any] = {}
        if if_match is not None:
            condition = {"etag": _quote(if_match), "match_condition": MatchConditions.IfNotModified}

        def fail(exc: BaseException) -> NoReturn:
            try:
                self._fail(exc, what)
            except SourceChanged as changed:  # a later chunk's too (the SDK's reads)
                if if_match is None:
                    raise
                self._gone_or_changed(container, key, changed)

        if self._lean is not None and (end is None or end > start):
            return self._lean_range(container, key, start, end, if_match, what, fail)
        if self._lean is not None:  # an empty range still proves the version
            if if_match is not None:
                self._lean_properties(container, key, if_match, what, fail)
            return _BlobReader(None, fail)
        blob = self._blob(container, key)  # an SDK client per blob: not on the lean path
        try:
            if end is not None and end <= start:
                if condition:  # an empty range still proves the version
                    blob.get_blob_properties(**condition)
                return _BlobReader(None, fail)
            length = None if end is None else end - start
            # decompress=False: a gzip-encoded blob is read as stored, never inflated.
            downloader = blob.download_blob(
                offset=start, length=length, max_concurrency=1, decompress=False, **condition
            )
        except HttpResponseError as exc:
            if exc.status_code == 416:  # start at or past the end: nothing to read
                return _BlobReader(None, fail)
            fail(exc)
        except _NETWORK_ERRORS as exc:
            fail(exc)
        # The download's properties describe the whole blob (size included), not the range.
        return _BlobReader(downloader, fail, self._info(container, downloader.properties))

    def _lean_range(
        self,
        container: str,
        key: str,
        start: int,
        end: int | None,
        if_match: str | None,
        what: str,
        fail: Any,
    ) -> ReadStream:
        assert self._lean is not None
        try:
            answer = self._lean.get(
                container, key, start, end, _quote(if_match) if if_match else None
            )
        except _NETWORK_ERRORS as exc:
            fail(exc)
        if answer.status == 416:  # start at or past the end: nothing to read
            answer.close()
            return _BlobReader(None, fail)
        if answer.status >= 300:
            status, code, detail = answer.error()
            answer.close()
            raise _from_status(
                f"{self.site_name}: {what}", status, code, False, detail, self._place
            )
        wrong = wrong_range(header_map(answer.headers).get("content-range"), start, end)
        if wrong is not None:
            answer.close()
            raise Permanent(f"{self.site_name}: {what}: {wrong}")
        try:
            info = self._info_from_headers(container, key, answer)
        except ValueError:  # a malformed date, size or MD5 (binascii.Error is one)
            answer.close()
            raise Permanent(
                f"{self.site_name}: {what}: the service's answer has unreadable headers"
            ) from None
        return _BlobReader(answer, fail, info)

    def _lean_properties(
        self, container: str, key: str, if_match: str, what: str, fail: Any
    ) -> None:
        """Raise unless the blob is still the version of `if_match` (a HEAD)."""
        assert self._lean is not None
        try:
            answer = self._lean.properties(container, key, _quote(if_match))
        except _NETWORK_ERRORS as exc:
            fail(exc)
        try:
            if answer.status >= 300:
                status, code, detail = answer.error()
                raise _from_status(
                    f"{self.site_name}: {what}", status, code, False, detail, self._place
                )
        finally:
            answer.close()

    def _info_from_headers(self, container: str, key: str, answer: AzureAnswer) -> ObjectInfo:
        """What the SDK's download properties would say (see its deserialize_blob_properties):
        the whole blob's size and stored MD5, not the range's."""
        h = header_map(answer.headers)
        whole = h.get("content-range", "").rpartition("/")[2]
        size = int(whole) if whole.isdigit() else int(h.get("content-length", "0"))
        md5_b64 = h.get("x-ms-blob-content-md5") if "content-range" in h else h.get("content-md5")
        tier = h.get("x-ms-access-tier")
        modified = h.get("last-modified")
        meta = {
            name[len(_META_HEADER) :]: value
            for name, value in answer.headers.items()
            if name.lower().startswith(_META_HEADER)
        }
        return ObjectInfo(
            container=container,
            key=key,
            size=size,
            etag=_unquote(h.get("etag")),
            last_modified=parsedate_to_datetime(modified) if modified else None,
            checksums={"md5": base64.b64decode(md5_b64).hex()} if md5_b64 else {},
            storage_class=tier,
            content_type=h.get("content-type"),
            metadata=_metadata_from_azure(meta),
            content_encoding=h.get("content-encoding"),
            cache_control=h.get("cache-control"),
            content_disposition=h.get("content-disposition"),
            content_language=h.get("content-language"),
            archived=tier == _ARCHIVE,
            tags=int(h.get("x-ms-tag-count") or 0),
        )

    # -- writes (SDK) ----------------------------------------------------------------------

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
        what = f"{container}/{key}"
        self._check_key(key)
        tags = _azure_tags(attrs, f"{self.site_name}: {what}")  # before the body is read
        if length > _MAX_SINGLE_PUT:
            raise Unsupported(
                f"{self.site_name}: {what}: {length} bytes is over the single-put limit "
                f"({_MAX_SINGLE_PUT}); send it as a multipart upload"
            )
        data = self._receive(body, length, checksums, what)
        md5 = _md5_for(data, checksums, f"{self.site_name}: {what}")
        settings, tier = _settings(attrs), _tier(attrs, self.site_name)
        try:
            result = self._blob(container, key).upload_blob(
                data,
                length=length,
                overwrite=True,
                content_settings=settings,
                metadata=_metadata_to_azure(attrs.metadata),
                standard_blob_tier=tier,
                tags=tags,
                headers={"Content-MD5": base64.b64encode(md5).decode("ascii")},
                **_condition(expect),
            )
        except _NETWORK_ERRORS as exc:
            self._fail_write(exc, what, expect)
        stored = result.get("content_md5")
        return WriteResult(
            etag=_unquote(result.get("etag")),
            checksums={"md5": bytes(stored).hex() if stored else md5.hex()},
        )

    def _fail_write(self, exc: BaseException, what: str, expect: str | None) -> NoReturn:
        """`_fail` for a write: its failed condition (412, or 409 BlobAlreadyExists where
        no blob was expected) is PreconditionFailed, not the source changing."""
        refused = isinstance(exc, HttpResponseError) and (
            exc.status_code == 412
            or (exc.status_code == 409 and _error_code(exc) == "BlobAlreadyExists")
        )
        if expect is not None and refused:
            raise PreconditionFailed(
                f"{self.site_name}: {what}: the key holds "
                + ("an object" if expect == ABSENT else "another object than the one expected")
                + " (the write's condition failed); nothing was written"
            ) from None
        self._fail(exc, what)

    def _receive(
        self, body: WriteBody, length: int, checksums: Mapping[str, str], what: str
    ) -> bytes:
        """Read exactly `length` bytes and check the digests the service does not."""
        if isinstance(body, bytes | bytearray | memoryview):
            # The SDK takes bytes, not bytearray (it would iterate one as integers).
            data = bytes(body)
        else:
            chunks: list[bytes] = []
            received = 0
            while received < length:
                chunk = body.read(min(8 * _MiB, length - received))
                if not chunk:
                    break
                chunks.append(chunk)
                received += len(chunk)
            data = b"".join(chunks)
        if len(data) != length:
            raise ChecksumMismatch(
                f"{self.site_name}: {what}: received {len(data)} bytes, expected {length}"
            )
        for algo in ("sha256", "sha1"):
            expected = checksums.get(algo)
            if expected is not None and hashlib.new(algo, data).hexdigest() != expected.lower():
                raise ChecksumMismatch(f"{self.site_name}: {what}: {algo} does not match")
        return data

    # -- multipart: a block blob -----------------------------------------------------------

    def create_multipart(self, container: str, key: str, attrs: WriteAttrs) -> str:
        self._check_key(key)
        _tier(attrs, self.site_name)  # refuse an unknown tier now, not at the end
        _azure_tags(attrs, f"{self.site_name}: {container}/{key}")  # now, not after the parts
        upload_id = uuid.uuid4().hex
        with self._upload_attrs_lock:
            self._upload_attrs[upload_id] = attrs
            # Only a fallback for a caller completing without attrs (the executor passes
            # them): the oldest go, so uploads left unfinished do not pile up in memory.
            while len(self._upload_attrs) > _UPLOAD_ATTRS_KEPT:
                del self._upload_attrs[next(iter(self._upload_attrs))]
        return upload_id

    def _forget_upload(self, upload_id: str) -> None:
        with self._upload_attrs_lock:
            self._upload_attrs.pop(upload_id, None)

    def _block_id(self, key: str, upload_id: str, part_number: int) -> str:
        if len(upload_id) != 32 or not all(c in "0123456789abcdef" for c in upload_id):
            raise NotFound(f"{self.site_name}: no upload {upload_id!r} for {key!r}")
        if not 1 <= part_number <= _MAX_BLOCKS:
            raise Permanent(f"{self.site_name}: part number {part_number} is not in 1..50000")
        # The SDK base64-encodes it; all ids of a blob have the same length, as required.
        return f"{upload_id}-{part_number:06d}"

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
        what = f"{container}/{key} part {part_number}"
        block_id = self._block_id(key, upload_id, part_number)
        if length > _MAX_BLOCK:
            raise Unsupported(f"{self.site_name}: {what}: over Azure's 4000 MiB block limit")
        data = self._receive(body, length, checksums, what)
        md5 = _md5_for(data, checksums, f"{self.site_name}: {what}")
        try:
            self._blob(container, key).stage_block(
                block_id,
                data,
                length=length,
                headers={"Content-MD5": base64.b64encode(md5).decode("ascii")},
            )
        except _NETWORK_ERRORS as exc:
            self._fail(exc, what)
        return PartResult(
            part_number=part_number, etag=md5.hex(), size=length, checksums={"md5": md5.hex()}
        )

    def complete_multipart(
        self,
        container: str,
        key: str,
        upload_id: str,
        parts: Sequence[PartResult],
        attrs: WriteAttrs | None = None,
        *,
        expect: str | None = None,
    ) -> WriteResult:
        """Commit the parts' blocks in part order. `attrs` (not yet in the contract) is
        needed only when the upload was created by another process."""
        from azure.storage.blob import BlobBlock

        blocks = [
            BlobBlock(block_id=self._block_id(key, upload_id, p.part_number))
            for p in sorted(parts, key=lambda p: p.part_number)
        ]
        with self._upload_attrs_lock:
            kept = self._upload_attrs.get(upload_id)
        attrs = attrs or kept or WriteAttrs()
        try:
            result = self._blob(container, key).commit_block_list(
                blocks,
                content_settings=_settings(attrs),
                metadata=_metadata_to_azure(attrs.metadata),
                standard_blob_tier=_tier(attrs, self.site_name),
                tags=_azure_tags(attrs, f"{self.site_name}: {container}/{key}"),
                **_condition(expect),
            )
        except _NETWORK_ERRORS as exc:
            try:
                self._fail_write(exc, f"{container}/{key} (upload {upload_id})", expect)
            except PreconditionFailed:
                # A commit retried after its answer was lost finds its own blob: proven
                # when the blob is exactly this upload's blocks (their ids carry it).
                etag = self._committed_as(container, key, [b.id for b in blocks])
                if etag is None:
                    raise
                self._forget_upload(upload_id)
                return WriteResult(etag=etag)
        self._forget_upload(upload_id)
        # The response's Content-MD5 is that of the block list, not of the blob: not kept.
        return WriteResult(etag=_unquote(str(result.get("etag") or "")))

    def _committed_as(self, container: str, key: str, block_ids: list[str]) -> str | None:
        """The blob's ETag if it is made of exactly these blocks, in this order; else None."""
        blob = self._blob(container, key)
        try:
            committed, _ = blob.get_block_list("committed")
            if [str(b.id) for b in committed] != block_ids:
                return None
            return _unquote(str(blob.get_blob_properties().etag or "")) or None
        except HttpResponseError:
            return None
        except _NETWORK_ERRORS as exc:
            self._fail(exc, f"{container}/{key}")

    def replace_metadata(
        self,
        container: str,
        key: str,
        attrs: WriteAttrs,
        *,
        if_match: str,
        size: int,
        # Set Blob Metadata changes the blob in place. An account with blob versioning
        # keeps the former state as a version; it is not removed here (yet).
        version_id: str | None = None,
    ) -> WriteResult:
        """Set Blob Metadata, conditioned on the ETag: content settings and tier stay as
        they are; the blob gets a new ETag."""
        self._check_key(key)
        try:
            result = self._blob(container, key).set_blob_metadata(
                _metadata_to_azure(attrs.metadata),
                etag=_quote(if_match),
                match_condition=MatchConditions.IfNotModified,
            )
        except _NETWORK_ERRORS as exc:
            self._fail(exc, f"{container}/{key}")
        return WriteResult(etag=_unquote(str(result.get("etag") or "")))

    def abort_multipart(self, container: str, key: str, upload_id: str) -> None:
        """Forget the upload. Azure has no call to drop uncommitted blocks: they stay
        invisible and the service discards them after 7 days."""
        self._forget_upload(upload_id)

    def list_multipart_uploads(self, container: str, prefix: str = "") -> Iterator[UploadInfo]:
        raise Unsupported(
            f"{self.site_name}: Azure cannot list unfinished uploads (uncommitted blocks "
            "belong to no upload object); resume uses the upload ids the ledger kept"
        )

    def list_parts(self, container: str, key: str, upload_id: str) -> Iterator[PartResult]:
        """The upload's uncommitted blocks, in part order (etag and checksums unknown:
        Azure keeps no per-block MD5). An upload with no block yet lists nothing."""
        prefix = self._block_id(key, upload_id, 1)[:-6]
        try:
            _, uncommitted = self._blob(container, key).get_block_list("uncommitted")
        except HttpResponseError as exc:
            if exc.status_code == 404 and _error_code(exc) == "BlobNotFound":
                return iter(())
            self._fail(exc, f"{container}/{key} (upload {upload_id})")
        except _NETWORK_ERRORS as exc:
            self._fail(exc, f"{container}/{key} (upload {upload_id})")
        found: dict[int, PartResult] = {}
        for block in uncommitted:
            block_id = str(block.id)
            number = block_id[len(prefix) :]
            if block_id.startswith(prefix) and number.isdigit():
                found[int(number)] = PartResult(
                    part_number=int(number), etag=None, size=int(block.size)
                )
        return iter([found[n] for n in sorted(found)])

    # -- delete and close ------------------------------------------------------------------

    def delete(self, container: str, key: str) -> None:
        if _unstorable(key):  # cannot exist; its URL would name another blob
            return
        try:
            # Snapshots are never migrate's (someone's point-in-time copies): Azure refuses
            # to delete a blob that has some, and it is left so.
            self._blob(container, key).delete_blob()
        except HttpResponseError as exc:
            if exc.status_code == 404:  # blob or container absent: nothing to delete
                return
            if _error_code(exc) == "SnapshotsPresent":
                raise Permanent(
                    f"{self.site_name}: {container}/{key} has snapshots, which are not "
                    "migrate's: not deleted",
                    hint="delete it by hand with its snapshots if they may go",
                ) from None
            self._fail(exc, f"delete {container}/{key}")
        except _NETWORK_ERRORS as exc:
            self._fail(exc, f"delete {container}/{key}")

    def protection(self, container: str) -> Protection:
        """Get Container Properties (immutability policy, legal hold, version-level
        immutability) and one page of List Blobs with snapshots and versions (5,000
        entries) to count snapshots and older versions. Blob versioning itself is an
        account setting the data API does not show: it is "enabled" when the page shows
        versions, else unknown. Stores that refuse the versions listing (Azurite) are
        listed with snapshots only."""
        where = f"{self.site_name}: container {container}"
        client = self._container(container)
        try:
            props = client.get_container_properties()
        except _NETWORK_ERRORS as exc:
            self._fail(exc, f"container {container}", container_call=True)
        lock = bool(props.has_immutability_policy) or bool(
            getattr(props, "immutable_storage_with_versioning_enabled", False)
        )
        hold = bool(props.has_legal_hold)
        notes: list[str] = []
        older, counted_all, versions_seen = 0, True, False
        for include in (["snapshots", "versions"], ["snapshots"]):
            try:
                pages = client.list_blobs(include=include, results_per_page=_PAGE).by_page()
                page = list(next(pages, []))
                counted_all = pages.continuation_token is None  # type: ignore[attr-defined]
            except HttpResponseError as exc:
                if exc.status_code in (400, 501) and "versions" in include:
                    notes.append("versions not listable")
                    continue
                self._fail(exc, f"listing {container}")
            except _NETWORK_ERRORS as exc:
                self._fail(exc, f"listing {container}")
            for blob in page:
                if blob.snapshot:
                    older += 1
                elif blob.version_id:
                    versions_seen = True
                    older += 0 if blob.is_current_version else 1
            break
        versioning: Literal["enabled", "suspended", "off"] | None = (
            "enabled" if versions_seen else None
        )
        detail = (
            f"{where}: immutability policy {'on' if lock else 'off'}, legal hold "
            f"{'on' if hold else 'off'}, versioning "
            + (versioning or "unknown (an account setting)")
        )
        if notes:
            detail += "; " + ", ".join(notes)
        return Protection(
            versioning=versioning,
            older_versions=older,
            counted_all=counted_all,
            object_lock=lock,
            legal_hold=hold,
            detail=detail,
        )

    def replication(self, container: str) -> Replication:
        """The account's redundancy (Get Account Information on the container, which a
        container-scoped SAS may call): LRS and ZRS keep every copy in the primary region;
        GRS, RA-GRS, GZRS and RA-GZRS keep one in the secondary region, the pair of the
        site's declared region (AZURE_REGION_PAIRS; None where the pair is not listed).
        Not visible here: object replication policies, which live in the management API.
        A refusal of this one call (permission, unsupported) gives known=False."""
        where = f"{self.site_name}: account {self._account}"
        try:
            info = self._container(container).get_account_information()
        except HttpResponseError as exc:
            code = _error_code(exc)
            if exc.status_code is None:
                self._fail(exc, f"account information ({container})")
            error = _from_status(
                where, exc.status_code, code, True, str(exc.message or ""), self._place
            )
            fatal = isinstance(error, CredentialsRejected | NotFound)
            if fatal and code not in _PERMISSION_CODES:
                raise error from None
            why = (
                f"the credentials may not read it ({code})"
                if code in _PERMISSION_CODES
                else f"the service answered HTTP {exc.status_code}" + (f" ({code})" if code else "")
            )
            return Replication(known=False, detail=f"{where}: redundancy not readable: {why}")
        except _NETWORK_ERRORS as exc:
            self._fail(exc, f"account information ({container})")
        sku = _enum_value(info.get("sku_name")) or ""
        redundancy = sku.rsplit("_", 1)[-1].upper()  # Standard_RAGRS -> RAGRS
        if redundancy.endswith(("GRS", "GZRS")):
            region = self._region
            pair = AZURE_REGION_PAIRS.get(region.lower()) if region else None
            if pair:
                text = f"the paired region {pair}"
            elif region:
                text = f"the region paired with {region}, which migrate's pair table lacks"
            else:
                text = "the region paired with its own, unknown: the site declares no region"
            target = ReplicationTarget(
                kind="geo-redundancy",
                region=pair,
                description=f"{where} ({sku}) keeps a geo-redundant copy of every container "
                f"in {text}",
            )
            return Replication(targets=(target,), detail=f"{where}: {sku}")
        if redundancy in ("LRS", "ZRS"):
            return Replication(detail=f"{where}: {sku}, every copy in the primary region")
        return Replication(
            known=False,
            detail=f"{where}: redundancy {sku or 'not reported'} is not one migrate knows",
        )

    def close(self) -> None:
        if self._lean is not None:
            self._lean.close()
        if self._service_client is not None:
            self._service_client.close()
        self._sdk_session.close()
        libcloud_conn = getattr(self._libcloud.connection, "connection", None)
        if libcloud_conn is not None:
            libcloud_conn.session.close()


# -- small pure helpers -------------------------------------------------------------------------


def _azure_tags(attrs: WriteAttrs, where: str) -> dict[str, str] | None:
    """The object's tags as blob index tags, or Permanent naming the one Azure would refuse
    (an S3 tag may hold characters, or be longer, than Azure takes): said before any byte
    is sent, not as the service's generic refusal after."""
    tags = dict(attrs.tags or {})
    if len(tags) > _MAX_TAGS:
        raise Permanent(
            f"{where}: {len(tags)} tags; Azure blob index tags are at most {_MAX_TAGS}",
            hint="remove tags at the source, then run the phase again",
        )
    for name, value in tags.items():
        if not (1 <= len(name) <= 128 and len(value) <= 256) or not (
            _TAG_TEXT.fullmatch(name) and _TAG_TEXT.fullmatch(value)
        ):
            raise Permanent(
                f"{where}: tag {name!r} = {value!r} is not one Azure blob index tags take "
                "(a key of 1-128 characters, a value of up to 256; ASCII letters, digits, "
                "space and + - . / : = _ only)",
                hint="rename the tag or change its value at the source, then run the phase again",
            )
    return tags or None


@dataclass(frozen=True)
class _Place:
    """Where a missing container was looked for, for its message."""

    site: str
    account: str
    endpoint: str  # the service URL: no key nor SAS is in it


def _container_missing(where: str, code_text: str, place: _Place | None) -> NotFound:
    if place is None:
        return NotFound(f"{where}: container not found{code_text}")
    return NotFound(
        f"{where}: container not found{code_text} in account {place.account} at {place.endpoint}",
        hint=f"check the container's name and site {place.site}'s account and endpoint in "
        f"the sites file; `migrate sites check {place.site}` tries each container it lists",
    )


def _from_status(
    where: str,
    status: int,
    code: str | None,
    container_call: bool,
    detail: str = "",
    place: _Place | None = None,
) -> MigrateError:
    """The error for an HTTP status and Azure error code; `detail` (the service's message,
    lowercased) only helps classify and is never shown; `place`, where a missing container
    was looked for."""
    code_text = f" ({code})" if code else ""
    if status in (401, 403):
        # AuthenticationFailed (Azure: a wrong key or SAS signature) and AuthorizationFailure
        # (Azurite's answer to a wrong key; Azure's to a network rule, or shared keys
        # disabled) are every request's answer: the run stops. A permission refused
        # (AuthorizationPermissionMismatch: a role condition on a prefix) may be this
        # object's alone.
        return _credentials_rejected(
            where, key=status == 401 or code in ("AuthenticationFailed", "AuthorizationFailure")
        )
    if status == 407:  # the declared proxy's answer, not the service's
        return proxy_refused(where)
    if status == 404:
        if container_call or code == "ContainerNotFound":
            return _container_missing(where, code_text, place)
        return NotFound(f"{where}: object not found{code_text}")
    if status == 412:
        return SourceChanged(f"{where}: the object changed since it was listed{code_text}")
    if status == 409 and code == "BlobArchived":
        return Permanent(
            f"{where}: the blob is in the Archive tier and cannot be read",
            hint="rehydrate it first: set its tier to Hot or Cool, then run again",
        )
    # Azure says Md5Mismatch; Azurite says InvalidOperation "Provided contentMD5 doesn't match".
    if status == 400 and (
        code == "Md5Mismatch" or (code == "InvalidOperation" and "md5" in detail)
    ):
        return ChecksumMismatch(f"{where}: the service refused the bytes: MD5 mismatch")
    if status == 400 and code == "InvalidBlockList":
        return NotFound(f"{where}: a part was never uploaded (or has expired){code_text}")
    if status == 400 and code == "InvalidMetadata":
        return Permanent(f"{where}: metadata refused (Azure metadata names must be C# identifiers)")
    if 300 <= status < 400:
        return Permanent(f"{where}: the endpoint answered with a redirect (refused)")
    if status in (502, 504) and not code:  # a gateway's answer: none of the store's
        return NoAnswer(f"{where}: no answer through a gateway (HTTP {status})")
    if status in (408, 429) or status >= 500 or code in _RETRYABLE_CODES:
        return Retryable(f"{where}: the service is busy or failed (HTTP {status}){code_text}")
    return Permanent(f"{where}: refused by the service (HTTP {status}){code_text}")


def _proxy_error(exc: BaseException) -> requests.exceptions.ProxyError | None:
    """requests' ProxyError in a failure's chain of causes (wrapped by azure-core or
    libcloud), if there is one."""
    seen: BaseException | None = exc
    for _ in range(6):  # the chain of causes, not forever
        if seen is None:
            return None
        if isinstance(seen, requests.exceptions.ProxyError):
            return seen
        inner = getattr(seen, "inner_exception", None)
        seen = inner if isinstance(inner, BaseException) else (seen.__cause__ or seen.__context__)
    return None


def _proxy_said_407(exc: BaseException) -> bool:
    """Whether a connection failure is the proxy refusing a tunnel for want of credentials:
    read, never shown."""
    found = _proxy_error(exc)
    return found is not None and tunnel_refused_407(str(found))


def _credentials_rejected(where: str, *, key: bool = False) -> CredentialsRejected:
    return (KeyRejected if key else CredentialsRejected)(
        f"{where}: the account refused the credentials",
        hint="check the key, SAS token or connection string, and its permissions",
    )


def _error_code(exc: HttpResponseError) -> str | None:
    code = getattr(exc, "error_code", None)
    response: Any = exc.response
    if code is None and response is not None:
        code = response.headers.get("x-ms-error-code")
    return _enum_value(code)


def _enum_value(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value))


def _libcloud_status(exc: LibcloudError) -> int | None:
    # libcloud only puts the HTTP status in its message ("... Status code: 503.").
    text = str(getattr(exc, "value", "") or "")
    marker = "Status code: "
    if marker in text:
        digits = text.split(marker, 1)[1][:3]
        if digits.isdigit():
            return int(digits)
    return None


def _is_connect_failure(exc: requests.ConnectionError) -> bool:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, (*_CONNECT_FAILURES, ConnectionRefusedError)):
            return True
        reason = getattr(cause, "reason", None)
        cause = reason if isinstance(reason, BaseException) else cause.__context__
    return False


def _md5_for(data: bytes, checksums: Mapping[str, str], where: str) -> bytes:
    """The MD5 the service will verify: the caller's when given, else that of the bytes
    (which still protects the transfer)."""
    given = checksums.get("md5")
    if given is not None:
        try:
            raw = bytes.fromhex(given)
        except ValueError:
            raw = b""
        if len(raw) != 16:
            raise ChecksumMismatch(f"{where}: the md5 given ({given!r}) is not an MD5 digest")
        return raw
    return hashlib.md5(data).digest()


def _settings(attrs: WriteAttrs) -> ContentSettings:
    from azure.storage.blob import ContentSettings

    return ContentSettings(
        content_type=attrs.content_type,
        content_encoding=attrs.content_encoding,
        cache_control=attrs.cache_control,
        content_disposition=attrs.content_disposition,
        content_language=attrs.content_language,
    )


def _tier(attrs: WriteAttrs, site_name: str) -> StandardBlobTier | None:
    if attrs.storage_class is None:
        return None
    from azure.storage.blob import StandardBlobTier

    for tier in StandardBlobTier:
        if tier.value.lower() == attrs.storage_class.lower():
            return tier
    raise Unsupported(
        f"{site_name}: {attrs.storage_class!r} is not an Azure access tier "
        "(Hot, Cool, Cold, Archive)"
    )


def _unstorable(key: str) -> bool:
    """A key no Azure blob can have: URLs drop `.`/`..` segments, Azure turns `\\` into `/`."""
    return not key or "\\" in key or any(s in (".", "..") for s in key.split("/"))


def _unquote(etag: str | None) -> str | None:
    return etag.strip('"') if etag else None


def _condition(expect: str | None) -> dict[str, Any]:
    """A write's condition as the SDK's keywords (see StoreAdapter.put_object)."""
    if expect is None:
        return {}
    if expect == ABSENT:
        return {"match_condition": MatchConditions.IfMissing}
    return {"etag": _quote(expect), "match_condition": MatchConditions.IfNotModified}


def _quote(etag: str) -> str:
    return etag if etag.startswith('"') else f'"{etag}"'
