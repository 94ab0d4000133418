"""Before a phase copies: objects already at the destination, under keys the phase is to
write, that this plan did not write. A copy over one of them would destroy data nobody
asked to replace, so unless it holds the same bytes (or is this plan's own copy whose
record a kill -9 lost), its transfer fails with a `conflict` reason and it is left as it
is; `--overwrite` copies over them. The dry run names the same conflicts beforehand.

One listing of the phase's destination prefixes per run (memory: one page), a batched
lookup of each page in the ledger, and a HEAD only for keys the phase is to write.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import islice

from migrate.dryrun import classify
from migrate.errors import NotFound
from migrate.ledger import CONFLICT, Ledger
from migrate.plan import Plan, destination_prefixes
from migrate.transfer import SHA256_METADATA, SOURCE_MTIME_METADATA
from providers.base import ObjectInfo, StoreAdapter

PAGE = 500


def _listing(destination: StoreAdapter, bucket: str, prefixes: list[str]) -> Iterator[ObjectInfo]:
    for prefix in prefixes:
        try:
            yield from destination.list_objects(bucket, prefix)
        except NotFound:  # the bucket is not there yet: nothing in the way
            return


def _written_by_migrate(info: ObjectInfo) -> bool:
    meta = {k.lower() for k in info.metadata or {}}
    return SHA256_METADATA in meta or SOURCE_MTIME_METADATA in meta


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
    an object this plan did not write, with other bytes; returns how many. Conflicts of an
    earlier run are checked again (the object may have been moved away since). With
    `overwrite`, nothing is checked and every transfer is copied."""
    ledger.clear_conflicts(plan.name, phase)
    if overwrite:
        return 0

    def head(bucket: str, key: str) -> ObjectInfo | None:
        def fetch() -> ObjectInfo:
            return destination.head(bucket, key)

        try:
            return call(fetch) if call is not None else fetch()
        except NotFound:
            return None

    found = 0
    for bucket, prefixes in destination_prefixes(plan).items():
        listing = _listing(destination, bucket, prefixes)
        while page := list(islice(listing, PAGE)):
            keys = [o.key for o in page]
            for row in ledger.never_copied_at(plan.name, phase, bucket, keys):
                info = head(bucket, row.destination_key)
                if info is None or _written_by_migrate(info):
                    continue  # gone since, or a copy by migrate whose record was lost
                outcome, why = classify(row, info)
                if outcome != "conflict":
                    continue  # the same bytes: copying them again changes nothing
                ledger.transfer_not_done(
                    plan.name,
                    row.container,
                    row.key,
                    "failed",
                    f"{CONFLICT}{bucket}/{row.destination_key} already holds an object this "
                    f"plan did not write ({why}); not overwritten: move it away, or run "
                    "with --overwrite",
                    0,
                )
                found += 1
    return found
