"""Copy one object from a source store to a destination store, streaming, with proof.

Bytes flow part by part: each part (at most `part_size` bytes) is read from the source
with a condition on the ETag seen at listing, hashed, and sent with its Content-MD5 (and
SHA-256 where the destination verifies it), so the destination refuses corrupted bytes.
Memory per object is one part; a retry re-sends the same part buffer.

Proofs recorded with each finished object:
- destination: every request carried a checksum the server verified, and the ETag it
  returned equals the one computed locally (MD5, or MD5 of part MD5s for multipart) where
  the store's ETag is MD5-shaped;
- source: the MD5 computed on the bytes read equals the source's native MD5 (Azure
  Content-MD5, single-part S3 ETag) when it has one. Objects without one are listed as
  such in the report: their proof is the bytes read, not the source's own hash.

Resume: parts already recorded are not sent again. Parts the store holds that the ledger
missed (a crash between the store's answer and the ledger write) are re-read from the
source and their MD5 compared with the store's part ETag instead of being re-sent.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol, TypeVar

from migrate.errors import ChecksumMismatch, NotFound, Permanent, SourceChanged
from providers.base import Capabilities, PartResult, StoreAdapter, WriteAttrs

T = TypeVar("T")

MiB = 1024 * 1024
# Metadata migrate writes on each copy; verify and dry-run read them back.
SHA256_METADATA = "migrate-sha256"
SOURCE_MTIME_METADATA = "migrate-source-last-modified"
PART_SIZE_METADATA = "migrate-part-size"
DEFAULT_PART_SIZE = 16 * MiB
_MD5_HEX = re.compile(r"^[0-9a-f]{32}$")
_MULTIPART_ETAG = re.compile(r"^[0-9a-f]{32}-\d+$")


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
    # Source tier or class -> destination storage class, from the plan's mapping.
    storage_classes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TransferOutcome:
    size: int
    sha256: str
    md5: str  # whole-object MD5 for single PUTs, MD5-of-part-MD5s "-N" for multipart
    destination_etag: str | None
    source_proof: str  # "md5" when the source's native MD5 matched, else "none"
    parts: int
    sent_bytes: int  # bytes actually sent now (resumed parts are not sent again)


class Recorder(Protocol):
    """Where the copy reports durable progress (the ledger, through the executor)."""

    def upload_started(self, item: TransferItem, upload_id: str, part_size: int) -> None: ...

    def part_done(self, item: TransferItem, upload_id: str, part: PartResult, md5: str) -> None: ...


def choose_part_size(size: int, caps: Capabilities, preferred: int = DEFAULT_PART_SIZE) -> int:
    """The preferred size, raised so the object fits in the store's maximum part count."""
    needed = -(-size // caps.max_parts)  # ceiling division
    part = max(preferred, needed, caps.min_part_size)
    part = -(-part // MiB) * MiB  # whole MiB: readable in the ledger and in reports
    if part > caps.max_part_size:
        raise Permanent(
            f"object of {size} bytes needs parts over the destination's maximum of "
            f"{caps.max_part_size} bytes"
        )
    return part


def _b64(hexdigest: str) -> str:
    return base64.b64encode(bytes.fromhex(hexdigest)).decode()


def _composite(part_md5s: list[str]) -> str:
    """The S3 multipart ETag: MD5 of the concatenated part MD5s, then -N."""
    joined = b"".join(bytes.fromhex(m) for m in part_md5s)
    return f"{hashlib.md5(joined).hexdigest()}-{len(part_md5s)}"


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


class ObjectCopy:
    """Copies one item; stateless between items, so one instance serves many threads."""

    def __init__(
        self,
        source: StoreAdapter,
        destination: StoreAdapter,
        recorder: Recorder,
        *,
        part_size: int = DEFAULT_PART_SIZE,
        call: Call = _direct,
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        self.source = source
        self.destination = destination
        self.recorder = recorder
        self.part_size = part_size
        self.call = call
        self.on_bytes = on_bytes or (lambda n: None)

    def attrs_for(self, item: TransferItem) -> WriteAttrs:
        if item.attrs is not None:
            return item.attrs
        info = self.call(lambda: self.source.head(item.container, item.key))
        if item.source_etag and info.etag and info.etag != item.source_etag:
            raise SourceChanged(f"{item.container}/{item.key} changed since the inventory")
        metadata = dict(info.metadata or {})
        if info.last_modified is not None:
            metadata[SOURCE_MTIME_METADATA] = info.last_modified.isoformat()
        return WriteAttrs(
            content_type=info.content_type,
            content_encoding=info.content_encoding,
            cache_control=info.cache_control,
            metadata=metadata,
            # Mapped by the plan (Azure's Hot/Cool are not S3 classes); unmapped: none sent.
            storage_class=item.storage_classes.get(info.storage_class or ""),
        )

    def _read(self, item: TransferItem, start: int, length: int) -> bytes:
        """Read [start, start+length) of the source version seen at listing."""

        def read() -> bytes:
            stream = self.source.open_range(
                item.container,
                item.key,
                start,
                start + length,
                if_match=item.source_etag,
                version_id=item.source_version,
            )
            try:
                chunks = []
                got = 0
                while got < length:
                    chunk = stream.read(min(MiB, length - got))
                    if not chunk:
                        break
                    chunks.append(chunk)
                    got += len(chunk)
            finally:
                stream.close()
            data = b"".join(chunks)
            if len(data) != length:
                raise SourceChanged(
                    f"{item.container}/{item.key}: read {len(data)} bytes at {start}, "
                    f"expected {length} (object shorter than listed)"
                )
            return data

        return self.call(read)

    def copy(self, item: TransferItem) -> TransferOutcome:
        caps = self.destination.capabilities
        part_size = item.part_size or choose_part_size(item.size, caps, self.part_size)
        attrs = self.attrs_for(item)
        if item.upload_id is None and item.size <= min(part_size, caps.max_single_put):
            return self._single(item, attrs)
        return self._multipart(item, attrs, part_size)

    def _checksums_for(self, data: bytes, md5: str) -> dict[str, str]:
        sums = {"md5": md5}
        if "sha256" in self.destination.capabilities.verifies_checksums:
            sums["sha256"] = hashlib.sha256(data).hexdigest()
        return sums

    def _single(self, item: TransferItem, attrs: WriteAttrs) -> TransferOutcome:
        data = self._read(item, 0, item.size)
        md5 = hashlib.md5(data).hexdigest()
        sha256 = hashlib.sha256(data).hexdigest()
        proof = self._source_proof(item, md5)
        meta = dict(attrs.metadata)
        meta[SHA256_METADATA] = sha256
        write_attrs = WriteAttrs(
            content_type=attrs.content_type,
            content_encoding=attrs.content_encoding,
            cache_control=attrs.cache_control,
            metadata=meta,
            storage_class=attrs.storage_class,
        )
        sums = {"md5": md5}
        if "sha256" in self.destination.capabilities.verifies_checksums:
            sums["sha256"] = sha256
        result = self.call(
            lambda: self.destination.put_object(
                item.destination_bucket,
                item.destination_key,
                io.BytesIO(data),
                len(data),
                write_attrs,
                sums,
            )
        )
        self._check_destination_etag(item, result.etag, md5)
        self.on_bytes(len(data))
        return TransferOutcome(item.size, sha256, md5, result.etag, proof, 1, len(data))

    def _multipart(self, item: TransferItem, attrs: WriteAttrs, part_size: int) -> TransferOutcome:
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
            if head is not None and (head.etag or "").lower() == expected:
                return self._prove_completed(item, part_size, count, done, expected, head.etag)
        if upload_id is not None:
            # Parts the store holds that the ledger missed: prove them, do not resend.
            try:
                held = {p.part_number: p for p in self._list_parts(item, upload_id)}
            except NotFound:  # the upload is gone (aborted, expired, or completed)
                held, upload_id, done = {}, None, {}
            for number, part in held.items():
                if number not in done and part.etag and _MD5_HEX.match(part.etag.lower()):
                    done[number] = ""  # proven below, when its bytes are read again
        meta = dict(attrs.metadata)
        meta[PART_SIZE_METADATA] = str(part_size)
        create_attrs = WriteAttrs(
            content_type=attrs.content_type,
            content_encoding=attrs.content_encoding,
            cache_control=attrs.cache_control,
            metadata=meta,
            storage_class=attrs.storage_class,
        )
        if upload_id is None:
            created = self.call(
                lambda: self.destination.create_multipart(
                    item.destination_bucket, item.destination_key, create_attrs
                )
            )
            upload_id = created
            self.recorder.upload_started(item, upload_id, part_size)
        held_etags: dict[int, str] = {}
        if any(v == "" for v in done.values()):
            held_etags = {
                p.part_number: (p.etag or "").lower() for p in self._list_parts(item, upload_id)
            }
        sha256 = hashlib.sha256()
        whole_md5 = hashlib.md5() if native_md5(item.source_checksums, item.source_etag) else None
        parts: list[PartResult] = []
        sent = 0
        md5_of: dict[int, str] = {}
        for number in range(1, count + 1):
            start = (number - 1) * part_size
            length = min(part_size, item.size - start)
            data = self._read(item, start, length)
            md5 = hashlib.md5(data).hexdigest()
            md5_of[number] = md5
            sha256.update(data)
            if whole_md5 is not None:
                whole_md5.update(data)
            recorded = done.get(number)
            if recorded == md5 or (recorded == "" and held_etags.get(number) == md5):
                if recorded == "":
                    part = PartResult(number, md5, length)
                    self.recorder.part_done(item, upload_id, part, md5)
                # A store that declared a checksum at create wants each part's at complete.
                sums = {"md5": md5, "sha256": hashlib.sha256(data).hexdigest()}
                parts.append(PartResult(number, md5, length, sums))
                continue
            sums = self._checksums_for(data, md5)
            # A fresh stream per attempt: a retry re-sends the same bytes from the start.
            result = self.call(
                partial(
                    self._upload_part,
                    item,
                    upload_id,
                    number,
                    data,
                    sums,
                )
            )
            if result.etag and _MD5_HEX.match(result.etag.lower()) and result.etag.lower() != md5:
                raise ChecksumMismatch(
                    f"{item.destination_bucket}/{item.destination_key} part {number}: "
                    "the store's ETag differs from the MD5 of the bytes sent"
                )
            self.recorder.part_done(item, upload_id, result, md5)
            parts.append(PartResult(number, result.etag, length, result.checksums))
            sent += length
            self.on_bytes(length)
        expected = _composite([md5_of[p.part_number] for p in parts])
        uid = upload_id
        completed = self.call(
            lambda: self.destination.complete_multipart(
                item.destination_bucket, item.destination_key, uid, parts, create_attrs
            )
        )
        self._check_destination_etag(item, completed.etag, expected)
        proof = "none"
        if whole_md5 is not None:
            proof = self._source_proof(item, whole_md5.hexdigest())
        return TransferOutcome(
            item.size, sha256.hexdigest(), expected, completed.etag, proof, len(parts), sent
        )

    def _prove_completed(
        self,
        item: TransferItem,
        part_size: int,
        count: int,
        done: Mapping[int, str],
        expected: str,
        etag: str | None,
    ) -> TransferOutcome:
        """The upload completed before a crash: re-read the source (sending nothing) to
        prove each part is the bytes recorded, and to compute the SHA-256."""
        sha256 = hashlib.sha256()
        whole_md5 = hashlib.md5() if native_md5(item.source_checksums, item.source_etag) else None
        for number in range(1, count + 1):
            start = (number - 1) * part_size
            data = self._read(item, start, min(part_size, item.size - start))
            if hashlib.md5(data).hexdigest() != done[number]:
                raise ChecksumMismatch(
                    f"{item.container}/{item.key} part {number}: source bytes differ from "
                    "the part the destination holds"
                )
            sha256.update(data)
            if whole_md5 is not None:
                whole_md5.update(data)
        proof = self._source_proof(item, whole_md5.hexdigest()) if whole_md5 else "none"
        return TransferOutcome(item.size, sha256.hexdigest(), expected, etag, proof, count, 0)

    def _upload_part(
        self,
        item: TransferItem,
        upload_id: str,
        number: int,
        data: bytes,
        sums: Mapping[str, str],
    ) -> PartResult:
        return self.destination.upload_part(
            item.destination_bucket,
            item.destination_key,
            upload_id,
            number,
            io.BytesIO(data),
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

    def _source_proof(self, item: TransferItem, md5: str) -> str:
        native = native_md5(item.source_checksums, item.source_etag)
        if native is None:
            return "none"
        if native != md5:
            raise ChecksumMismatch(
                f"{item.container}/{item.key}: bytes read do not match the source's own MD5"
            )
        return "md5"

    def _check_destination_etag(self, item: TransferItem, etag: str | None, expected: str) -> None:
        """Where the store's ETag is MD5-shaped it must be ours; other ETags (Azure, SSE-KMS)
        carry no hash, and the server-verified Content-MD5 of each request is the proof."""
        if etag is None:
            return
        etag = etag.lower()
        shaped = _MD5_HEX.match(etag) or _MULTIPART_ETAG.match(etag)
        if shaped and etag != expected:
            raise ChecksumMismatch(
                f"{item.destination_bucket}/{item.destination_key}: the store's ETag {etag} "
                f"differs from the checksum of the bytes sent ({expected})"
            )
