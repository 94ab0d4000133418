"""Before a phase copies: objects already at the destination, under keys the phase is to
write, that are not this plan's. A copy over one of them would destroy data nobody asked
to replace, so unless it holds the same bytes, or is this plan's own earlier copy, its
transfer fails with a `conflict` reason and it is left as it is; `--overwrite` copies over
them. The dry run names the same conflicts beforehand (this module uses its `classify`).

This plan's own earlier copy: a copy it recorded (an object changed at the source since, or
one verify found wrong: missing is no conflict, other bytes are), or a copy whose record a
kill -9 lost (migrate's metadata, the size and, where the source has one, its SHA-256).
An upload a killed run left under way is checked too: another may have written under its
key since it began; then it is not completed over that object, but kept for a later run.

What the check lets be replaced is recorded (`Ledger.destination_seen`: the object's ETag;
nothing recorded: the key was free), and the copy's write is conditioned on it (If-Match,
If-None-Match: *; see migrate/transfer.py): an object another writer puts under the key
after the check fails that write as a conflict too, instead of being overwritten.

A bucket is listed under the plan's prefixes (memory: a page or two), each page looked up
in the ledger at once, and a HEAD made only for keys the phase is to write (and for every
key a store keeping files renames, a//b: its listing shows it under another name); when the
bucket holds many objects and the phase writes few keys, those keys are HEADed instead.
A bucket holding more than two pages, on a store whose listing is in key order from a
start-after (`Capabilities.ranged_listing`: S3), is listed only around the keys to write,
one listing per run of them (`Ledger.to_write_runs`): a phase resumed after a kill does
not list again all it copied before. Elsewhere the whole listing is read.
Requests go through the run's limits and retries, the HEADs on as many threads as the run
copies with. A key whose HEAD the store refuses for that key alone (an error retrying will
not mend) cannot be shown safe to write: its transfer fails as a conflict too, and the
phase goes on. A failure of the whole site (credentials, endpoint, route) or a store that
keeps failing (after the retries) stops the phase.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from itertools import chain, islice

from migrate.dryrun import SAME_BYTES_NOT_OURS, classify, head_or_none, unreadable
from migrate.errors import ListingOutOfOrder, NotFound, Permanent, Unsupported
from migrate.ledger import CONFLICT, Ledger, PhaseCandidate
from migrate.plan import Plan, destination_prefixes
from providers.base import ObjectInfo, StoreAdapter

PAGE = 500
NOT_OVERWRITTEN = "not overwritten: move it away, or run with --overwrite"
FEW = 1000  # keys to write in a full bucket that are asked one by one instead of listing it
RUN_GAP = 1000  # this plan's objects between two keys to write past which a listing restarts


@dataclass(frozen=True, slots=True)
class Conflicts:
    """What the check left as it is: transfers failed as conflicts, and their bytes."""

    objects: int = 0
    bytes: int = 0
    overwriting: int = 0  # with --overwrite: objects not this plan's its writes may replace
    # objects this plan did not write holding the same bytes: replaced by the copy, whose
    # content type and metadata are the source's (recorded as copied over, with what was there)
    same_bytes: int = 0


def _listing(destination: StoreAdapter, bucket: str, prefixes: list[str]) -> Iterator[ObjectInfo]:
    for prefix in prefixes:
        try:
            yield from destination.list_objects(bucket, prefix)
        except NotFound:  # the bucket is not there yet: nothing in the way
            continue


def mark_conflicts(
    plan: Plan,
    phase: str,
    ledger: Ledger,
    destination: StoreAdapter,
    *,
    call: Callable[[Callable[[], ObjectInfo]], ObjectInfo] | None = None,
    overwrite: bool = False,
    workers: int = 1,
) -> Conflicts:
    """Fail, with a `conflict` reason, the phase's transfers whose destination key holds
    an object that is not this plan's, with other bytes, or could not be read to tell.
    Conflicts of an earlier run are checked again (the object may have been moved away
    since). With `overwrite`, none fails: each write is let replace what the check found
    (and only that: its write expects it), recorded for the report (`overwrote`)."""
    ledger.clear_conflicts(plan.name, phase)
    lock, overwriting, same_bytes = threading.Lock(), 0, 0

    def fail(row: PhaseCandidate, why: str) -> int:
        # An upload under way is not completed over the object, nor thrown away: once the
        # key is free (or with --overwrite) a run resumes it.
        ledger.transfer_not_done(
            plan.name,
            row.container,
            row.key,
            "failed",
            f"{CONFLICT}{row.destination_bucket}/{row.destination_key} {why}",
            0,
            keep_upload=row.uploading,
        )
        return row.size

    def check(row: PhaseCandidate) -> int | None:
        """The row's size if it is left as a conflict, else None."""
        nonlocal overwriting, same_bytes
        try:
            info = head_or_none(destination, row.destination_bucket, row.destination_key, call)
        except (Permanent, Unsupported) as exc:  # this key's, not the site's
            if overwrite:  # written unconditionally: there is no ETag to expect
                seen = f"the key could not be read to tell what it held ({exc.one_line()})"
                ledger.destination_seen(plan.name, row.container, row.key, None, overwriting=seen)
                with lock:
                    overwriting += 1
                return None
            return fail(row, unreadable(exc))
        outcome, why = classify(row, info)
        if outcome != "conflict" or overwrite:
            # Absent, the same bytes, this plan's own copy, or (--overwrite) another's. The
            # write then expects just that: what another writer puts there after this check
            # is not replaced.
            if info is not None:
                replaced = None
                if outcome == "conflict":
                    replaced = f"{why}; its ETag {info.etag or '-'}, {info.size:,} bytes"
                    with lock:
                        overwriting += 1
                elif outcome == "identical" and why in SAME_BYTES_NOT_OURS:
                    # Another writer's object (or another plan's copy): its bytes are kept,
                    # not its content type and metadata, which the copy's replace: on record.
                    replaced = (
                        f"the same bytes ({why}), another writer's object: its content type "
                        f"and metadata replaced by the source's; its ETag {info.etag or '-'}, "
                        f"{info.size:,} bytes{_bore(info)}"
                    )
                    with lock:
                        same_bytes += 1
                ledger.destination_seen(
                    plan.name, row.container, row.key, info.etag, overwriting=replaced
                )
            return None
        return fail(
            row, f"already holds an object this plan did not write ({why}); {NOT_OVERWRITTEN}"
        )

    found = Conflicts()
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="conflicts") as pool:

        def check_all(rows: list[PhaseCandidate]) -> None:
            nonlocal found
            for size in pool.map(check, rows):
                if size is not None:
                    found = Conflicts(found.objects + 1, found.bytes + size)

        for bucket, prefixes in destination_prefixes(plan).items():
            count = ledger.to_write_count(plan.name, phase, bucket)
            if count == 0:
                continue
            # A key a store keeping files lists under another name (a//b as a/b) is not
            # found by its name in a listing: HEADed, which answers what the write would hit.
            check_all(list(ledger.to_write_at(plan.name, phase, bucket, portable=False)))
            listing = _listing(destination, bucket, prefixes)
            # A bucket new or nearly empty (the usual case) is read in a request or two;
            # else, for few keys to write, a HEAD each costs less than listing the bucket.
            first = list(islice(listing, 2 * PAGE + 1))
            if count <= FEW and len(first) > 2 * PAGE:
                check_all(list(ledger.to_write_at(plan.name, phase, bucket, portable=True)))
                continue
            if len(first) > 2 * PAGE and destination.capabilities.ranged_listing:
                # Only where keys are to be written: a resumed phase skips what it copied.
                try:
                    for keys in _chunks(
                        _listed_in_runs(destination, bucket, prefixes, ledger, plan.name, phase)
                    ):
                        check_all(
                            list(ledger.to_write_at(plan.name, phase, bucket, keys, portable=True))
                        )
                    continue
                except ListingOutOfOrder:
                    pass  # a store that ignores StartAfter: the whole listing, below
            # The whole listing, in whatever order the store gives it (the keys already
            # left as conflicts above are not asked again: `to_write_at` skips them).
            for keys in _chunks(o.key for o in chain(first, listing)):
                check_all(list(ledger.to_write_at(plan.name, phase, bucket, keys, portable=True)))
    return replace(found, overwriting=overwriting, same_bytes=same_bytes)


def _bore(info: ObjectInfo) -> str:
    """What a replaced object carried, where its HEAD said (a listing does not): its content
    type and the names of its metadata (not their values, which the report would spread)."""
    if info.metadata is None:
        return ""
    names = ", ".join(sorted(info.metadata)) or "none"
    return f", content type {info.content_type or '-'}, metadata {names}"


def _chunks(keys: Iterable[str]) -> Iterator[list[str]]:
    it = iter(keys)
    while chunk := list(islice(it, PAGE)):
        yield chunk


def _listed_in_runs(
    destination: StoreAdapter,
    bucket: str,
    prefixes: list[str],
    ledger: Ledger,
    plan: str,
    phase: str,
) -> Iterator[str]:
    """The bucket's keys under the plan's prefixes within each run of keys to write (see
    `Ledger.to_write_runs`): one listing per run and prefix, from just before the run's
    first key to its last."""
    for first, last in ledger.to_write_runs(plan, phase, bucket, RUN_GAP):
        for prefix in prefixes:
            # The keys under a prefix are one range in key order: does the run meet it?
            if last < prefix or not (first < prefix or first.startswith(prefix)):
                continue
            after = first[:-1] if first > prefix else None
            try:
                for o in destination.list_objects(bucket, prefix, start_after=after or None):
                    if o.key > last:
                        break
                    if o.key >= first:
                        yield o.key
            except NotFound:  # the bucket is not there: nothing in the way
                return
