"""Delta and cutover: re-list the source, then copy what was added or changed since the
bulk copy; objects deleted at the source are reported, and removed at the destination only
when asked (`--delete-removed`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from migrate.errors import MigrateError
from migrate.inventory import run_inventory
from migrate.ledger import DeletedRow, Ledger
from migrate.plan import Plan
from migrate.sites import SitesConfig
from providers.base import StoreAdapter

SHOWN = 1000


@dataclass
class DeltaSummary:
    added: int  # at the source since the inventory before this one
    changed: int
    deleted: int  # copied objects the source no longer has
    deleted_examples: list[DeletedRow] = field(default_factory=list)
    removed: int = 0  # of those, removed at the destination now


def prepare_delta(
    config: SitesConfig, plan: Plan, ledger: Ledger, source: StoreAdapter
) -> DeltaSummary:
    """Re-list the plan's source, so the delta phase selects what changed since the copy."""
    listed = run_inventory(config, plan.source, source)
    count, examples = ledger.deleted_at_source(plan.name, plan.source, SHOWN)
    return DeltaSummary(listed.added, listed.changed, count, examples)


def remove_deleted(plan: Plan, ledger: Ledger, destination: StoreAdapter) -> int:
    """Delete at the destination the copies of objects deleted at the source; each removal
    is recorded. Only on request: a deletion at the source may be a mistake to undo."""
    removed = 0
    while True:
        _, batch = ledger.deleted_at_source(plan.name, plan.source, 500)
        before = removed
        for row in batch:
            try:
                destination.delete(row.destination_bucket, row.destination_key)
            except MigrateError:
                continue  # left as done: the next run tries again, verify still sees it
            ledger.transfer_removed(plan.name, row.container, row.key)
            removed += 1
        if removed == before:  # nothing left, or nothing more could be removed
            return removed
