"""The ledger's own bookkeeping, through its public calls: what a run leaves on the
record, a forced gate's reasons, and an inventory listing overtaken by another."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrate.errors import InventorySuperseded
from migrate.ledger import InventoryRow, Ledger, RunCounts


def test_a_late_progress_update_never_overwrites_what_the_run_recorded_at_its_end(
    tmp_path: Path,
) -> None:
    """A run's progress is written while it goes (a run killed outright shows what it had
    done); one written after its end is not what the run did: its end's record stands."""
    with Ledger(tmp_path / "state") as ledger:
        run = ledger.run_started("p", "bulk-1", run_by="ops", tool_version="0", options={})
        ledger.run_progress(run, RunCounts(copied=1))
        ledger.run_finished(run, "completed", RunCounts(copied=3, failed=1))
        ledger.run_progress(run, RunCounts(copied=2))  # a progress writer that ran late
        (record,), _ = ledger.runs("p", 10)
    assert record.outcome == "completed"
    assert (record.counts.copied, record.counts.failed) == (3, 1)


def test_a_listing_overtaken_by_a_newer_one_of_the_site_stores_no_further_page(
    tmp_path: Path,
) -> None:
    """Its page would write over the newer listing's `last_seen`, and one of the two would
    then record the other's objects deleted: refused (exit 14), the newer one's kept."""
    row = InventoryRow("c", "k", "c/", 1, "e", None, None, None, False, None, None, None, 0, None)
    with Ledger(tmp_path / "state") as ledger:
        old, _ = ledger.open_inventory_run("s", "")
        ledger.record_listing_page("s", old, "c", [row], done=False)
        new, resumed = ledger.open_inventory_run("s", "", resume=False)
        assert new != old and not resumed
        ledger.record_listing_page("s", new, "c", [row], done=True)
        with pytest.raises(InventorySuperseded) as refused:
            ledger.record_listing_page("s", old, "c", [row._replace(etag="older")], done=False)
        assert refused.value.exit_code == 14
        changes = ledger.finish_inventory_run("s", new, ["c"], "")
        (stored,) = ledger.inventory_objects("s")
    assert stored.etag == "e" and changes.deleted == 0


def test_a_forced_gates_reasons_are_each_kept_once_in_the_order_given(tmp_path: Path) -> None:
    """The audit record of a gate forced again with the same reason keeps it once; another
    reason is added after it."""
    with Ledger(tmp_path / "state") as ledger:
        for reason in ("pilot verified by hand", "pilot verified by hand", "change CR-12"):
            ledger.phase_mark("p", "bulk-1", "started_at", reason=reason)
        ledger.phase_mark("p", "bulk-1", "started_at")  # no reason: the record stays
        state = ledger.phase_state("p", "bulk-1")
    assert state.forced_reason == "pilot verified by hand; then: change CR-12"
