"""Dry run of one phase: what it would copy, what is already at the destination and
identical, what conflicts, per dataset. It reads (the ledger, a check of each source
container) and HEADs destination objects, and writes nothing anywhere: the phase's object set
comes from `Ledger.phase_candidates`, a plain SELECT (the fixed set when the phase was
resolved, else what resolving it would take now).

An object at the destination is *identical* when it has the same size and one checksum
proves the bytes: the sha256 migrate stores with each copy (`migrate-sha256` metadata) or an
x-amz-checksum-sha256 equal to the source's sha256 or to the ledger's record of an earlier
copy, or an MD5 (stored checksum or single-part ETag) equal to the source's native MD5.
An object present with another content is a *conflict*, unless it is this plan's own earlier
copy of an object changed since, or this plan's copy whose record was lost (a kill -9, a
failure after the write: migrate's metadata, the size and, where the source has one, its
SHA-256); then the phase *would copy* it again. An object present with the same size but
no checksum to compare is a conflict too: it cannot be shown equal. The run leaves
conflicts as they are (migrate/conflicts.py decides with this module's `classify`, so the
dry run and the run agree).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice

from migrate.errors import (
    NotFound,
    Permanent,
    SiteRootMissing,
    TransferError,
    Unsupported,
    as_store_failure,
)
from migrate.keys import portable_key
from migrate.ledger import Ledger, PhaseCandidate, refuse_decommission
from migrate.plan import CERTIFICATION_CONDITION, PhaseKind, Plan
from migrate.transfer import SHA256_METADATA, SOURCE_MTIME_METADATA
from providers.base import ObjectInfo, StoreAdapter

__all__ = ["DatasetDryRun", "DryRunReport", "dry_run"]

EXAMPLES = 5
_BATCH = 256
_MD5 = re.compile(r"^[0-9a-f]{32}$")


@dataclass
class DatasetDryRun:
    dataset: str
    destination_bucket: str
    objects: int = 0
    bytes: int = 0
    would_copy: int = 0
    would_copy_bytes: int = 0
    identical: int = 0  # skipped: already at the destination with the same bytes
    identical_bytes: int = 0
    # Of `identical`: objects this plan did not write (another writer's, another plan's
    # copy): the run copies over them, giving them the source's content type and metadata.
    identical_not_ours: int = 0
    conflicts: int = 0
    conflict_bytes: int = 0
    done_in_ledger: int = 0  # of `objects`: marked done by an earlier run of this phase
    # Of those, not at the destination as recorded (not in the three counts above): the run
    # skips done objects; `migrate verify` finds them and marks them to copy again.
    done_not_as_recorded: int = 0
    # Of `objects`: changed at the source during their copy, removed since, or gone from
    # the source; the run copies none of them (not in the counts above).
    not_copied: int = 0
    not_copied_bytes: int = 0
    conflict_examples: list[str] = field(default_factory=list)  # "bucket/key: why"


@dataclass
class DryRunReport:
    plan: str
    phase: str
    source: str  # the source site
    resolved: bool  # True: the phase's set was already fixed by an earlier run
    datasets: list[DatasetDryRun]
    missing_buckets: list[str]  # destination buckets that do not exist yet
    # With --delete-removed (delta, cutover): the copies whose source object the latest
    # inventory no longer has, which the run would check and remove (its re-list decides)
    would_remove: int | None = None
    # Why the run would refuse to remove them (more than --max-remove allows); None: it would not.
    removal_refused: str | None = None
    # Why the run would refuse to start (the phase's gate, without --force); None: it would not.
    gate_refused: str | None = None
    # When the source's latest whole inventory, which this dry run reads, began listing.
    inventory_listed_at: str | None = None
    # Listings under --prefix since then, each "PREFIX at WHEN": those parts are as they
    # found them.
    inventory_prefixes_since: list[str] = field(default_factory=list)
    # A delta's or cutover's run lists the source again first, and takes what changed
    # since that inventory too: this dry run cannot see it.
    run_lists_again: bool = False
    # The source's datasets in that inventory that the plan neither maps nor leaves out.
    outside_plan: list[str] = field(default_factory=list)
    # The plan's policy needs the destination's buckets made as a certification requires
    # (CERTIFICATION_CONDITION): the run creates none, and refuses while one is missing.
    buckets_made_as_required: bool = False

    @property
    def objects(self) -> int:
        return sum(d.objects for d in self.datasets)

    @property
    def bytes(self) -> int:
        return sum(d.bytes for d in self.datasets)

    @property
    def would_copy(self) -> int:
        return sum(d.would_copy for d in self.datasets)

    @property
    def identical(self) -> int:
        return sum(d.identical for d in self.datasets)

    @property
    def conflicts(self) -> int:
        return sum(d.conflicts for d in self.datasets)

    @property
    def not_copied(self) -> int:
        return sum(d.not_copied for d in self.datasets)


def _source_sums(row: PhaseCandidate) -> dict[str, str]:
    try:
        sums = json.loads(row.checksums) if row.checksums else {}
    except ValueError:
        return {}
    return {str(k): str(v).lower() for k, v in sums.items()} if isinstance(sums, dict) else {}


def _listed_md5(sums: dict[str, str]) -> str | None:
    """The MD5 the source's listing gave as the object's. Not a look-alike ETag: the
    adapter puts an ETag there only where its store says it is the MD5 (GCS: never, as a
    composed object's ETag looks like one)."""
    md5 = sums.get("md5", "")
    return md5 if _MD5.match(md5) else None


def _lost_record(row: PhaseCandidate, info: ObjectInfo) -> bool:
    """Whether the object is this plan's copy of `row` whose record was lost: migrate's
    metadata, the size, and the source's SHA-256 where it has one. A copy of an earlier
    version (delta, verify) counts too."""
    meta = {k.lower(): v for k, v in (info.metadata or {}).items()}
    if info.size != row.size or SOURCE_MTIME_METADATA not in meta:
        return False
    if not portable_key(row.destination_key):
        # A store keeping objects as files answers a HEAD of a//b with a/b's object: what
        # is there may be another transfer's copy (a//b written over it destroyed it).
        return False
    sums = _source_sums(row)
    # Other bytes than the source's are no copy of it, whatever metadata they bear (another
    # writer's, or another run's, may bear migrate's).
    md5, stored_md5 = _listed_md5(sums), info.checksums.get("md5", "").lower()
    # A multipart copy's MD5 is of its parts' MD5s ("-N"): no MD5 of the bytes to compare.
    if md5 and _MD5.match(stored_md5) and md5 != stored_md5:
        return False
    source_sha = sums.get("sha256")
    stored = meta.get(SHA256_METADATA, "").lower()
    return not source_sha or not stored or source_sha == stored


# The reasons `classify` finds an object identical by its content alone, not as a copy of
# this plan's: another writer's object (or another plan's copy) with the same bytes.
SAME_BYTES_NOT_OURS = ("sha256", "md5")
OURS_SAME_BYTES = "this plan's earlier copy, the same bytes"


def classify(row: PhaseCandidate, info: ObjectInfo | None) -> tuple[str, str]:
    """("copy" | "identical" | "conflict", why) for one object and its destination HEAD."""
    if info is None:
        return "copy", "absent"
    outcome, why = _compare(row, info)
    if outcome == "conflict" and _lost_record(row, info):
        return "copy", "this plan's copy whose record was lost"
    # Copied again (its metadata changed at the source, or verify found it wrong), or its
    # record lost: this plan's own copy, not another writer's object.
    by_content = outcome == "identical" and why in SAME_BYTES_NOT_OURS
    if by_content and (_earlier_copy(row, info) or _lost_record(row, info)):
        return "identical", OURS_SAME_BYTES
    return outcome, why


def _earlier_copy(row: PhaseCandidate, info: ObjectInfo) -> bool:
    """Whether the destination holds the bytes this plan's last copy of `row` wrote."""
    dest_sha = (info.metadata or {}).get(SHA256_METADATA, "").lower() or info.checksums.get(
        "sha256", ""
    ).lower()
    etag = (info.etag or "").lower()
    return bool(
        (row.previous_sha256 and dest_sha == row.previous_sha256)
        or (row.previous_md5 and etag == row.previous_md5.lower())
    )


def _compare(row: PhaseCandidate, info: ObjectInfo) -> tuple[str, str]:
    sums = _source_sums(row)
    dest_sums = {k: v.lower() for k, v in info.checksums.items()}
    dest_sha = (info.metadata or {}).get(SHA256_METADATA, "").lower() or dest_sums.get("sha256")
    etag = (info.etag or "").lower()
    earlier = _earlier_copy(row, info)
    if info.size != row.size:
        if earlier:  # changed at the source since this plan copied it, size and all
            return "copy", "this plan's earlier copy of an object changed since"
        return "conflict", f"size {info.size} at the destination, {row.size} at the source"
    # A copy this plan finished: the ledger holds the checksums of the bytes it wrote.
    done = row.state == "done"
    if done and row.previous_sha256 and dest_sha == row.previous_sha256:
        return "identical", "sha256 recorded by this plan"
    if done and row.previous_md5 and etag == row.previous_md5.lower():
        return "identical", "ETag recorded by this plan"
    if sums.get("sha256") and dest_sha == sums["sha256"]:
        return "identical", "sha256"
    md5 = _listed_md5(sums)
    if md5 and (dest_sums.get("md5") == md5 or (_MD5.match(etag) and etag == md5)):
        return "identical", "md5"
    if earlier:
        return "copy", "this plan's earlier copy of an object changed since"
    if dest_sha or md5 or dest_sums or _MD5.match(etag):
        return "conflict", "another content at the destination"
    return "conflict", "same size, but no checksum to prove the content equal"


def head_or_none(
    destination: StoreAdapter,
    bucket: str,
    key: str,
    call: Callable[[Callable[[], ObjectInfo]], ObjectInfo] | None = None,
) -> ObjectInfo | None:
    """The destination object's HEAD (through `call`: the run's retries), None if absent."""

    def fetch() -> ObjectInfo:
        return destination.head(bucket, key)

    try:
        return call(fetch) if call is not None else fetch()
    except NotFound:
        return None


def unreadable(exc: Permanent | Unsupported) -> str:
    """Why a key whose HEAD failed for that key alone is a conflict, and what to do."""
    return (
        f"could not be read to check it ({exc.one_line()}); not overwritten: run again to "
        "check it again (--overwrite writes over it unchecked)"
    )


def _left(row: PhaseCandidate) -> bool:
    """Whether the run leaves the object alone: changed at the source during its copy (a
    delta phase takes it), removed since, or gone from the source (the run settles it)."""
    return row.gone or row.state in ("changed", "removed")


def _batches(rows: Iterator[PhaseCandidate]) -> Iterator[list[PhaseCandidate]]:
    while batch := list(islice(rows, _BATCH)):
        yield batch


def dry_run(
    plan: Plan,
    phase: str,
    ledger: Ledger,
    source_adapter: StoreAdapter,
    dest_adapter: StoreAdapter,
    *,
    concurrency: int = 8,
) -> DryRunReport:
    """Per dataset of the phase: objects and bytes, what would be copied, what is already
    at the destination and identical (skipped), what conflicts. Writes nothing: not to the
    stores, not to the ledger. Memory: one batch of rows and per-dataset counters."""
    chosen = plan.phase(phase)
    refuse_decommission(plan, chosen)
    resolved = ledger.phase_state(plan.name, chosen.name).resolved_at is not None
    missing: set[str] = set()
    try:
        for container in sorted({m.source_container for m in plan.mappings}):
            source_adapter.check(container)  # reachable and readable, before any HEAD
        for bucket in sorted({m.destination_bucket for m in plan.mappings}):
            try:
                dest_adapter.check(bucket)
            except SiteRootMissing:
                raise  # not a bucket the run makes: the run refuses it too
            except NotFound:
                missing.add(bucket)
    except TransferError as exc:  # no object would fail: the store does (exit 6, not 11)
        raise as_store_failure(exc) from None
    report: dict[str, DatasetDryRun] = {
        m.dataset: DatasetDryRun(m.dataset, m.destination_bucket) for m in plan.mappings
    }

    def head(row: PhaseCandidate) -> tuple[ObjectInfo | None, str | None]:
        """The destination's HEAD, or why the key cannot be read (a conflict, as in a run)."""
        if row.destination_bucket in missing or _left(row):
            return None, None
        try:
            return head_or_none(dest_adapter, row.destination_bucket, row.destination_key), None
        except (Permanent, Unsupported) as exc:  # this key's, not the site's
            return None, unreadable(exc)

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        for batch in _batches(ledger.phase_candidates(plan, chosen)):
            for row, (info, failed) in zip(batch, pool.map(head, batch), strict=True):
                d = report.setdefault(
                    row.dataset, DatasetDryRun(row.dataset, row.destination_bucket)
                )
                d.objects += 1
                d.bytes += row.size
                if row.state == "done":
                    d.done_in_ledger += 1
                if _left(row):
                    d.not_copied += 1
                    d.not_copied_bytes += row.size
                    continue
                outcome, why = ("conflict", failed) if failed else classify(row, info)
                if row.state == "done" and outcome != "identical":
                    d.done_not_as_recorded += 1
                elif outcome == "copy":
                    d.would_copy += 1
                    d.would_copy_bytes += row.size
                elif outcome == "identical":
                    d.identical += 1
                    d.identical_bytes += row.size
                    if why in SAME_BYTES_NOT_OURS:
                        d.identical_not_ours += 1
                else:
                    d.conflicts += 1
                    d.conflict_bytes += row.size
                    if len(d.conflict_examples) < EXAMPLES:
                        d.conflict_examples.append(
                            f"{row.destination_bucket}/{row.destination_key}: {why}"
                        )
    for d in report.values():
        d.conflict_examples.sort()
    whole, since = ledger.inventory_listings(plan.source)
    return DryRunReport(
        plan=plan.name,
        phase=chosen.name,
        source=plan.source,
        resolved=resolved,
        datasets=[report[k] for k in sorted(report)],
        missing_buckets=sorted(missing),
        inventory_listed_at=whole,
        inventory_prefixes_since=[f"{prefix} at {at}" for prefix, at in since],
        run_lists_again=chosen.kind in (PhaseKind.DELTA, PhaseKind.CUTOVER),
        outside_plan=[d.dataset for d in ledger.datasets_outside(plan.source, plan.accounted)],
        buckets_made_as_required=any(f.code == CERTIFICATION_CONDITION for f in plan.findings),
    )
