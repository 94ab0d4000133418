"""Before a phase copies: objects already at the destination, under keys the phase is to
write, that are not this plan's. A copy over one of them would destroy data nobody asked
to replace, so unless it holds the same bytes, or is this plan's own earlier copy, its
transfer fails with a `conflict` reason and it is left as it is; `--overwrite` copies over
them. The dry run names the same conflicts beforehand (this module uses its `classify`).

This plan's own earlier copy: a copy it recorded (an object changed at the source since, or
one verify found wrong: missing is no conflict, other bytes are), or a copy whose record a
kill -9 lost (migrate's metadata, the size and, where the source has one, its SHA-256).

A bucket is listed under the plan's prefixes (memory: a page or two), each page looked up
in the ledger at once, and a HEAD made only for keys the phase is to write; when the
bucket holds many objects and the phase writes few keys, those keys are HEADed instead.
Requests go through the run's limits and retries.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from itertools import islice

from migrate.delta import head_or_none
from migrate.dryrun import classify
from migrate.errors import NotFound
from migrate.ledger import CONFLICT, Ledger, PhaseCandidate
from migrate.plan import Plan, destination_prefixes
from migrate.transfer import SHA256_METADATA, SOURCE_MTIME_METADATA
from providers.base import ObjectInfo, StoreAdapter

PAGE = 500
FEW = 1000  # keys to write in a full bucket that are asked one by one instead of listing it


def _listing(destination: StoreAdapter, bucket: str, prefixes: list[str]) -> Iterator[ObjectInfo]:
    for prefix in prefixes:
        try:
            yield from destination.list_objects(bucket, prefix)
        except NotFound:  # the bucket is not there yet: nothing in the way
            continue


def _lost_record(row: PhaseCandidate, info: ObjectInfo) -> bool:
    """Whether the object is this plan's copy of `row` whose record was lost (a kill -9, a
    failure after the write): migrate's metadata, the size, and the source's SHA-256 where
    it has one. A copy of an earlier version (delta, verify) counts too."""
    meta = {k.lower(): v for k, v in (info.metadata or {}).items()}
    if info.size != row.size or SOURCE_MTIME_METADATA not in meta:
        return False
    try:
        source_sha = (json.loads(row.checksums) if row.checksums else {}).get("sha256")
    except (ValueError, AttributeError):
        source_sha = None
    stored = meta.get(SHA256_METADATA, "").lower()
    return not source_sha or not stored or str(source_sha).lower() == stored


def mark_conflicts(
    plan: Plan,
    phase: str,
    ledger: Ledger,
    destination: StoreAdapter,
    *,
    call: Callable[[Callable[[], ObjectInfo]], ObjectInfo] | None = None,
    overwrite: bool = False,
) -> int:
    """Fail, with a `conflict` reason, the phase's transfers whose destination key holds
    an object that is not this plan's, with other bytes; returns how many. Conflicts of an
    earlier run are checked again (the object may have been moved away since). With
    `overwrite`, nothing is checked and every transfer is copied."""
    ledger.clear_conflicts(plan.name, phase)
    if overwrite:
        return 0

    def check(row: PhaseCandidate) -> bool:
        info = head_or_none(destination, row.destination_bucket, row.destination_key, call)
        if info is None or _lost_record(row, info):
            return False
        outcome, why = classify(row, info)
        if outcome != "conflict":
            return False  # absent, the same bytes, or this plan's earlier copy
        ledger.transfer_not_done(
            plan.name,
            row.container,
            row.key,
            "failed",
            f"{CONFLICT}{row.destination_bucket}/{row.destination_key} already holds an "
            f"object this plan did not write ({why}); not overwritten: move it away, or run "
            "with --overwrite",
            0,
        )
        return True

    found = 0
    for bucket, prefixes in destination_prefixes(plan).items():
        count = ledger.to_write_count(plan.name, phase, bucket)
        if count == 0:
            continue
        listing = _listing(destination, bucket, prefixes)
        # A bucket new or nearly empty (the usual case) is read in a request or two;
        # else, for few keys to write, a HEAD each costs less than listing the bucket.
        first = list(islice(listing, 2 * PAGE + 1))
        if count <= FEW and len(first) > 2 * PAGE:
            found += sum(check(row) for row in list(ledger.to_write_at(plan.name, phase, bucket)))
            continue
        page = first
        while page:
            for start in range(0, len(page), PAGE):
                keys = [o.key for o in page[start : start + PAGE]]
                rows = list(ledger.to_write_at(plan.name, phase, bucket, keys))
                found += sum(check(row) for row in rows)
            page = list(islice(listing, PAGE))
    return found
