"""Small objects' records are committed in groups (migrate/ledger.py): never lost by the
process that made them, committed within half a second even when nothing else happens,
and kept when a commit fails (another process holding the state, an interrupt)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from migrate.errors import StateBusy
from migrate.ledger import Ledger
from migrate.locations import STATE_FILE

PLAN, PHASE = "p", "bulk-1"


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    with Ledger(tmp_path):  # the schema
        pass
    db = sqlite3.connect(tmp_path / STATE_FILE)
    db.executemany(
        "INSERT INTO transfers (plan, container, key, phase, dataset, size, "
        "destination_bucket, destination_key) VALUES (?, 'c', ?, ?, 'c/', 10, 'b', ?)",
        [(PLAN, f"k{i}", PHASE, f"k{i}") for i in range(3)],
    )
    db.commit()
    db.close()
    yield tmp_path


def done(ledger: Ledger, key: str) -> None:
    ledger.transfer_started(PLAN, "c", key, None, None, group=True)
    ledger.transfer_done(
        PLAN, "c", key, sha256="a" * 64, md5="b" * 32, destination_etag='"e"',
        source_proof="md5", retries=0, group=True,
    )  # fmt: skip


def states_seen_by_another_process(state: Path) -> dict[str, str]:
    db = sqlite3.connect(state / STATE_FILE)
    try:
        return dict(db.execute("SELECT key, state FROM transfers"))
    finally:
        db.close()


def test_a_group_is_committed_half_a_second_after_its_first_record_when_nothing_else_happens(
    state: Path,
) -> None:
    with Ledger(state) as ledger:
        recorded = time.monotonic()
        done(ledger, "k0")
        seen = states_seen_by_another_process(state)["k0"]
        if time.monotonic() - recorded < 0.4:  # not where a loaded machine paused this test
            assert seen == "pending"
        deadline = time.monotonic() + 5
        while states_seen_by_another_process(state)["k0"] != "done":
            assert time.monotonic() < deadline, "the group was never committed on its own"
            time.sleep(0.05)


def test_a_group_whose_commit_fails_is_kept_and_committed_by_the_next_call(
    state: Path,
) -> None:
    with Ledger(state) as ledger:
        ledger._db.execute("PRAGMA busy_timeout=50")  # not 5 s of waiting per attempt
        other = sqlite3.connect(state / STATE_FILE, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process writing the state
        done(ledger, "k1")
        with pytest.raises(StateBusy, match="held by another process's write"):
            ledger.phase_counts(PLAN, PHASE)
        time.sleep(0.7)  # the timer's attempt fails too, silently
        other.execute("ROLLBACK")
        other.close()
        counts = {c.state: c.objects for c in ledger.phase_counts(PLAN, PHASE)}
        assert counts == {"done": 1, "pending": 2}
    assert states_seen_by_another_process(state) == {"k0": "pending", "k1": "done", "k2": "pending"}


def test_leaving_on_an_interrupt_while_the_state_is_locked_keeps_the_interrupt(
    state: Path,
) -> None:
    other = sqlite3.connect(state / STATE_FILE, isolation_level=None)
    try:
        with pytest.raises(KeyboardInterrupt), Ledger(state) as ledger:
            ledger._db.execute("PRAGMA busy_timeout=50")
            other.execute("BEGIN IMMEDIATE")
            done(ledger, "k2")
            raise KeyboardInterrupt
    finally:
        other.execute("ROLLBACK")
        other.close()
    # Not recorded: the object is copied again by the next run, never done without proof.
    assert states_seen_by_another_process(state)["k2"] == "pending"


def test_a_closed_ledger_refuses_a_grouped_record(state: Path) -> None:
    ledger = Ledger(state)
    ledger.close()
    with pytest.raises(sqlite3.ProgrammingError):
        done(ledger, "k0")
