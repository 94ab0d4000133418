"""Inventory: stream a site's listing into the state, page by page, in bounded memory.

An interrupted inventory resumes from the last page it stored; a later inventory of the
same site records what was added, changed or deleted since the one before.
"""

from __future__ import annotations

import queue
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field, replace
from enum import IntFlag
from pathlib import Path

from migrate.errors import ConfigError, ListingOutOfOrder, MigrateError
from migrate.keys import may_be_renamed
from migrate.ledger import InventoryRow, Ledger, dumps
from migrate.planlock import ListingClaims
from migrate.sites import Site, SitesConfig
from migrate.transfer import (
    PART_SIZE_METADATA,
    SHA256_METADATA,
    SOURCE_MTIME_METADATA,
    carried_metadata,
)
from providers.base import HEADER_TOKEN, ObjectInfo, StoreAdapter, carried_headers

PAGE = 1000
# A container whose first listing finds more top-level prefixes than this is one dataset:
# an estate kept a prefix per patient or per case would otherwise give a dataset, a
# mapping and a report section each, by the hundred thousand (~10 KiB of memory each).
WHOLE_CONTAINER_AFTER = 1000
_LISTER_WAIT = 10.0  # seconds for a listing request under way to end, once the caller stops
MAX_KEY_BYTES = 1024
MAX_METADATA_BYTES = 2048
# What a copy adds to an object's metadata, at most: the SHA-256 (64 hex digits), the
# source's modification time (an ISO time, under 40) and the part size (at most 13 digits);
# the source's own migrate-* names are not carried.
OWN_METADATA_BYTES = (
    len(SHA256_METADATA) + 64 + len(SOURCE_MTIME_METADATA) + 40 + len(PART_SIZE_METADATA) + 13
)
MAX_OBJECT_BYTES = 5 * 1024**4

MiB, GiB = 1024**2, 1024**3
SIZE_CLASSES: tuple[tuple[str, int], ...] = (
    ("<1 MiB", MiB),
    ("1-100 MiB", 100 * MiB),
    ("100 MiB-5 GiB", 5 * GiB),
    (">=5 GiB", 2**62),
)


class Flag(IntFlag):
    """What will not move as it is; each object carries the bits that apply."""

    KEY_TOO_LONG = 1
    METADATA_TOO_LARGE = 2
    METADATA_BAD_NAME = 4
    ARCHIVED = 8
    TOO_LARGE = 16
    NO_CHECKSUM = 32
    KEY_NOT_PORTABLE = 64
    DIRECTORY_MARKER = 128
    HEADER_NOT_ASCII = 256
    KEY_NOT_UTF8 = 512
    TAGGED = 1024
    NOT_BLOCK_BLOB = 2048
    FOLDER_METADATA = 4096


FLAG_LABELS: dict[Flag, str] = {
    Flag.KEY_TOO_LONG: f"key over {MAX_KEY_BYTES} bytes",
    Flag.METADATA_TOO_LARGE: "metadata over 2 KB",
    Flag.METADATA_BAD_NAME: "metadata name or value S3 will not take",
    Flag.ARCHIVED: "archive tier: rehydrate first",
    Flag.TOO_LARGE: "object over 5 TiB",
    Flag.NO_CHECKSUM: "no native checksum (computed in flight)",
    Flag.KEY_NOT_PORTABLE: "key with an empty, '.' or '..' segment, or a backslash",
    Flag.DIRECTORY_MARKER: "directory of a hierarchical namespace (an empty object)",
    Flag.HEADER_NOT_ASCII: "header value beyond ASCII (may not be kept exactly)",
    Flag.KEY_NOT_UTF8: "name not valid UTF-8 (rename at the source)",
    Flag.TAGGED: "index tags",
    Flag.NOT_BLOCK_BLOB: "append or page blob (copied as a plain object)",
    Flag.FOLDER_METADATA: "folder-like name ('/' last) with metadata a file store drops",
}


def dataset_of(container: str, key: str) -> str:
    """A dataset is a container and its top-level prefix."""
    head, sep, _ = key.partition("/")
    return f"{container}/{head}/" if sep else f"{container}/"


def flags_of(obj: ObjectInfo) -> Flag:
    flags = Flag(0)
    try:
        key_bytes = len(obj.key.encode())
    except UnicodeEncodeError:
        # A local file name that is not UTF-8 (read with surrogateescape): S3 and Azure
        # keys are UTF-8, so it cannot be copied under this name.
        flags |= Flag.KEY_NOT_UTF8
        key_bytes = len(obj.key.encode("utf-8", "surrogateescape"))
    if key_bytes > MAX_KEY_BYTES:
        flags |= Flag.KEY_TOO_LONG
    if obj.metadata:
        size = sum(
            len(k.encode()) + len(v.encode()) for k, v in carried_metadata(obj.metadata).items()
        )
        if size + OWN_METADATA_BYTES > MAX_METADATA_BYTES:
            flags |= Flag.METADATA_TOO_LARGE
        if any(not HEADER_TOKEN.match(k) or not v.isascii() for k, v in obj.metadata.items()):
            flags |= Flag.METADATA_BAD_NAME
    if obj.archived:
        flags |= Flag.ARCHIVED
    if obj.size > MAX_OBJECT_BYTES:
        flags |= Flag.TOO_LARGE
    if not obj.checksums:
        flags |= Flag.NO_CHECKSUM
    if may_be_renamed(obj.key, obj.size):
        flags |= Flag.KEY_NOT_PORTABLE
    # An account with a hierarchical namespace (ADLS Gen2) lists each directory as an empty
    # blob bearing hdi_isfolder=true: it holds no data, and S3 has no directories.
    if obj.size == 0 and any(
        k.lower() == "hdi_isfolder" and (v or "").lower() == "true"
        for k, v in (obj.metadata or {}).items()
    ):
        flags |= Flag.DIRECTORY_MARKER
    # Only a listing that carries metadata carries these headers (Azure's; S3's neither):
    # nothing to look at on the other objects, which are most of a large inventory.
    if obj.metadata is not None and not all(v.isascii() for v in carried_headers(obj).values()):
        flags |= Flag.HEADER_NOT_ASCII
    # An empty object named like a folder: a store keeping objects as files (SeaweedFS)
    # makes it a folder, and keeps none of its metadata or headers.
    if (
        obj.size == 0
        and obj.key.endswith("/")
        and (carried_metadata(obj.metadata or {}) or any(carried_headers(obj).values()))
    ):
        flags |= Flag.FOLDER_METADATA
    if obj.tags:
        flags |= Flag.TAGGED
    if obj.blob_type not in (None, "BlockBlob"):
        flags |= Flag.NOT_BLOCK_BLOB
    return flags


def escaped_key(key: str) -> str:
    """How the state stores (and the plan shows) a key that is not UTF-8, which SQLite's
    TEXT cannot hold: each byte that is not UTF-8 as `\\xNN`, and each backslash doubled so
    that `source_key` gives the key back exactly. Only such keys (flagged KEY_NOT_UTF8) are
    stored so: every other key is stored as it is."""
    raw = key.encode("utf-8", "surrogateescape").replace(b"\\", b"\\\\")
    return raw.decode("utf-8", "backslashreplace")


_ESCAPE = re.compile(rb"\\(\\|x[0-9a-f]{2})")


def source_key(key: str, flags: int) -> str:
    """The key as the source names it, from the state's `key` and `flags` columns."""
    if not flags & Flag.KEY_NOT_UTF8:
        return key
    raw = _ESCAPE.sub(
        lambda m: b"\\" if m[1] == b"\\" else bytes([int(m[1][1:], 16)]), key.encode()
    )
    return raw.decode("utf-8", "surrogateescape")


_NOT_UTF8 = int(Flag.KEY_NOT_UTF8)  # an int: an IntFlag's `&` costs more, once per object


def to_row(obj: ObjectInfo, dataset: str | None = None) -> InventoryRow:
    """`dataset`: the object's, where its container is one (see WHOLE_CONTAINER_AFTER)."""
    flags = int(flags_of(obj))
    # The dataset is the escaped key's: escaping keeps every '/', so it is the escaped form
    # of the key's own dataset.
    key = escaped_key(obj.key) if flags & _NOT_UTF8 else obj.key
    return InventoryRow(  # positional: one per listed object (see InventoryRow)
        obj.container,
        key,
        dataset or dataset_of(obj.container, key),
        obj.size,
        obj.etag,
        obj.last_modified.isoformat() if obj.last_modified else None,
        dumps(dict(obj.checksums)) if obj.checksums else None,
        obj.storage_class,
        obj.archived,
        obj.version_id,
        obj.content_type,
        dumps(dict(obj.metadata)) if obj.metadata is not None else None,
        flags,
        # A listing with metadata (Azure's) carries the properties too; S3's carries neither.
        dumps(carried_headers(obj)) if obj.metadata is not None else None,
    )


@dataclass(frozen=True)
class DatasetSummary:
    dataset: str
    container: str
    objects: int
    bytes: int
    size_classes: dict[str, int]
    tiers: dict[str, int]
    # Flag name (KEY_TOO_LONG, ARCHIVED, ...: stable, for scripts; FLAG_LABELS says each in
    # words) -> objects, only those with objects
    issues: dict[str, int]
    # The whole container, its objects under more than WHOLE_CONTAINER_AFTER top-level
    # prefixes: one dataset, not one a prefix.
    whole_container: bool = False


@dataclass(frozen=True)
class InventorySummary:
    site: str
    run_id: int
    resumed: bool
    first: bool
    added: int
    changed: int
    deleted: int
    state: Path
    datasets: list[DatasetSummary] = field(default_factory=list)
    # Objects of containers the sites file no longer lists, left out (the first 20 named).
    unlisted: int = 0
    unlisted_containers: list[str] = field(default_factory=list)
    prefix: str = ""  # what this run listed under (--prefix); "" the whole site
    listed: int = 0  # objects this command listed (a resumed run's earlier pages not counted)

    @property
    def objects(self) -> int:
        return sum(d.objects for d in self.datasets)

    @property
    def bytes(self) -> int:
        return sum(d.bytes for d in self.datasets)


# Called after each stored page: (container, objects listed so far, bytes so far).
Progress = Callable[[str, int, int], None]


def run_inventory(
    config: SitesConfig,
    site_name: str,
    adapter: StoreAdapter,
    *,
    prefix: str = "",
    progress: Progress | None = None,
    resume: bool = True,
) -> InventorySummary:
    """List the site into the state. An interrupted run is resumed where it stopped unless
    `resume` is False (a delta's or cutover's re-list: it must see every change up to now)."""
    site = config.site(site_name)
    if not site.buckets:
        raise ConfigError(
            f"{config.path}: sites.{site.name}: no buckets/containers to inventory",
            hint='add buckets = ["name", ...]',
        )
    claims = ListingClaims(config.state_dir)
    with Ledger(config.state_dir) as ledger:
        try:
            run_id, resumed = ledger.open_inventory_run(
                site.name, prefix, resume=resume, claim=claims.take
            )
            return _list_run(ledger, site, adapter, run_id, resumed, prefix, progress)
        finally:
            claims.release()
            with suppress(OSError, MigrateError, sqlite3.Error):  # tidying, never its error
                claims.sweep(ledger.inventory_run_resumable)


def _list_run(
    ledger: Ledger,
    site: Site,
    adapter: StoreAdapter,
    run_id: int,
    resumed: bool,
    prefix: str,
    progress: Progress | None,
) -> InventorySummary:
    """List the site's containers into the run (what it listed before skipped)."""
    total = 0
    for container in site.buckets:
        state = ledger.listing_state(run_id, container)
        if state.done:
            continue
        adapter.check(container)
        listed, listed_bytes = 0, 0
        grouping = _Grouping(ledger, site.name, run_id, container, prefix)
        listing = adapter.list_objects(container, prefix, start_after=state.marker)
        try:
            for objects in _pages_ahead(listing, PAGE):
                page = [to_row(obj, grouping.whole) for obj in objects]
                listed += len(page)
                listed_bytes += sum(row.size for row in page)
                # The marker is the listed key itself (not the stored one, maybe
                # escaped): the listing resumes after it.
                ledger.record_listing_page(
                    site.name, run_id, container, page, done=False, marker=objects[-1].key
                )
                grouping.saw(page)
                if progress:
                    progress(container, listed, listed_bytes)
        except ListingOutOfOrder:
            # Keys below the saved marker may be unlisted yet: resuming after it would
            # take them for deleted.
            ledger.restart_listing(run_id, container)
            raise
        ledger.record_listing_page(site.name, run_id, container, [], done=True)
        total += listed
        grouping.listed()
        if progress:
            progress(container, listed, listed_bytes)
    changes = ledger.finish_inventory_run(site.name, run_id, site.buckets, prefix)
    summary = summarize(
        ledger,
        site.name,
        run_id,
        resumed,
        changes.first,
        changes.added,
        changes.changed,
        changes.deleted,
    )
    return replace(
        summary,
        prefix=prefix,
        listed=total,
        unlisted=changes.unlisted,
        unlisted_containers=list(changes.unlisted_containers),
    )


class _Grouping:
    """How a container's objects are grouped into datasets (see WHOLE_CONTAINER_AFTER):
    decided once, at the end of its first listing that finds objects, and kept, so that a
    later listing (a delta's) puts a new object in the dataset the plan maps. A listing
    under a --prefix sees part of the container: it keeps one dataset a prefix (a plan
    made from it maps prefixes; one whole container would take in what it left out)."""

    def __init__(self, ledger: Ledger, site: str, run_id: int, container: str, prefix: str) -> None:
        self._ledger, self._site, self._run, self._container = ledger, site, run_id, container
        self._prefix = prefix
        decided = ledger.whole_container(site, container)
        self.whole: str | None = f"{container}/" if decided else None
        self._undecided = decided is None
        self._counting = decided is None and not prefix
        # A resumed first listing counts what it stored before.
        self._seen = ledger.datasets_listed(site, container) if self._counting else 0
        self._last: str | None = None

    def saw(self, page: Sequence[InventoryRow]) -> None:
        """Count the page's datasets (a listing is in key order, so a prefix's objects come
        together); past the limit, make the container one dataset."""
        if not self._counting:
            return
        for row in page:
            if row.dataset != self._last:
                self._last = row.dataset
                self._seen += 1
        if self._seen > WHOLE_CONTAINER_AFTER:
            # Counted again in SQL: a store listing out of key order would count a
            # prefix twice.
            self._seen = self._ledger.datasets_listed(self._site, self._container)
            if self._seen > WHOLE_CONTAINER_AFTER:
                self._decide(whole=True)
                self.whole = f"{self._container}/"

    def listed(self) -> None:
        """The container's listing ended: decided now, if it found objects. Counted again
        in SQL: an interruption between a last page and its count is no split decision."""
        if not self._undecided:
            return
        found = self._ledger.datasets_listed(self._site, self._container)
        if found:  # a container empty so far is decided when objects come
            whole = not self._prefix and found > WHOLE_CONTAINER_AFTER
            self._decide(whole=whole)
            if whole:
                self.whole = f"{self._container}/"

    def _decide(self, *, whole: bool) -> None:
        self._ledger.decide_datasets(self._site, self._run, self._container, whole=whole)
        self._undecided = self._counting = False


def _pages_ahead(objects: Iterator[ObjectInfo], size: int) -> Iterator[list[ObjectInfo]]:
    """The listing in pages of `size`, listed by a thread of its own one page ahead: the
    store's answer and its parsing overlap the ledger's write of the page before (SQLite
    releases the GIL). At most three pages are held: written, waiting, being listed.
    When the caller stops, so does the listing, at its next object; the caller waits for a
    listing request under way (up to `_LISTER_WAIT` seconds; not after Ctrl-C), so that no
    request is sent once it has closed the adapter."""
    ahead: queue.Queue[list[ObjectInfo] | BaseException | None] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def hand(item: list[ObjectInfo] | BaseException | None) -> bool:
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False  # the writer has stopped: so does the listing

    def lister() -> None:
        try:
            page: list[ObjectInfo] = []
            for obj in objects:
                if stop.is_set():
                    return
                page.append(obj)
                if len(page) >= size:
                    if not hand(page):
                        return
                    page = []
            if page and not hand(page):
                return
            hand(None)
        except BaseException as exc:  # raised where the pages are read
            hand(exc)
        finally:
            close = getattr(objects, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=lister, name="migrate-list", daemon=True)
    thread.start()
    interrupted = False
    try:
        while (page := ahead.get()) is not None:
            if isinstance(page, BaseException):
                raise page
            yield page
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        stop.set()
        if not interrupted:
            thread.join(timeout=_LISTER_WAIT)


def summarize(
    ledger: Ledger,
    site: str,
    run_id: int,
    resumed: bool,
    first: bool,
    added: int,
    changed: int,
    deleted: int,
) -> InventorySummary:
    whole = ledger.whole_containers(site)
    datasets = [
        DatasetSummary(
            dataset=c.dataset,
            container=c.container,
            objects=c.objects,
            bytes=c.bytes,
            size_classes=dict(c.size_classes),
            tiers=dict(c.tiers),
            issues={str(Flag(bit).name): n for bit, n in c.flags if n},
            whole_container=c.container in whole,
        )
        for c in ledger.dataset_counts(site, SIZE_CLASSES, [int(f) for f in FLAG_LABELS])
    ]
    return InventorySummary(
        site=site,
        run_id=run_id,
        resumed=resumed,
        first=first,
        added=added,
        changed=changed,
        deleted=deleted,
        state=ledger.path,
        datasets=datasets,
    )
