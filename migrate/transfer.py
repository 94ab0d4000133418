"""Copy one object from a source store to a destination store, streaming, with proof.

Bytes flow part by part: each part (at most `part_size` bytes) is read from the source
with a condition on the ETag seen at listing, hashed, and sent with checksums the
destination verifies, so it refuses corrupted bytes: its Content-MD5 and its SHA-256 (where
the destination takes one), or its SHA-256 alone (below). Memory per object is one part; a
retry re-sends the same part buffer.

Where the catalog confirms the destination verifies SHA-256 (`confirmed_checksums`), a part
goes with its SHA-256 alone, and its MD5 (what the ledger records per part, and what the
multipart ETag is made of) is the one the store answers: the store computed it on the bytes
whose SHA-256 it verified, so computing it here too would be a third pass over every byte
for no added proof. Where the store's answer carries no MD5 (an ETag of SSE-KMS or SSE-C)
or not the SHA-256 sent, the MD5 is computed here and compared with the store's.

Proofs recorded with each finished object:
- destination: every request carried a checksum the server verified, and the ETag it
  returned equals the one computed locally (MD5, or MD5 of part MD5s for multipart) where
  the store's ETag is MD5-shaped (for parts sent with their SHA-256 alone, the part MD5s
  are the store's, and the server-verified SHA-256 is the proof);
- source: the MD5 computed on the bytes read equals the source's native MD5 (Azure
  Content-MD5, single-part S3 ETag) when it has one; another whole-object checksum the
  source states (migrate/sourcesum.py: S3's full-object CRC64NVME, GCS's CRC32C) holds
  too, and is the proof of an object without an MD5. Objects without any are listed as
  such in the report: their proof is the bytes read, not the source's own hash.

SHA-256 as metadata: a single PUT carries `migrate-sha256`. A multipart upload starts
before the whole object's SHA-256 is known, so after it completes (and its ETag is proven)
the destination rewrites the object's metadata on its side (S3: a copy onto itself,
conditioned on that ETag; nothing is sent again) unless the plan turned this off.

Writes expect what the phase's conflict check saw under the key (`TransferItem.expect`:
nothing, or the ETag of the object it let be replaced), so an object another writer put
there since is never overwritten: the write fails, and the transfer fails as a conflict
(`WriteConflict`). A retry whose first attempt was written but its answer lost meets its
own object: found by a HEAD to be the bytes sent, it is done. A store that refuses the
condition (`Unsupported`) is written without one, for the rest of the run
(`ObjectCopy.unguarded`).

Resume: parts already recorded are not sent again. Parts the store holds that the ledger
missed (a crash between the store's answer and the ledger write) are re-read from the
source and their MD5 compared with the store's part ETag instead of being re-sent.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future
from concurrent.futures import wait as futures_wait
from contextvars import copy_context
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Protocol, TypeVar

from migrate.errors import (
    SITE_WIDE,
    ChecksumMismatch,
    CompletionRaced,
    CredentialsRejected,
    NotFound,
    Permanent,
    PreconditionFailed,
    SourceChanged,
    Unsupported,
)
from migrate.keys import filed_name, may_be_renamed
from migrate.sourcesum import ALGORITHMS, SourceSum
from providers.base import (
    ABSENT,
    Capabilities,
    ObjectInfo,
    PartResult,
    StoreAdapter,
    WriteAttrs,
    WriteResult,
)

T = TypeVar("T")

MiB = 1024 * 1024
# Metadata migrate writes on each copy; verify and dry-run read them back.
SHA256_METADATA = "migrate-sha256"
SOURCE_MTIME_METADATA = "migrate-source-last-modified"
PART_SIZE_METADATA = "migrate-part-size"
OWN_METADATA = frozenset({SHA256_METADATA, SOURCE_MTIME_METADATA, PART_SIZE_METADATA})
DEFAULT_PART_SIZE = 16 * MiB
_MD5_HEX = re.compile(r"^[0-9a-f]{32}$")
_MULTIPART_ETAG = re.compile(r"^[0-9a-f]{32}-\d+$")


def carried_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """The source's user metadata a copy carries: all of it but migrate's own names, which
    the copy writes itself (a source that is an earlier migration's destination has them:
    carried, they would vouch for bytes this copy has not proved yet)."""
    return {k: v for k, v in (metadata or {}).items() if k.lower() not in OWN_METADATA}


@dataclass(frozen=True)
class TransferItem:
    """One object to copy, as the ledger holds it."""

    container: str
    key: str
    size: int
    source_etag: str | None
    source_version: str | None
    source_checksums: Mapping[str, str]
    destination_bucket: str
    destination_key: str
    attrs: WriteAttrs | None = None  # None: read them with a HEAD of the source
    upload_id: str | None = None  # an upload begun by an earlier run
    part_size: int | None = None
    done_parts: Mapping[int, str] = field(default_factory=dict)  # part number -> MD5 hex
    part_etags: Mapping[int, str] = field(default_factory=dict)  # -> the store's ETag
    # Source tier or class -> destination storage class, from the plan's mapping.
    storage_classes: Mapping[str, str] = field(default_factory=dict)
    # What the write expects under the destination key: `ABSENT`, or the ETag of the object
    # the conflict check let be replaced; None: written whatever is there (what the check
    # found has no ETag, or could not be read, and --overwrite let it be replaced).
    expect: str | None = None


@dataclass(frozen=True)
class TransferOutcome:
    size: int
    sha256: str
    md5: str  # whole-object MD5 for single PUTs, MD5-of-part-MD5s "-N" for multipart
    destination_etag: str | None
    source_proof: str  # the source's own checksum that matched ("md5", "crc64nvme", ...), or "none"
    parts: int
    sent_bytes: int  # bytes actually sent now (resumed parts are not sent again)
    tags: Mapping[str, str] = field(default_factory=dict)  # those set on the object


class Recorder(Protocol):
    """Where the copy reports durable progress (the ledger, through the executor)."""

    def upload_started(self, item: TransferItem, upload_id: str, part_size: int) -> None: ...

    def part_done(self, item: TransferItem, upload_id: str, part: PartResult, md5: str) -> None: ...

    def claimed(self, bucket: str, key: str) -> bool:
        """Whether a transfer of the plan writes under this destination key."""
        ...


def choose_part_size(size: int, caps: Capabilities, preferred: int = DEFAULT_PART_SIZE) -> int:
    """The preferred size, raised so the object fits in the store's maximum part count."""
    needed = -(-size // caps.max_parts)  # ceiling division
    part = max(preferred, needed, caps.min_part_size)
    # Whole MiB, readable in the ledger and in reports, unless that passes the store's
    # maximum (a decimal one: Scaleway's 5 GB) where the exact size still fits.
    part = min(-(-part // MiB) * MiB, max(part, caps.max_part_size))
    if part > caps.max_part_size:
        raise Permanent(
            f"object of {size} bytes needs parts over the destination's maximum of "
            f"{caps.max_part_size} bytes"
        )
    return part


class WriteConflict(PreconditionFailed):
    """Another writer put an object under the destination key after the phase's conflict
    check: it is left as it is, and the transfer fails as a conflict."""


class Stopped(Exception):  # not a MigrateError: nothing failed
    """A copy left unfinished because the run is stopping (Ctrl-C, or a store found gone):
    not a failure, never recorded as one; the next run resumes the object."""


class RunStop(threading.Event):
    """Set once the run stops (an interrupt, or a store found gone past the retries): the
    copies under way stop between parts, a retry is not made, and, once a store is found
    gone, a part not begun is not sent. `cause`: the error that decided it, if one did:
    what the run raises, not the `Stopped` of the copies that stopped because of it (a
    review: a store's outage came out as exit 1, or the run went on with every later copy
    stopped)."""

    def __init__(self) -> None:
        super().__init__()
        self.cause: BaseException | None = None
        self._first = threading.Lock()
        # Set with `cause`: what a wait that must end only for a store gone (a rate limit's,
        # which an interrupt alone lets run out) waits on.
        self.failed = threading.Event()

    def stop_for(self, cause: BaseException) -> None:
        with self._first:
            if self.cause is None:
                self.cause = cause
        self.failed.set()
        self.set()


def _b64(hexdigest: str) -> str:
    return base64.b64encode(bytes.fromhex(hexdigest)).decode()


def _composite(part_md5s: list[str]) -> str:
    """The S3 multipart ETag: MD5 of the concatenated part MD5s, then -N."""
    joined = b"".join(bytes.fromhex(m) for m in part_md5s)
    return f"{hashlib.md5(joined).hexdigest()}-{len(part_md5s)}"


_EMPTY_MD5 = hashlib.md5(b"").hexdigest()


def native_md5(checksums: Mapping[str, str], etag: str | None) -> str | None:
    """The source's own whole-object MD5, if it has one."""
    md5 = checksums.get("md5")
    if md5 and _MD5_HEX.match(md5):
        return md5
    if etag and _MD5_HEX.match(etag.lower()):
        return etag.lower()
    return None


class Call(Protocol):
    """Calls an adapter operation through the executor's retry layer: call(fn) -> fn()."""

    def __call__(self, fn: Callable[[], T], /) -> T: ...


def _direct(fn: Callable[[], T], /) -> T:
    return fn()


class PartBuffers:
    """A pool of `count` part buffers shared by every copy: the memory of a phase is
    count x part size, whatever the mix of objects, and a buffer is reused rather than
    allocated (and zero-filled) for every part. `take(length)` waits for a free buffer and
    gives a view of its first `length` bytes; `give(view)` returns it, by whichever thread
    sent the part. A part larger than the pooled size (an object whose part size was raised
    to fit the store's part count) or under 1 MiB (a small object) gets its own buffer,
    still under the same count."""

    def __init__(self, count: int, size: int = DEFAULT_PART_SIZE) -> None:
        self._slots = threading.BoundedSemaphore(max(1, count))
        self._size = size
        self._free: list[bytearray] = []
        self._lock = threading.Lock()
        self._waiting = 0  # copies blocked in take()

    def take(self, length: int) -> memoryview:
        with self._lock:
            self._waiting += 1
        try:
            self._slots.acquire()
        finally:
            with self._lock:
                self._waiting -= 1
        return self._view(length)

    def try_take(self, length: int) -> memoryview | None:
        """A buffer if one is free and no copy is waiting for one, else None: reading
        ahead uses spare memory only, never a buffer another copy needs to go on."""
        with self._lock:
            if self._waiting:
                return None
        if not self._slots.acquire(blocking=False):
            return None
        return self._view(length)

    def _view(self, length: int) -> memoryview:
        buf = None
        if MiB <= length <= self._size:
            with self._lock:
                buf = self._free.pop() if self._free else None
            if buf is None:
                buf = bytearray(self._size)
        else:  # small objects: an exact buffer costs less than a whole part's
            buf = bytearray(length)
        return memoryview(buf)[:length]

    def give(self, view: memoryview) -> None:
        buf = view.obj
        if isinstance(buf, bytearray) and len(buf) == self._size:
            with self._lock:
                self._free.append(buf)
        self._slots.release()


class _SourceReader:
    """Reads the source object part by part. Every part is its own ranged read conditioned
    on the ETag (or version) seen at listing, so a rewrite between two parts fails the next
    read (SourceChanged) instead of mixing two versions. Each part lands in one buffer."""

    def __init__(self, copy: ObjectCopy, item: TransferItem) -> None:
        self._copy = copy
        self._item = item
        self.info: ObjectInfo | None = None  # the source as the first read described it

    def read(self, start: int, length: int, into: memoryview) -> memoryview:
        """Bytes [start, start+length) of the version seen at listing, into `into`."""
        item = self._item

        def attempt() -> memoryview:
            stream = self._copy.source.open_range(
                item.container,
                item.key,
                start,
                start + length,
                if_match=item.source_etag,
                version_id=item.source_version,
            )
            if self.info is None:
                self.info = stream.info
            got = 0
            try:
                while got < length:
                    chunk = stream.read(min(MiB, length - got))
                    if not chunk:
                        break
                    into[got : got + len(chunk)] = chunk
                    got += len(chunk)
                # A store that ignored the range sent more (from the object's start):
                # these bytes are not the part's.
                extra = stream.read(1) if got == length else b""
            finally:
                stream.close()
            if extra:
                raise Permanent(
                    f"{item.container}/{item.key}: the source answered bytes beyond the "
                    f"range asked at {start} (did it ignore the Range header?)"
                )
            if got != length:
                raise SourceChanged(
                    f"{item.container}/{item.key}: read {got} bytes at {start}, "
                    f"expected {length} (object shorter than listed)"
                )
            return into

        return self._copy.call(attempt)


class _PartReads:
    """The parts of one object, in order, each in a buffer the caller then owns (to send,
    or to give back). When buffers are free (few objects in flight: a pilot, the last large
    object of a wave), the next parts are read at the same time on the `reads` executor, so
    one object alone is read like many. The part needed now is read on the caller's thread
    unless a read of it is already under way. A buffer is waited for only when no part is
    held here: a copy never waits for memory while holding parts it has not handed on.
    `close()` drops the reads not started, waits for those running, and gives every buffer
    back."""

    def __init__(
        self,
        copy: ObjectCopy,
        reader: _SourceReader,
        size: int,
        part_size: int,
        count: int,
    ) -> None:
        self._copy = copy
        self._reader = reader
        self._size = size
        self._part_size = part_size
        self._count = count
        self._next = 1
        self._window: deque[tuple[int, memoryview, Future[memoryview] | None]] = deque()

    def _span(self, number: int) -> tuple[int, int]:
        start = (number - 1) * self._part_size
        return start, min(self._part_size, self._size - start)

    def _fill(self) -> None:
        buffers, reads = self._copy.buffers, self._copy.reads
        if not self._window and self._next <= self._count:
            data = buffers.take(self._span(self._next)[1])
            self._window.append((self._next, data, None))  # read below, on this thread
            self._next += 1
        while reads is not None and self._next <= self._count:
            start, length = self._span(self._next)
            ahead = buffers.try_take(length)
            if ahead is None:
                break
            try:
                # In this copy's context: the read's retries count for this object.
                future = reads.submit(copy_context().run, self._reader.read, start, length, ahead)
            except BaseException:
                buffers.give(ahead)
                raise
            self._window.append((self._next, ahead, future))
            self._next += 1

    def next(self) -> tuple[int, memoryview]:
        """The next part, read: (number, bytes)."""
        self._fill()
        number, data, future = self._window.popleft()
        try:
            if future is None or future.cancel():  # not started: read it here
                self._reader.read(*self._span(number), data)
            else:
                future.result()
        except BaseException:
            self._copy.buffers.give(data)
            raise
        return number, data

    def close(self) -> None:
        while self._window:
            _, data, future = self._window.popleft()
            # A read not started is dropped; one under way is waited for: its bytes are
            # still landing in the buffer.
            if future is not None and not future.cancel():
                futures_wait([future])
            self._copy.buffers.give(data)


class _PartsInFlight:
    """The parts of one object being sent: on the shared upload executor when there is one,
    else right away on the caller's thread."""

    def __init__(self, copy: ObjectCopy) -> None:
        self._copy = copy
        self._futures: dict[int, Future[tuple[PartResult, str]]] = {}
        self._done: dict[int, tuple[PartResult, str]] = {}
        self.sent = 0

    def send(
        self, item: TransferItem, upload_id: str, number: int, data: memoryview, md5: str | None
    ) -> None:
        if self._copy.uploads is None:
            self._done[number] = self._copy.send_part(item, upload_id, number, data, md5)
            self.sent += len(data)
            return
        self._futures[number] = self._copy.uploads.submit(
            copy_context().run, self._copy.send_part, item, upload_id, number, data, md5
        )
        self.sent += len(data)

    def raise_failure(self) -> None:
        if any(f.done() and f.exception() is not None for f in self._futures.values()):
            self._raise_failed()

    def wait(self) -> dict[int, tuple[PartResult, str]]:
        """Each part sent: the store's answer and the part's MD5."""
        self._raise_failed()
        for number, future in sorted(self._futures.items()):
            self._done[number] = future.result()
        return self._done

    def _raise_failed(self) -> None:
        """Once every part is done, the error that says most: a store gone (the run stops),
        else the first part's failure, else a part stopped because the run stops."""
        self.drain()
        failed = [e for _, f in sorted(self._futures.items()) if (e := f.exception())]
        for kind in (SITE_WIDE, Exception):
            first = next(
                (e for e in failed if isinstance(e, kind) and not isinstance(e, Stopped)), None
            )
            if first is not None:
                raise first
        if failed:
            raise failed[0]

    def drain(self) -> None:
        """Wait for every part still in flight (their errors are raised by wait or
        raise_failure), so that no request of this upload outlives the copy."""
        futures_wait(list(self._futures.values()))


def _one_object(a: ObjectInfo, b: ObjectInfo) -> bool:
    """Whether two HEADs describe one object (two of the same bytes, written apart, differ
    in their time or migrate's metadata of their source)."""
    return (a.etag, a.size, a.last_modified, dict(a.metadata or {})) == (
        b.etag,
        b.size,
        b.last_modified,
        dict(b.metadata or {}),
    )


class ObjectCopy:
    """Copies one item; stateless between items, so one instance serves many threads.

    With `uploads` (an executor shared by every copy), the parts of one object are sent in
    parallel while the next part is read; without it, one after the other. `buffers`
    bounds the parts held in memory across all copies."""

    def __init__(
        self,
        source: StoreAdapter,
        destination: StoreAdapter,
        recorder: Recorder,
        *,
        part_size: int = DEFAULT_PART_SIZE,
        call: Call = _direct,
        on_bytes: Callable[[int], None] | None = None,
        uploads: Executor | None = None,
        buffers: PartBuffers | None = None,
        sha256_metadata: bool = True,
        reads: Executor | None = None,
        stop: RunStop | None = None,
    ) -> None:
        """`stop`: once set (an interrupt), a multipart copy stops before its next part,
        its upload and parts left recorded for the next run, as after a crash."""
        self.source = source
        self.destination = destination
        self.recorder = recorder
        self.part_size = part_size
        self.call = call
        self.on_bytes = on_bytes or (lambda n: None)
        self.uploads = uploads
        self.reads = reads  # reading ahead the parts of one object (see _PartReads)
        self.buffers = buffers or PartBuffers(1 if uploads is None else 2, part_size)
        self.sha256_metadata = sha256_metadata  # also on multipart objects (see module doc)
        self.stop = stop
        # Set once the destination refused a write's condition: writes go without one.
        self.unguarded = False

    def attrs_for(self, item: TransferItem, info: ObjectInfo | None = None) -> WriteAttrs:
        """The destination's attributes, from what the source's read said of the object
        (`info`), or from a HEAD where the read said nothing (an empty object)."""
        if item.attrs is not None:
            return item.attrs
        if info is None:
            info = self.call(lambda: self.source.head(item.container, item.key))
            # Not every store counts tags in a HEAD (AWS does only in a GET's answer): asked,
            # and a refusal taken as none, as a GET's answer says none to a key without
            # the right to read them.
            tags = self._source_tags(item, known=bool(info.tags))
        else:
            tags = self._source_tags(item) if info.tags else {}
        if item.source_etag and info.etag and info.etag != item.source_etag:
            raise SourceChanged(f"{item.container}/{item.key} changed since the inventory")
        metadata = carried_metadata(info.metadata)
        if info.last_modified is not None:
            metadata[SOURCE_MTIME_METADATA] = info.last_modified.isoformat()
        # The class is mapped by the plan (Azure's Hot/Cool are not S3 classes); unmapped:
        # none sent.
        return WriteAttrs.of(
            info, metadata, item.storage_classes.get(info.storage_class or ""), tags
        )

    def _source_tags(self, item: TransferItem, *, known: bool = True) -> dict[str, str]:
        """The source object's tags. One known to have some (`known`) is not copied without
        them; else a refusal to read them is taken as none."""
        version = item.source_version
        try:
            return self.call(
                lambda: self.source.read_tags(item.container, item.key, version_id=version)
            )
        except (CredentialsRejected, Unsupported, Permanent) as exc:
            if not known:
                return {}
            if not isinstance(exc, CredentialsRejected):
                raise
            raise CredentialsRejected(
                f"{item.container}/{item.key}: its tags cannot be read ({exc.message})",
                hint="grant the source's credentials the right to read object tags (S3: "
                "s3:GetObjectTagging; Azure: Blob Index Data Reader, or a SAS with the t "
                "permission), then run the phase again",
            ) from None

    def _part_size(self, item: TransferItem) -> int:
        return item.part_size or choose_part_size(
            item.size, self.destination.capabilities, self.part_size
        )

    def one_request(self, item: TransferItem) -> bool:
        """Whether `copy` sends the object in one PUT (else as a multipart upload)."""
        limit = min(self._part_size(item), self.destination.capabilities.max_single_put)
        return item.upload_id is None and item.size <= limit

    def copy(self, item: TransferItem) -> TransferOutcome:
        reader = _SourceReader(self, item)
        if self.one_request(item):
            outcome = self._single(item, reader)
        else:
            outcome = self._multipart(item, reader, self._part_size(item))
        if item.destination_key.endswith("/") and item.size > 0:
            self._check_kept_as_object(item)
        elif may_be_renamed(item.destination_key):
            self._check_stored_under_its_key(item)
        return outcome

    def _check_stored_under_its_key(self, item: TransferItem) -> None:
        """A store that keeps objects as files (SeaweedFS's filer, a local directory) stores
        `a//b` and `a\\b` as `a/b` and `/x` as `x`: the write succeeds, and the object is
        under another key, maybe another object's. Such keys, rare, are checked before the
        copy counts as done: the name such a store makes of the key holding the very object
        its own key answers with (a HEAD of each: one object under both names) says it was
        moved.
        (A listing cannot tell: SeaweedFS answers one under `a//` with names made from the
        prefix asked for.) What landed there is left: it may be another transfer's copy,
        of this plan or another, the same bytes, which counted it as its own."""
        bucket, key = item.destination_bucket, item.destination_key
        landed = filed_name(key)
        try:
            there = self.call(lambda: self.destination.head(bucket, landed))
        except NotFound:
            return  # nothing under the name such a store would make: the key is kept
        try:
            mine = self.call(lambda: self.destination.head(bucket, key))
        except NotFound:
            mine = None
        if mine is not None and not _one_object(there, mine):
            return  # two objects: the store keeps the key as it is
        whose = (
            "another object's name in this plan, whose copy fails as a conflict until this "
            "is moved away"
            if self.recorder.claimed(bucket, landed)
            else "remove it there by hand (verify names it `unexpected`)"
        )
        raise Permanent(
            f"{bucket}/{key}: the destination stored the copy under another name, {landed} "
            "(a store keeping objects as files reads an empty, '.' or '..' segment as a "
            f"path, a backslash as '/'): not counted as copied; what it wrote is left at "
            f"{landed}: {whose}",
            hint="rename it at the source (no empty, '.' or '..' segment, no leading '/', no "
            "backslash), then run the inventory, plan and phase again",
        )

    def _check_kept_as_object(self, item: TransferItem) -> None:
        """A store that keeps objects as files (SeaweedFS's filer) takes a key ending with
        '/' for a folder: it answers the write with the bytes' ETag, and keeps none of them.
        Such keys, rare, are read back before the copy counts as done."""
        head = self.call(
            lambda: self.destination.head(item.destination_bucket, item.destination_key)
        )
        if head.size != item.size:
            raise Permanent(
                f"{item.destination_bucket}/{item.destination_key}: the destination keeps "
                f"{head.size:,} of the {item.size:,} bytes written under this key ending "
                "with '/' (a store keeping objects as files takes it for a folder)",
                hint="rename it at the source (no trailing '/'), then run the inventory, "
                "plan and phase again",
            )

    def _store_verifies_sha256(self) -> bool:
        return "sha256" in self.destination.capabilities.verifies_checksums

    def _sha256_alone_proves(self) -> bool:
        """Whether a part's SHA-256 may be its only proof: the store is confirmed to check it."""
        caps = self.destination.capabilities
        return "sha256" in caps.verifies_checksums and "sha256" in caps.confirmed_checksums

    def _checksums_for(self, data: memoryview, md5: str | None) -> dict[str, str]:
        sums = {"md5": md5} if md5 is not None else {}
        if self._store_verifies_sha256():
            sums["sha256"] = hashlib.sha256(data).hexdigest()
        return sums

    def _single(self, item: TransferItem, reader: _SourceReader) -> TransferOutcome:
        data = self.buffers.take(item.size)
        try:
            reader.read(0, item.size, data)
            attrs = self.attrs_for(item, reader.info)
            md5 = hashlib.md5(data).hexdigest()
            sha256 = hashlib.sha256(data).hexdigest()
            proof = self._source_proof(item, md5, reader.info)
            other = self._stated_sum(item, reader.info, ask=proof == "none")
            if other is not None:
                other.update(data)
                proof = self._other_proof(item, other, sha256, proof)
            meta = dict(attrs.metadata)
            meta[SHA256_METADATA] = sha256
            write_attrs = replace(attrs, metadata=meta)
            sums = {"md5": md5}
            if self._store_verifies_sha256():
                sums["sha256"] = sha256

            def put(expect: str | None) -> WriteResult:
                return self.call(
                    lambda: self.destination.put_object(
                        item.destination_bucket,
                        item.destination_key,
                        data,
                        len(data),
                        write_attrs,
                        sums,
                        expect=expect,
                    )
                )

            try:
                result = self._conditioned(item, put)
            except PreconditionFailed:
                result = self._own_write(
                    item,
                    lambda head: _single_is(head, item.size, sha256, md5),
                    # No bytes over no bytes (a folder marker over the folder SeaweedFS
                    # answers a HEAD of its key with, which no listing shows): the same
                    # content, replaced as the check replaces an identical object.
                    again=partial(self._over_empty, item, put) if item.size == 0 else None,
                )
        finally:
            self.buffers.give(data)
        self._check_destination_etag(item, result, md5)
        self.on_bytes(item.size)
        return TransferOutcome(
            item.size, sha256, md5, result.etag, proof, 1, item.size, write_attrs.tags or {}
        )

    def _multipart(
        self, item: TransferItem, reader: _SourceReader, part_size: int
    ) -> TransferOutcome:
        upload_id = item.upload_id
        done: dict[int, str] = dict(item.done_parts)
        count = max(1, -(-item.size // part_size))
        if upload_id is not None and sorted(done) == list(range(1, count + 1)):
            # Every part was recorded: the crash may have come after the store completed
            # the upload and before the ledger heard of it. The store's ETag says which.
            expected = _composite([done[n] for n in range(1, count + 1)])
            try:
                head = self.call(
                    lambda: self.destination.head(item.destination_bucket, item.destination_key)
                )
            except NotFound:
                head = None
            if head is not None and self._ours(head, item, part_size, expected, upload_id):
                proven = self._prove_completed(item, reader, part_size, count, done, expected, head)
                if proven is not None:
                    return proven
                # Another object of ours under this key, and the upload gone: start over.
        if upload_id is not None:
            # Parts the store holds that the ledger missed: prove them, do not resend.
            try:
                held = {p.part_number: p for p in self._list_parts(item, upload_id)}
            except NotFound:  # the upload is gone (aborted, expired, or completed)
                held, upload_id, done = {}, None, {}
            # Recorded parts the store no longer holds are sent again: Azure drops an
            # upload's uncommitted blocks after 7 days, or at any write to the blob, and
            # lists what is left (no "upload gone" answer to go by).
            done = {n: md5 for n, md5 in done.items() if n in held}
            for number, part in held.items():
                if number not in done and part.etag and _MD5_HEX.match(part.etag.lower()):
                    done[number] = ""  # proven below, when its bytes are read again
        held_etags: dict[int, str] = {}
        if upload_id is not None and any(v == "" for v in done.values()):
            held_etags = {
                p.part_number: (p.etag or "").lower() for p in self._list_parts(item, upload_id)
            }
        sha256 = hashlib.sha256()
        # The source's own checksums, known once the first read has described the source.
        whole_md5: hashlib._Hash | None = None
        other: SourceSum | None = None
        asked = False
        sending = _PartsInFlight(self)
        parts_read = _PartReads(self, reader, item.size, part_size, count)
        create_attrs: WriteAttrs | None = None
        results: dict[int, PartResult] = {}
        md5_of: dict[int, str] = {}
        try:
            for _ in range(count):
                sending.raise_failure()  # a part that failed for good: stop reading
                if self.stop is not None and self.stop.is_set():
                    raise Stopped(f"{item.container}/{item.key}: stopped between parts")
                number, data = parts_read.next()
                length = len(data)
                handed = False
                try:
                    if create_attrs is None:
                        # The first read told the attributes: they go with the upload.
                        create_attrs = self._create_attrs(
                            self.attrs_for(item, reader.info), part_size
                        )
                    if upload_id is None:
                        upload_id = self.call(
                            partial(
                                self.destination.create_multipart,
                                item.destination_bucket,
                                item.destination_key,
                                create_attrs,
                            )
                        )
                        self.recorder.upload_started(item, upload_id, part_size)
                    if not asked:
                        whole_md5, other = self._stated_sums(item, reader.info)
                        asked = True
                    sha256.update(data)
                    if whole_md5 is not None:
                        whole_md5.update(data)
                    if other is not None:
                        other.update(data)
                    recorded = done.get(number)
                    # A part sent now takes its MD5 from the store (see the module doc); one
                    # the store may already hold is compared by its MD5 computed here.
                    md5 = None
                    if recorded is not None or not self._sha256_alone_proves():
                        md5 = md5_of[number] = hashlib.md5(data).hexdigest()
                    if md5 is not None and (
                        recorded == md5 or (recorded == "" and held_etags.get(number) == md5)
                    ):
                        if recorded == "":
                            self.recorder.part_done(
                                item, upload_id, PartResult(number, md5, length), md5
                            )
                        # A store that declared a checksum at create wants each part's at
                        # complete.
                        sums = {"md5": md5, "sha256": hashlib.sha256(data).hexdigest()}
                        # The ETag the store gave the part (not its MD5 under SSE-KMS).
                        stored = item.part_etags.get(number) or held_etags.get(number) or md5
                        results[number] = PartResult(number, stored, length, sums)
                        continue
                    handed = True  # the sender gives the buffer back, sent or not
                    sending.send(item, upload_id, number, data, md5)
                finally:
                    if not handed:
                        self.buffers.give(data)
            for number, (result, md5) in sending.wait().items():
                results[number] = result
                md5_of[number] = md5
        finally:
            parts_read.close()
            sending.drain()  # never leave a part in flight behind an error
        assert upload_id is not None and create_attrs is not None
        parts = [results[n] for n in range(1, count + 1)]
        expected = _composite([md5_of[n] for n in range(1, count + 1)])
        # Before the upload is completed: bytes the source's own MD5 disputes never become
        # a visible object (the executor aborts the upload).
        proof = "none"
        if whole_md5 is not None:
            proof = self._source_proof(item, whole_md5.hexdigest(), reader.info)
        if other is not None:
            proof = self._other_proof(item, other, sha256.hexdigest(), proof)
        uid, final_attrs = upload_id, create_attrs

        def complete(expect: str | None) -> WriteResult:
            return self.call(
                lambda: self.destination.complete_multipart(
                    item.destination_bucket,
                    item.destination_key,
                    uid,
                    parts,
                    final_attrs,
                    expect=expect,
                )
            )

        def mine(head: ObjectInfo) -> bool:
            # Only the parts' composite MD5, as the ETag or the store's checksum (a local
            # directory's), proves the object is this upload's (Azure's adapter proves its
            # own commit by the blob's block list, and answers as if the retry succeeded);
            # and only once the upload is gone: one still open was never completed (the
            # same bytes are another writer's, and the upload would stay, under a key done).
            composite = (head.etag or "").lower(), head.checksums.get("md5", "").lower()
            return expected in composite and not self._upload_open(item, uid)

        try:
            completed = self._conditioned(item, complete)
        except PreconditionFailed:
            completed = self._own_write(item, mine)
        except CompletionRaced:
            # A retry whose first completion was stored (its answer lost) may be refused
            # so, not 412: done if the object is this upload's, else the refusal stands.
            found = self._found_ours(item, mine)
            if found is None:
                raise
            completed = found
        self._check_destination_etag(item, completed, expected)
        etag = completed.etag
        if self.sha256_metadata and etag:
            etag = self._write_sha256(
                item, create_attrs, etag, sha256.hexdigest(), completed.version_id
            )
        return TransferOutcome(
            item.size,
            sha256.hexdigest(),
            expected,
            etag,
            proof,
            len(parts),
            sending.sent,
            create_attrs.tags or {},
        )

    def _conditioned(
        self, item: TransferItem, write: Callable[[str | None], WriteResult]
    ) -> WriteResult:
        """The write, expecting what `item.expect` says; on a store that refuses the
        condition, without it (from then on, for every write of this copier)."""
        expect = None if self.unguarded else item.expect
        try:
            return write(expect)
        except Unsupported:
            if expect is None:
                raise
            # Refused for the condition only if the same write without it succeeds.
            result = write(None)
            self.unguarded = True
            return result

    def _own_write(
        self,
        item: TransferItem,
        is_ours: Callable[[ObjectInfo], bool],
        again: Callable[[ObjectInfo], WriteResult] | None = None,
    ) -> WriteResult:
        """After a write's condition failed: the object under the key is this write's
        (a retry whose first attempt was written, its answer lost) or another writer's,
        put since the conflict check (WriteConflict). With `again`, an empty object found
        there is written over by it (PreconditionFailed if that object changed since)."""
        head = self._destination_head(item)
        if head is not None and head.size == item.size and is_ours(head):
            return self._as_written(head)
        if head is not None and head.size == 0 and again is not None:
            try:
                return again(head)
            except PreconditionFailed:
                pass  # bytes put there since the HEAD: another writer's
        found = "another object" if head is not None else "no object any more"
        raise WriteConflict(
            f"{item.destination_bucket}/{item.destination_key} now holds {found}, written "
            "by another writer after this run's conflict check; not overwritten: move it "
            "away, or run with --overwrite"
        )

    def _found_ours(
        self, item: TransferItem, is_ours: Callable[[ObjectInfo], bool]
    ) -> WriteResult | None:
        """The object under the key, as this copy's write, if `is_ours` proves it so."""
        head = self._destination_head(item)
        if head is not None and head.size == item.size and is_ours(head):
            return self._as_written(head)
        return None

    def _destination_head(self, item: TransferItem) -> ObjectInfo | None:
        try:
            return self.call(
                lambda: self.destination.head(item.destination_bucket, item.destination_key)
            )
        except NotFound:
            return None

    @staticmethod
    def _as_written(head: ObjectInfo) -> WriteResult:
        # `is_ours` was the proof: the ETag is not compared again (under SSE-KMS it hashes
        # no bytes).
        return WriteResult(etag=head.etag, version_id=head.version_id, etag_hashes_bytes=False)

    @staticmethod
    def _over_empty(
        item: TransferItem, put: Callable[[str | None], WriteResult], head: ObjectInfo
    ) -> WriteResult:
        """An empty object written over the empty object `head`: only if it is still that
        one (If-Match on its ETag). The folder SeaweedFS answers for a key ending with '/'
        (a zero-part ETag, "...-0": no upload ever made it) takes no condition, being no
        object: that one alone is written over without one."""
        folder = item.destination_key.endswith("/") and (head.etag or "").endswith("-0")
        try:
            return put(head.etag or ABSENT)
        except PreconditionFailed:
            if not folder:
                raise
        return put(None)

    def _ours(
        self, head: ObjectInfo, item: TransferItem, part_size: int, expected: str, upload_id: str
    ) -> bool:
        """Whether the destination object may be this upload, completed: its ETag is the
        one the recorded parts make, or (where rewriting the metadata gave a new ETag) it
        bears a SHA-256 written by migrate; and the upload is gone. The SHA-256 is checked
        against the source's bytes before anything is recorded."""
        meta = head.metadata or {}
        if (head.etag or "").lower() != expected and not (
            head.size == item.size
            and bool(meta.get(SHA256_METADATA))
            and meta.get(PART_SIZE_METADATA) == str(part_size)
        ):
            return False
        # An upload still open was never completed: the object is an earlier copy, or the
        # same bytes another writer put there (the upload is then completed over it, as
        # the conflict check allowed; taken as done, it would stay open under a done key).
        return not self._upload_open(item, upload_id)

    def _write_sha256(
        self, item: TransferItem, attrs: WriteAttrs, etag: str, sha256: str, version: str | None
    ) -> str:
        """Give the completed object its `migrate-sha256`, on the store's side, only if it
        is still the object whose ETag was just proven (and, in a versioned bucket, leave
        it one version: `version` is the completed one). Returns its ETag afterwards."""
        meta = dict(attrs.metadata)
        meta[SHA256_METADATA] = sha256
        new = replace(attrs, metadata=meta)
        bucket, key = item.destination_bucket, item.destination_key
        where = f"{bucket}/{key}"
        try:
            result = self.call(
                lambda: self.destination.replace_metadata(
                    bucket, key, new, if_match=etag, size=item.size, version_id=version
                )
            )
        except SourceChanged:
            # A retry after an answer that was lost finds the new ETag: done if the object
            # bears our SHA-256; otherwise someone else wrote this key meanwhile.
            head = self.call(
                lambda: self.destination.head(item.destination_bucket, item.destination_key)
            )
            if (head.metadata or {}).get(SHA256_METADATA) == sha256 and head.size == item.size:
                return head.etag or etag
            raise Permanent(
                f"{where}: the destination object was rewritten by another writer during the copy",
                hint="find who else writes to this bucket; the next run copies it again",
            ) from None
        stored = result.checksums.get("sha256")
        if stored and "-" not in stored and stored != sha256:
            raise ChecksumMismatch(
                f"{where}: the store's SHA-256 of the object differs from the bytes sent"
            )
        return result.etag or etag

    @staticmethod
    def _create_attrs(attrs: WriteAttrs, part_size: int) -> WriteAttrs:
        meta = dict(attrs.metadata)
        meta[PART_SIZE_METADATA] = str(part_size)
        return replace(attrs, metadata=meta)

    def send_part(
        self, item: TransferItem, upload_id: str, number: int, data: memoryview, md5: str | None
    ) -> tuple[PartResult, str]:
        """Send one part (retried as a whole), check the store's answer, record it.
        Without `md5` the part goes with its SHA-256 alone, and its MD5 is the one the
        store answers, if the store also answers the SHA-256 sent. Otherwise (an answer
        without them: SSE-KMS, SSE-C, a store that ignored the header) the MD5 is computed
        here, so the store's MD5, where it gives one, is still compared with the bytes'.
        Returns the store's answer and the part's MD5."""
        length = len(data)
        where = f"{item.destination_bucket}/{item.destination_key} part {number}"
        try:
            if self.stop is not None and self.stop.cause is not None:
                # A store found gone: the run stops, a part not begun is not sent. (Not on
                # an interrupt alone: a part read is sent, its object completed, as the
                # requests under way are.)
                raise Stopped(f"{where}: the run is stopping, not sent")
            sums = self._checksums_for(data, md5)
            try:
                result = self.call(partial(self._upload_part, item, upload_id, number, data, sums))
            except SITE_WIDE as exc:
                # The store gone past the retries: the run stops, so the parts in flight
                # stop retrying now, not once this object's other parts have waited
                # their retries out.
                if self.stop is not None:
                    self.stop.stop_for(exc)
                raise
            stored = result.checksums.get("md5", "").lower()  # set where the ETag is an MD5
            echoed = result.checksums.get("sha256", "").lower()
            if echoed and "sha256" in sums and echoed != sums["sha256"]:
                raise ChecksumMismatch(f"{where}: the store's SHA-256 differs from the bytes sent")
            if md5 is None:
                vouched = _MD5_HEX.match(stored) and echoed == sums.get("sha256")
                md5 = stored if vouched else hashlib.md5(data).hexdigest()
        finally:
            self.buffers.give(data)  # the store has it (or never will): the buffer is free
        if stored and stored != md5:
            raise ChecksumMismatch(
                f"{where}: the store's ETag differs from the MD5 of the bytes sent"
            )
        self.recorder.part_done(item, upload_id, result, md5)
        self.on_bytes(length)
        # The checksums sent go with the part to the completion, where a store that
        # declared SHA-256 at create wants each part's, whether or not it answered it.
        return PartResult(number, result.etag, length, {**sums, **result.checksums}), md5

    def _prove_completed(
        self,
        item: TransferItem,
        reader: _SourceReader,
        part_size: int,
        count: int,
        done: Mapping[int, str],
        expected: str,
        head: ObjectInfo,
    ) -> TransferOutcome | None:
        """The upload completed before a crash: re-read the source (sending nothing) to
        prove each part is the bytes recorded, and to compute the SHA-256; then write the
        SHA-256 if the crash came before it was. None when the object, found by its
        metadata, holds other bytes than the source's: it is not this upload."""
        sha256 = hashlib.sha256()
        whole_md5: hashlib._Hash | None = None
        other: SourceSum | None = None
        parts_read = _PartReads(self, reader, item.size, part_size, count)
        try:
            for _ in range(count):
                number, data = parts_read.next()
                try:
                    if number == 1:  # the first read has described the source
                        whole_md5, other = self._stated_sums(item, reader.info)
                    if hashlib.md5(data).hexdigest() != done[number]:
                        raise ChecksumMismatch(
                            f"{item.container}/{item.key} part {number}: source bytes "
                            "differ from the part the destination holds"
                        )
                    sha256.update(data)
                    if whole_md5 is not None:
                        whole_md5.update(data)
                    if other is not None:
                        other.update(data)
                finally:
                    self.buffers.give(data)
        finally:
            parts_read.close()
        proof = (
            self._source_proof(item, whole_md5.hexdigest(), reader.info) if whole_md5 else "none"
        )
        digest = sha256.hexdigest()
        if other is not None:
            proof = self._other_proof(item, other, digest, proof)
        written = (head.metadata or {}).get(SHA256_METADATA)
        etag = head.etag
        if (head.etag or "").lower() != expected and written != digest:
            return None
        # The tags the upload was created with, as the source has them (read again).
        tags = self.attrs_for(item, reader.info).tags or {}
        if self.sha256_metadata and written != digest and head.etag:
            # The object keeps the attributes it was created with, the SHA-256 added.
            kept = WriteAttrs.of(head, dict(head.metadata or {}), head.storage_class, tags)
            etag = self._write_sha256(item, kept, head.etag, digest, head.version_id)
        return TransferOutcome(item.size, digest, expected, etag, proof, count, 0, tags)

    def _upload_part(
        self,
        item: TransferItem,
        upload_id: str,
        number: int,
        data: memoryview,
        sums: Mapping[str, str],
    ) -> PartResult:
        return self.destination.upload_part(
            item.destination_bucket,
            item.destination_key,
            upload_id,
            number,
            data,
            len(data),
            sums,
        )

    def _list_parts(self, item: TransferItem, upload_id: str) -> list[PartResult]:
        return self.call(
            lambda: list(
                self.destination.list_parts(
                    item.destination_bucket, item.destination_key, upload_id
                )
            )
        )

    def _upload_open(self, item: TransferItem, upload_id: str) -> bool:
        """Whether the upload is still there with parts, never completed: its first part
        alone is asked for (a page; a local directory's reads that part only)."""

        def first() -> bool:
            parts = self.destination.list_parts(
                item.destination_bucket, item.destination_key, upload_id
            )
            try:
                return next(iter(parts), None) is not None
            finally:
                close = getattr(parts, "close", None)
                if close is not None:
                    close()

        try:
            return self.call(first)
        except NotFound:
            return False

    def _stated_sums(
        self, item: TransferItem, read: ObjectInfo | None
    ) -> tuple[hashlib._Hash | None, SourceSum | None]:
        """What the bytes read are to be hashed with for the source's own checksums: an MD5
        where it states one, and another it states (asked where it states no MD5)."""
        md5 = self._stated_md5(item, read)
        return hashlib.md5() if md5 else None, self._stated_sum(item, read, ask=md5 is None)

    def _stated_sum(
        self, item: TransferItem, read: ObjectInfo | None, *, ask: bool
    ) -> SourceSum | None:
        """A whole-object checksum beyond MD5 the source states for the version read: in its
        listing, in the read's answer (GCS's CRC32C), or, `ask`ed where the object has no
        MD5 to prove it by, in its HEAD (S3 states its CRC64NVME or SHA-256 in no listing
        and no ranged read). A HEAD that describes another version than the one read states
        nothing of it."""
        for stated in (item.source_checksums, read.checksums if read is not None else {}):
            found = SourceSum.stated_in(stated)
            if found is not None:
                return found
        may_state = set(ALGORITHMS) & set(self.source.capabilities.native_checksums)
        if not ask or not may_state or not item.source_etag:
            return None
        try:
            head = self.call(lambda: self.source.head(item.container, item.key))
        except SITE_WIDE:
            raise
        except (NotFound, CredentialsRejected, Permanent, Unsupported):
            # The bytes read stand (If-Match held them to the listed version): a HEAD the
            # store refuses, or of an object deleted since, only leaves them unproven.
            return None
        same = head.etag == item.source_etag and item.source_version in (None, head.version_id)
        return SourceSum.stated_in(head.checksums) if same else None

    @staticmethod
    def _other_proof(item: TransferItem, other: SourceSum, sha256: str, proof: str) -> str:
        """Every checksum of its own the source stated must hold; the MD5's proof is named
        first."""
        named = other.check(f"{item.container}/{item.key}", sha256)
        return named if proof == "none" else proof

    @staticmethod
    def _stated_md5(item: TransferItem, read: ObjectInfo | None) -> str | None:
        """The source's own MD5 of the object. `read`: the source as the read described it.
        A listing cannot tell an SSE-KMS or SSE-C object, whose ETag is no MD5, from a plain
        one; the read's answer can, and an MD5 taken from that ETag is then no MD5 at all.
        Where the read's answer gives an MD5, that is the one."""
        native = native_md5(item.source_checksums, item.source_etag)
        if native is None:
            return None
        if item.size == 0 and native == (item.source_etag or "").lower() and native != _EMPTY_MD5:
            # No bytes have one MD5: an ETag of no bytes that is another is none (SSE-KMS),
            # and an empty object is read without a request whose answer would say so.
            return None
        if read is not None and "md5" not in read.checksums and (read.etag or "").lower() == native:
            return None
        said = (read.checksums.get("md5") or "").lower() if read is not None else ""
        if _MD5_HEX.match(said):
            # The store's own word on this object, from the read's answer (If-Match held it
            # to the inventoried one): GCS gives an MD5 in x-goog-hash where its ETag is none.
            return said
        return native

    def _source_proof(self, item: TransferItem, md5: str, read: ObjectInfo | None) -> str:
        """`md5` when the bytes read have the source's own MD5 (`_stated_md5`), `none` when
        it has none."""
        native = self._stated_md5(item, read)
        if native is None:
            return "none"
        if native != md5:
            raise ChecksumMismatch(
                f"{item.container}/{item.key}: bytes read do not match the source's own MD5"
            )
        return "md5"

    def _check_destination_etag(
        self, item: TransferItem, result: WriteResult, expected: str
    ) -> None:
        """Where the store's ETag is MD5-shaped it must be ours; other ETags (Azure), and
        ETags the store says hash no bytes (SSE-KMS, SSE-C), carry no hash, and the
        server-verified checksum of each request (its Content-MD5, or a SHA-256 the store is
        confirmed to verify) is the proof."""
        if result.etag is None or not result.etag_hashes_bytes:
            return
        etag = result.etag.lower()
        shaped = _MD5_HEX.match(etag) or _MULTIPART_ETAG.match(etag)
        if shaped and etag != expected:
            raise ChecksumMismatch(
                f"{item.destination_bucket}/{item.destination_key}: the store's ETag {etag} "
                f"differs from the checksum of the bytes sent ({expected})"
            )


def _single_is(head: ObjectInfo, size: int, sha256: str, md5: str) -> bool:
    """Whether the object under the key is the one PUT wrote: migrate's SHA-256 of these
    bytes, and their MD5 where the store gives one (adapters set it only where the ETag or
    Content-MD5 is one: not an SSE-KMS ETag)."""
    if (head.metadata or {}).get(SHA256_METADATA) != sha256 or head.size != size:
        return False
    stored = head.checksums.get("md5", "").lower()
    return not stored or stored == md5
