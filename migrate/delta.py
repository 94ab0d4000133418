"""Delta and cutover: re-list the source, then copy what was added or changed since the
bulk copy; objects deleted at the source are reported, and removed at the destination only
when asked (`--delete-removed`).

The copying itself is the executor's `run_phase` on the plan's delta or cutover phase (its
selector takes what is new or changed since the copy); this module re-lists the source
before it, reports what the phase will take, and handles the deletions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction

from migrate.dryrun import head_or_none
from migrate.errors import (
    ConfigError,
    MigrateError,
    NotFound,
    Permanent,
    PlanError,
    TransferError,
)
from migrate.inventory import run_inventory
from migrate.keys import portable_key
from migrate.ledger import DatasetTotal, DeletedRow, Ledger
from migrate.plan import PhaseKind, Plan, check_sources_listed
from migrate.sites import SitesConfig
from migrate.transfer import SHA256_METADATA
from providers.base import ObjectInfo, StoreAdapter

SHOWN = 1000  # deleted objects named in a summary; the count covers them all
PAGE = 500
# The most copies one run removes unless told otherwise: a source emptied by mistake (a
# wrong prefix, a script gone astray) must not empty the destination behind it.
DEFAULT_MAX_REMOVE = "10%"


@dataclass
class DeltaSummary:
    """What re-listing the source found, and what the delta will do about it."""

    added: int  # objects new at the source since the inventory before this re-list
    changed: int  # objects changed at the source since that inventory
    deleted: int  # copied objects the source no longer has (their copies are kept)
    deleted_examples: list[DeletedRow] = field(default_factory=list)  # the first SHOWN
    removed: int = 0  # of those, removed at the destination now (set by the caller)
    already_gone: int = 0  # and found gone there already, removed by someone else
    # Of those, how many copies asked to be removed were not, and why for the first SHOWN
    # (remove_deleted's checks, errors): their number grows with the estate, the list not.
    kept_count: int = 0
    kept_at_destination: list[str] = field(default_factory=list)
    # Why --delete-removed removed nothing (past --max-remove), as the dry run says it
    removal_refused: str | None = None
    phase: str | None = None  # the phase counted below (None: not counted)
    to_copy_new: int | None = None  # objects the phase still has to copy, never copied
    # ... copied before: changed at the source since, or found wrong by a verification
    to_copy_changed: int | None = None
    # Datasets at the source the plan does not have (they appeared after it was made): no
    # phase of this plan copies them.
    unplanned: list[DatasetTotal] = field(default_factory=list)

    @property
    def unplanned_objects(self) -> int:
        return sum(d.objects for d in self.unplanned)


def prepare_delta(
    config: SitesConfig,
    plan: Plan,
    ledger: Ledger,
    source: StoreAdapter,
    *,
    phase: str | None = None,
) -> DeltaSummary:
    """Re-list the plan's source (a full inventory run), so the delta or cutover phase
    selects what changed since the copy, and count the copies of objects deleted at the
    source. With `phase`, also count what that phase still has to copy (before its first
    run: what it will select; after: its objects not done yet), split into objects never
    copied and objects copied before whose source changed. Also names the source's datasets
    the plan does not have. Writes nothing but the inventory; the destination is not
    touched."""
    # The re-list covers the containers the sites file lists now: one the plan copies that
    # it no longer lists would keep its old rows, its changes unseen.
    check_sources_listed(plan, config)
    # Never a resumed run: what an interrupted one listed may have changed since.
    listed = run_inventory(config, plan.source, source, resume=False)
    count = ledger.deleted_at_source_count(plan.name, plan.source)
    examples = ledger.deleted_at_source(plan.name, plan.source, limit=SHOWN)
    summary = DeltaSummary(listed.added, listed.changed, count, examples)
    summary.unplanned = ledger.datasets_outside(plan.source, plan.accounted)
    if phase is not None:
        summary.phase = plan.phase(phase).name  # PlanError for an unknown phase
        new = changed = 0
        for candidate in ledger.phase_candidates(plan, phase):
            if candidate.state == "done" or candidate.state == "removed":
                continue
            if candidate.previous_sha256 is None:
                new += 1
            else:
                changed += 1
        summary.to_copy_new, summary.to_copy_changed = new, changed
    return summary


def deleted_at_source(plan: Plan, ledger: Ledger) -> Iterator[DeletedRow]:
    """Every done transfer of the plan whose source object the latest inventory marks
    deleted, in (container, key) order. Streams by pages: memory does not grow with their
    number, and the caller may change the ledger between rows."""
    after: tuple[str, str] | None = None
    while page := ledger.deleted_at_source(plan.name, plan.source, after=after, limit=PAGE):
        yield from page
        after = (page[-1].container, page[-1].key)


def removal_ceiling(max_remove: str, copies: int) -> int:
    """The most copies one run may remove: `max_remove` is a count ("500") or a share of
    the plan's `copies` ("10%"). ConfigError (exit 3) for anything else."""
    text = max_remove.strip()
    refused = ConfigError(
        f"--max-remove {max_remove!r}: neither a count of copies nor a percentage",
        hint="give a number of copies (500) or a share of the plan's copies (10%)",
    )
    try:
        if text.endswith("%"):
            # Exact: 18.4% of 375 is 69, where floating point floors 68.99... to 68.
            share = Fraction(text[:-1].strip())  # refuses nan and inf too
        else:
            count = int(text)
    except ValueError:
        raise refused from None
    if text.endswith("%"):
        if not 0 <= share <= 100:
            raise ConfigError(
                f"--max-remove {max_remove!r}: a share is from 0% to 100%",
                hint="e.g. --max-remove 10%",
            )
        return math.floor(copies * share / 100)
    if count < 0:
        raise ConfigError(
            f"--max-remove {max_remove!r}: a count of copies is 0 or more",
            hint="e.g. --max-remove 500",
        )
    return count


def check_removal_ceiling(
    plan: Plan,
    ledger: Ledger,
    to_remove: int,
    max_remove: str,
    source: StoreAdapter,
    destination: StoreAdapter,
) -> None:
    """Refuse, before anything is removed, a removal of more copies than `max_remove`
    allows (PlanError, exit 9): that many deletions at the source may be a mistake.
    `to_remove` copies have their source gone; when they pass the ceiling, those a run
    would keep (`_why_kept`: another writer's object now under the key, say) are left out
    of the count, checked one by one until the ceiling is passed."""
    copies = sum(c.objects for c in ledger.phase_counts(plan.name) if c.state == "done")
    ceiling = removal_ceiling(max_remove, copies)
    if to_remove <= ceiling or _removable(plan, ledger, source, destination, ceiling) <= ceiling:
        return
    share = f"{100 * to_remove / copies:.1f}%" if copies else "all"
    raise PlanError(
        f"--delete-removed: {to_remove:,} {'copy' if to_remove == 1 else 'copies'} would be "
        f"removed ({share} of the plan's "
        f"{copies:,}), more than --max-remove {max_remove} allows ({ceiling:,}): nothing "
        "was removed or copied",
        hint="check that the source was not emptied by mistake (the delta's summary names "
        f"them); if these deletions are meant, run again with --max-remove {to_remove}",
    )


def _removable(
    plan: Plan, ledger: Ledger, source: StoreAdapter, destination: StoreAdapter, ceiling: int
) -> int:
    """How many copies of objects deleted at the source a run would remove, counted up to
    one past `ceiling` (a mass deletion is not HEADed through)."""
    removable = 0
    for row in deleted_at_source(plan, ledger):
        try:
            if _why_kept(row, source, destination) is not None:
                continue
        except NotFound:
            continue  # gone already: nothing to remove
        except TransferError:
            pass  # cannot tell: counted
        removable += 1
        if removable > ceiling:
            break
    return removable


def remove_deleted(
    plan: Plan,
    ledger: Ledger,
    source: StoreAdapter,
    destination: StoreAdapter,
    *,
    on_error: Callable[[DeletedRow, MigrateError], None] | None = None,
    on_removed: Callable[[DeletedRow], None] | None = None,
    on_gone: Callable[[DeletedRow], None] | None = None,
) -> int:
    """Delete at the destination the copies of objects deleted at the source, each removal
    recorded in the ledger (state `removed`) right after it; returns how many were removed.
    Only on request: a deletion at the source may be a mistake to undo from the copy.

    A delete cannot be undone, so each is checked just before it, not taken from the
    inventory alone (another listing may have run beside this one, or the object come
    back): the source must not have the object now (a HEAD), and the destination key must
    hold this plan's copy (its size, and its SHA-256 or ETag as recorded). A key that a
    store keeping objects as files may hold under another name (a//b as a/b) is never
    deleted. What is left is passed to `on_error`, as is a transfer error on one object
    (that copy stays, its transfer done: the next run tries again); an error that stops
    every request (credentials, endpoint, route) propagates. A copy already gone at the
    destination is recorded removed too, as gone already, and passed to `on_gone`.
    `on_removed` hears of each removal as it is recorded (a run stopped half-way still
    says how many it made)."""
    removed = 0
    for row in deleted_at_source(plan, ledger):
        gone = False
        try:
            left = _why_kept(row, source, destination)
            if left is not None:
                raise Permanent(
                    f"{row.destination_bucket}/{row.destination_key}: not removed: {left}"
                )
            destination.delete(row.destination_bucket, row.destination_key)
        except NotFound:
            gone = True  # the copy (or its bucket) is gone already: someone else removed it
        except TransferError as exc:
            if on_error is not None:
                on_error(row, exc)
            continue
        if ledger.transfer_removed(plan.name, row.container, row.key, already_gone=gone):
            if gone:
                if on_gone is not None:
                    on_gone(row)
                continue
            removed += 1
            if on_removed is not None:
                on_removed(row)
    return removed


def _why_kept(row: DeletedRow, source: StoreAdapter, destination: StoreAdapter) -> str | None:
    """Why the copy of `row` must stay, or None if it may be deleted. Raises NotFound when
    the copy is gone already."""
    if not portable_key(row.destination_key):
        return (
            "a store keeping objects as files may hold another object's copy under this "
            "name (a//b is a/b there); remove it by hand if it is this one"
        )
    if head_or_none(source, row.container, row.key) is not None:
        return f"the source has {row.container}/{row.key} again (the next delta copies it)"
    info = head_or_none(destination, row.destination_bucket, row.destination_key)
    if info is None:
        raise NotFound(f"{row.destination_bucket}/{row.destination_key}: gone already")
    stored = {k.lower(): v for k, v in (info.metadata or {}).items()}.get(SHA256_METADATA, "")
    ours = info.size == row.size and (
        (bool(row.sha256) and stored.lower() == (row.sha256 or "").lower())
        or (bool(row.destination_etag) and info.etag == row.destination_etag)
    )
    if not ours:
        return "it holds an object this plan did not write (written there since the copy)"
    return None


def cutover_checklist(plan: Plan) -> list[str]:
    """The steps for switching applications over to the destination, from the plan's
    cutover phase, in order."""
    for phase in plan.phases:
        if phase.kind is PhaseKind.CUTOVER:
            return list(phase.checklist)
    raise PlanError(
        f"plan {plan.name} has no cutover phase",
        hint="make the plan again with `migrate plan`",
    )


def settle_gone(
    plan: Plan,
    phase: str,
    ledger: Ledger,
    destination: StoreAdapter,
    *,
    call: Callable[[Callable[[], ObjectInfo]], ObjectInfo] | None = None,
) -> int:
    """Settle the phase's transfers still to copy whose source object the latest
    inventory no longer has (taken, then deleted at the source before it was copied): a
    copy would fail at every run and hold the phase open. What the destination key holds
    decides (see `Ledger.settle_gone`): a HEAD each. Returns how many were settled."""

    settled = 0
    while rows := ledger.gone_at_source(plan, phase, PAGE):
        for row in rows:
            info = head_or_none(destination, row.destination_bucket, row.destination_key, call)
            meta = {k.lower(): v for k, v in ((info.metadata or {}) if info else {}).items()}
            etag = ((info.etag or "") if info else "").lower()
            earlier = row.previous_sha256 is not None and (
                info is None
                or meta.get(SHA256_METADATA, "").lower() == row.previous_sha256
                or (bool(row.previous_md5) and etag == (row.previous_md5 or "").lower())
            )
            ledger.settle_gone(
                plan.name, row.container, row.key, at_destination=info, earlier_copy=earlier
            )
            settled += 1
    return settled
