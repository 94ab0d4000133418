"""The one contract every store adapter keeps (S3-compatible, Azure Blob, local directory).

Guarantees every implementation gives (the conformance suite in
tests/providers/test_conformance.py checks each of them against every adapter):

- Keys are opaque strings: never normalized (NFC and NFD stay two objects), trimmed or
  re-encoded. What `put_object` stored under a key, `list_objects` and `head` give back
  under the same key.
- `list_objects` streams: it holds one page at a time, yields each object exactly once, in
  ascending order of the key's UTF-8 bytes, and `start_after` resumes strictly after a key.
- `open_range` reads bytes [start, end) as a stream. With `if_match` it fails with
  `SourceChanged` when the object's ETag is no longer that one, and never returns bytes of
  another version. An answer that is not the range asked (its Content-Range names other
  bytes, or a store sent the whole object for a range further in) fails with `Permanent`.
- Write bodies are bytes-like (bytes, bytearray, memoryview: sent without a copy) or
  seekable binary streams positioned at the first byte to send; exactly `length` bytes
  are sent (a retry may seek back).
- A read's stream says what the store answered about the object (`ReadStream.info`):
  attributes, metadata and ETag come with the bytes, so a copy needs no HEAD.
- Writes verify: a `put_object` or `upload_part` whose bytes do not match the MD5 (or
  SHA-256) given in `checksums` fails with `ChecksumMismatch` and stores nothing.
  A write is atomic: readers see the whole new object or nothing.
- A write given `expect` (`put_object`, `complete_multipart`) happens only if the key
  still holds what it names: `ABSENT`, no object (If-None-Match: *); otherwise the object
  of that ETag (If-Match). Else it fails with `PreconditionFailed` and writes nothing.
  Without `expect` the write replaces whatever the key holds.
- A multipart upload is invisible until `complete_multipart`; `abort_multipart` removes
  it and its parts.
- `replace_metadata` changes an object's metadata on the store's side (no byte of the
  object travels), only if the object is still the one named by `if_match`; its bytes
  are untouched.
- Errors are the project's: `NotFound`, `CredentialsRejected`, `EndpointUnreachable`,
  `Retryable`, `Permanent`, `PreconditionFailed`, `ChecksumMismatch`, `SourceChanged`,
  `Unsupported` (migrate.errors). No SDK exception escapes an adapter, and no message
  carries a secret.

Checksums travel as a mapping from algorithm name (`ALGORITHMS`) to lowercase hex. A
composite multipart checksum (S3 COMPOSITE, multipart ETag) keeps its `-N` suffix.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import BinaryIO, Literal, Protocol, runtime_checkable

from migrate.errors import ConfigError, CredentialsRejected, EndpointUnreachable

ALGORITHMS = ("md5", "sha1", "sha256", "crc32", "crc32c", "crc64nvme")
# S3 user-metadata names travel as HTTP header names (x-amz-meta-NAME): RFC 7230 tokens.
HEADER_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(-?\d+)/(\d+|\*)", re.IGNORECASE)


# A proxy's refusal of a tunnel for want of credentials, as http.client words it; not any
# "407" (a proxy on port 40711 that refused the connection was taken for one: a flaky test).
_TUNNEL_407 = re.compile(r"Tunnel connection failed: 407\b|\b407 Proxy Authentication")


_TUNNEL_STATUS = re.compile(r"Tunnel connection failed: (\d{3})\b")


def proxy_failed(where: str, proxy: str, text: str) -> EndpointUnreachable:
    """The declared proxy did not take the request on: it refused the tunnel with a status
    (a rule that does not let the host through, 403; its own upstream failing, 502), or it
    does not answer. `text`: the failure's (read, never shown: it names the proxy with
    its credentials)."""
    status = _TUNNEL_STATUS.search(text)
    if status is not None and status[1].startswith("5"):
        return EndpointUnreachable(
            f"{where}: the declared proxy {proxy} could not reach the endpoint (HTTP {status[1]})",
            hint="check the endpoint's host and port in the sites file, and that the proxy "
            "can reach it (ask its operator)",
        )
    if status is not None:
        return EndpointUnreachable(
            f"{where}: the declared proxy {proxy} refused the connection to the endpoint "
            f"(HTTP {status[1]})",
            hint="the proxy's rules must let the endpoint's host through (ask its "
            "operator), or the site's `proxy` must name another proxy",
        )
    return EndpointUnreachable(
        f"{where}: the declared proxy {proxy} does not answer",
        hint="check that the proxy is up and the site's `proxy` names it",
    )


def tunnel_refused_407(text: str) -> bool:
    """Whether a connection failure's text (read, never shown) is a proxy's 407."""
    return _TUNNEL_407.search(text) is not None


def proxy_refused(where: str, proxy: str | None = None) -> CredentialsRejected:
    """The declared proxy answered 407 (to a request, or to the CONNECT of an https
    endpoint): the proxy's credentials, not the store's. `proxy`: its URL (never holds
    user:password: the sites file refuses that), when the caller has it."""
    which = f"the proxy {proxy}" if proxy else "the site's proxy"
    return CredentialsRejected(
        f"{where}: {which} asked for credentials it was not given, or refused them (407)",
        hint="set credentials.proxy_auth_env in the site to a variable holding the proxy's "
        "user:password, or check the one it names",
    )


def not_a_url(site: str, endpoint: str) -> ConfigError:
    """A site's endpoint no http(s) URL can be read from, with how to write it."""
    # `http//host` or `https:/host`: a scheme mistyped, not missing (prefixing another
    # one would make `https://http//host`).
    mistyped = "://" not in endpoint and re.match(r"(?i)https?[:/]", endpoint)
    return ConfigError(
        f"site {site}: endpoint {endpoint!r} is not an http(s) URL",
        hint=f'write it with its scheme: endpoint = "https://{endpoint}"'
        if "://" not in endpoint and not mistyped
        else "write it as https://HOST or https://HOST:PORT",
    )


def unresolved(exc: BaseException) -> bool:
    """Whether a connection failed because its host name does not resolve (DNS): said as
    such, not as a store that does not answer. Follows the causes botocore, urllib3 and
    requests wrap the resolver's error in."""
    import socket

    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        cause = todo.pop()
        if cause is None or id(cause) in seen:
            continue
        seen.add(id(cause))
        if isinstance(cause, socket.gaierror) or type(cause).__name__ == "NameResolutionError":
            return True
        wrapped = getattr(cause, "kwargs", None)
        reason = getattr(cause, "reason", None)
        todo += [cause.__cause__, cause.__context__]
        todo += [x for x in (reason, (wrapped or {}).get("error")) if isinstance(x, BaseException)]
    return False


def wrong_range(content_range: str | None, start: int, end: int | None) -> str | None:
    """What is wrong with an answer to a read of bytes [start, end) (to the object's end
    when `end` is None), judged by its Content-Range; None when it is the range asked.

    Without a Content-Range the answer is the whole object: right only from byte 0 (bytes
    beyond the range are then caught by the reader). A range that stops early at the
    object's last byte is right: the object is shorter than asked, which the reader reports
    as a change of the source. An empty object has no wrong bytes to send (Azurite says
    "bytes 0--1/0" for it)."""
    asked = f"bytes {start}-{'' if end is None else end - 1}"
    if not content_range:
        if start == 0:
            return None
        return f"the store sent the whole object when asked for {asked} (it ignores Range)"
    found = _CONTENT_RANGE.fullmatch(content_range.strip())
    if found is None:
        return f"the store's Content-Range {content_range!r} cannot be read (asked {asked})"
    first, last, total = int(found[1]), int(found[2]), found[3]
    if total == "0":
        return None
    at_the_end = total.isdigit() and last == int(total) - 1
    if (
        first == start
        and first <= last
        and (not total.isdigit() or last < int(total))
        and (end is None or last == end - 1 or (last < end - 1 and at_the_end))
    ):
        return None
    sent = content_range.strip()
    return f"the store sent {sent} when asked for {asked} (its Range support is broken)"


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One object as a listing or a HEAD reports it."""

    container: str
    key: str
    size: int
    etag: str | None = None  # without quotes
    last_modified: datetime | None = None
    checksums: Mapping[str, str] = field(default_factory=dict)  # algorithm -> hex
    storage_class: str | None = None  # S3 storage class or Azure access tier, as the store says
    version_id: str | None = None
    content_type: str | None = None
    # None: the listing does not carry metadata (S3 ListObjects); head() gives it.
    metadata: Mapping[str, str] | None = None
    content_encoding: str | None = None
    cache_control: str | None = None
    content_disposition: str | None = None
    content_language: str | None = None
    # The HTTP Expires header as the store gives it (S3 and local directories keep one; Azure
    # and GCS have none)
    expires: str | None = None
    # True where a read needs a restore first (Azure Archive tier, S3 GLACIER/DEEP_ARCHIVE
    # not restored).
    archived: bool = False
    # How many tags the object bears (S3 object tagging, Azure blob index tags), where the
    # answer says: Azure's listings and reads, S3's reads (x-amz-tagging-count; an S3
    # listing does not say, so 0 there). `read_tags` gives them.
    tags: int = 0
    # Azure's blob type (BlockBlob, AppendBlob, PageBlob); None where the store has one kind.
    blob_type: str | None = None


# Classes a restore leaves as they were (S3 GLACIER, DEEP_ARCHIVE: a restored object keeps
# its class while a copy of it can be read): whether one can be read is `archived`, said
# object by object, never the class alone.
RESTORED_IN_PLACE = frozenset({"GLACIER", "DEEP_ARCHIVE"})

# A write's `expect` when its key must hold no object (see the module doc).
ABSENT = "*"


@dataclass(frozen=True, slots=True)
class WriteAttrs:
    """What a write sets besides the bytes."""

    content_type: str | None = None
    content_encoding: str | None = None
    cache_control: str | None = None
    content_disposition: str | None = None
    content_language: str | None = None
    # kept by the stores that can (`Capabilities.expires_header`), ignored by the others
    expires: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    storage_class: str | None = None  # destination's own class name, already mapped
    # The object's tags (S3 object tagging, Azure blob index tags). A write sets them (None
    # or empty: none); `replace_metadata` leaves an object's tags as they are, and None
    # there means they are not known to the caller (a store that must write the object
    # anew then reads them first).
    tags: Mapping[str, str] | None = None

    @classmethod
    def of(
        cls,
        info: ObjectInfo,
        metadata: Mapping[str, str],
        storage_class: str | None,
        tags: Mapping[str, str] | None = None,
    ) -> WriteAttrs:
        """What writing `info`'s object again sets: its content type and the headers a
        copy keeps, with these metadata, class and tags."""
        return cls(
            content_type=info.content_type,
            content_encoding=info.content_encoding,
            cache_control=info.cache_control,
            content_disposition=info.content_disposition,
            content_language=info.content_language,
            expires=info.expires,
            metadata=metadata,
            storage_class=storage_class,
            tags=None if tags is None else dict(tags),
        )


# The headers a copy keeps besides the content type (WriteAttrs.of), which verify compares.
CARRIED_HEADERS = (
    "content_encoding",
    "cache_control",
    "content_disposition",
    "content_language",
    "expires",
)


def expires_instant(text: str) -> datetime | None:
    """The moment an Expires header names, however written (an HTTP date, ISO 8601, epoch
    seconds, as botocore reads "0"): one path rewrites it as an HTTP date, another sends
    it as given, so copies are compared by it. None for a value that is no date at all."""
    with suppress(TypeError, ValueError, IndexError):
        return parsedate_to_datetime(text).astimezone(UTC)
    with suppress(ValueError, OverflowError, OSError):
        return datetime.fromtimestamp(float(text), UTC)
    with suppress(ValueError):
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        return when if when.tzinfo else when.replace(tzinfo=UTC)
    return None


def carried_headers(obj: ObjectInfo) -> dict[str, str]:
    """The object's headers of CARRIED_HEADERS that have a value."""
    return {name: value for name in CARRIED_HEADERS if (value := getattr(obj, name))}


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What the store answered to a completed write."""

    etag: str | None
    version_id: str | None = None
    checksums: Mapping[str, str] = field(default_factory=dict)  # as returned by the server
    # Where MD5-shaped, the ETag is the bytes' MD5 (a completed upload's: the MD5 of its
    # parts' MD5s, "-N"); False where the store says it is not (S3 SSE-KMS, SSE-C).
    etag_hashes_bytes: bool = True


@dataclass(frozen=True, slots=True)
class PartResult:
    part_number: int  # 1-based
    etag: str | None
    size: int
    checksums: Mapping[str, str] = field(default_factory=dict)
    etag_hashes_bytes: bool = True  # as in WriteResult


@dataclass(frozen=True, slots=True)
class StoreLimits:
    """A store's sizes where a sourced fact (the catalog) gives them; None: S3's own, as
    Capabilities has them. Scaleway takes 1,000 parts, not 10,000: an adapter that did not
    know would send parts it refuses after the thousandth."""

    max_parts: int | None = None
    min_part_size: int | None = None
    max_part_size: int | None = None
    max_single_put: int | None = None
    max_object_size: int | None = None

    def applied_to(self, caps: Capabilities) -> Capabilities:
        known = {f.name: v for f in fields(self) if (v := getattr(self, f.name)) is not None}
        return replace(caps, **known)


@dataclass(frozen=True, slots=True)
class UploadInfo:
    """An unfinished multipart upload."""

    container: str
    key: str
    upload_id: str
    initiated: datetime | None = None


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a store can do; callers check these, never the provider's name."""

    native_checksums: tuple[str, ...] = ()  # algorithms the listing/HEAD may carry
    verifies_checksums: tuple[str, ...] = ("md5",)  # algorithms sent for the server to check
    # Of those, the ones a sourced fact (the catalog, or this project's own code) confirms
    # the server checks on write: only these may stand alone as the proof of the bytes sent.
    confirmed_checksums: tuple[str, ...] = ()
    max_parts: int = 10_000
    min_part_size: int = 5 * 1024 * 1024
    max_part_size: int = 5 * 1024**3
    max_object_size: int = 5 * 1024**4
    max_single_put: int = 5 * 1024**3
    max_copy_size: int = 5 * 1024**3  # largest object one server-side copy request can take
    lists_uploads: bool = True  # list_multipart_uploads / list_parts are available
    conditional_read: bool = True
    versioning: bool = False
    tiers: bool = False  # reports access tier / storage class
    metadata_in_listing: bool = False
    max_key_bytes: int = 1024
    max_segment_bytes: int | None = None  # e.g. 255 on SeaweedFS and local filesystems
    # False where a key cannot also be a prefix of other keys ("a" beside "a/b"): a
    # directory tree cannot hold both; such a write fails with Unsupported.
    key_may_be_prefix: bool = True
    # True where list_objects gives keys in UTF-8 byte order (Python's str order) and a
    # listing from `start_after` skips what comes before it without reading it: a caller
    # may then list a key range and stop past its end (S3). Azure sorts by UTF-16 and an
    # account with a hierarchical namespace in path order, with no start-after.
    ranged_listing: bool = False
    # False where objects cannot bear tags (GCS): read_tags gives none, without a request.
    object_tags: bool = True
    # True where an object keeps an HTTP Expires header (S3): elsewhere a copy cannot carry
    # one, and verify does not hold its absence against the copy.
    expires_header: bool = False
    # False where the API used cannot say what a container keeps (GCS): protection() and
    # replication() answer unknown, after checking that the container exists.
    reads_protection: bool = True


@dataclass(frozen=True, slots=True)
class ReplicationTarget:
    """One place a store copies a container's data to by itself, outside the copy migrate
    makes: an S3 replication rule's destination bucket, an Azure account's geo-secondary."""

    kind: Literal["bucket-replication", "geo-redundancy"]
    region: str | None  # the provider's region code; None: the API does not say
    description: str  # for the plan's finding: which rule, which bucket or account


@dataclass(frozen=True, slots=True)
class Replication:
    """What copies of a container the store makes elsewhere, as far as its API says.

    known=False: the API could not say (not implemented, not permitted, not readable);
    `targets` is then what was learnt before that, and `detail` says why and what to
    check. known=True with no targets: the API says there is no such copy."""

    targets: tuple[ReplicationTarget, ...] = ()
    known: bool = True
    detail: str = ""


# What a write sends: bytes-like, or a seekable stream (see the module doc).
WriteBody = bytes | bytearray | memoryview | BinaryIO


@dataclass(frozen=True, slots=True)
class Protection:
    """What a container keeps beyond its current objects, and what locks them, as far as
    the store's data API says. None: the API could not say (`detail` says why).

    `older_versions` counts noncurrent versions, delete markers and snapshots seen by a
    bounded probe (one listing page); `counted_all` is False when the probe stopped before
    the end, so the count is a lower bound."""

    versioning: Literal["enabled", "suspended", "off"] | None = "off"
    older_versions: int | None = 0
    counted_all: bool = True
    object_lock: bool | None = False  # S3 Object Lock, an Azure immutability policy
    legal_hold: bool | None = False  # a hold on the container (Azure); S3's are per object
    detail: str = ""


class ReadStream(Protocol):
    """A stream of an object's bytes; close() releases the connection.

    `info` is the object as the read's response described it: `size` is the whole
    object's (not the range's), with content type, encoding, cache control, user metadata,
    ETag, last modified and storage class; None where the store's read does not say."""

    @property
    def info(self) -> ObjectInfo | None: ...

    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


@runtime_checkable
class StoreAdapter(Protocol):
    """One store (a site): the same calls for S3-compatible, Azure Blob and local."""

    site_name: str
    capabilities: Capabilities

    def check(self, container: str) -> None:
        """Prove reachability and credentials on one container (one cheap request).

        Raises CredentialsRejected, EndpointUnreachable or NotFound.
        """
        ...

    def check_account(self) -> str:
        """Prove reachability and credentials without a container (a site that names none:
        a destination whose buckets the run makes). One cheap request; returns what it
        showed. Raises CredentialsRejected (the credentials refused, not merely denied that
        request) or EndpointUnreachable."""
        ...

    def create_container(self, container: str) -> None:
        """Create a bucket/container; no error if it exists and is ours."""
        ...

    def list_objects(
        self, container: str, prefix: str = "", start_after: str | None = None
    ) -> Iterator[ObjectInfo]:
        """Stream every object under prefix, once each, in key order (see module doc)."""
        ...

    def head(self, container: str, key: str) -> ObjectInfo:
        """Everything known of one object, metadata included. NotFound if absent."""
        ...

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
        """Bytes [start, end) (end None: to the end) as a stream, conditioned on if_match."""
        ...

    def read_tags(
        self, container: str, key: str, *, version_id: str | None = None
    ) -> dict[str, str]:
        """The object's tags (S3 object tagging, Azure blob index tags), {} where it has
        none; of that version where given (stores with versions). NotFound if absent."""
        ...

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
        """Store `length` bytes read from body in one request; the server checks checksums.
        `expect`: `ABSENT` or an ETag the key must hold (see the module doc)."""
        ...

    def create_multipart(self, container: str, key: str, attrs: WriteAttrs) -> str:
        """Start a multipart upload; returns its upload id."""
        ...

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
        """Send one part (1-based); the server checks the part's checksums."""
        ...

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
        """Assemble the parts in part-number order; the object appears whole. `attrs` are
        the ones given to create_multipart: stores that set attributes only at commit
        (Azure block blobs) need them again when an upload resumes in a new process.
        `expect`: as for put_object; the upload is kept when it fails."""
        ...

    def abort_multipart(self, container: str, key: str, upload_id: str) -> None:
        """Drop an unfinished upload and its parts; no error if already gone."""
        ...

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
        """Give an object the user metadata of `attrs`, keeping its bytes, on the store's
        side: nothing of the object is sent. `attrs` are all of the object's attributes, as
        written: a store that can only rewrite them all (S3: a copy onto itself, multipart
        above `max_copy_size` bytes) sets every one. The object keeps its tags (see
        `WriteAttrs.tags`). Conditioned on `if_match`:
        SourceChanged if the object is no longer that one. Returns the object's ETag
        afterwards (a new one on some stores) and the checksums the store computed.

        `version_id` is the version written with the ETag `if_match` names, as that write
        returned it, where the container keeps versions. A store that rewrites by copying
        removes it once the copy is in place: the object is left with one version, not two
        identical ones (a version under a retention lock stays)."""
        ...

    def list_multipart_uploads(self, container: str, prefix: str = "") -> Iterator[UploadInfo]:
        """Unfinished uploads under prefix (Unsupported where capabilities say so)."""
        ...

    def list_parts(self, container: str, key: str, upload_id: str) -> Iterator[PartResult]:
        """Parts already received for an unfinished upload, in part order."""
        ...

    def delete(self, container: str, key: str) -> None:
        """Remove an object; no error if already absent."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...

    def replication(self, container: str) -> Replication:
        """What copies of this container the store makes elsewhere, as far as its API says
        (S3 bucket replication rules, Azure geo-redundancy); known=False where it cannot
        say. One or two cheap requests, through the same client (and RequestGuard) as
        every other call. Raises CredentialsRejected or EndpointUnreachable like `check`,
        and NotFound for a missing container where the store checks that."""
        ...

    def protection(self, container: str) -> Protection:
        """Versioning, older versions or snapshots, and retention locks of one container
        (a few cheap requests, at most one listing page). Fields the store cannot tell are
        None. Raises CredentialsRejected, EndpointUnreachable, NotFound like `check`."""
        ...


class RequestGuard(Protocol):
    """The routing seam (migrate.routing implements it). Adapters call `check` at their
    HTTP stack's lowest hook, for every request and every redirect, before a byte of the
    body leaves; `record` after the answer, for the route attestation."""

    def check(self, method: str, url: str) -> None:
        """Raise RouteRefused if the URL's host is not allowed."""
        ...

    def record(self, method: str, url: str, sent_bytes: int, status: int | None) -> None: ...
