"""The ledger: the one owner of the state file (SQLite, WAL). No other module writes it;
the one read outside this module is the re-run receipt's lookup (`migrate/rerun.py`,
`_lookup`), made before this module is even loaded.

Each state change is a named method running in one transaction, so a kill -9 at any
instant leaves either the state before or the state after it. The one exception is
grouped on purpose: a small object's "started" and "done" records (`group=True`, asked by
the executor for objects sent in one request) wait in memory and are committed together:
at `GROUP_STATEMENTS` (256 objects), `GROUP_SECONDS` after the first (a timer), as soon
as anything else in this process reads or writes the ledger, and on close. Two commits
per object made a copy of 16 KiB objects spend ~40 % more client CPU (bench/RESULTS.md).
A process killed (kill -9, or a SIGTERM Python does not catch) can then forget the last
group: those objects stay as they were and are copied again by the next run, never
recorded done without their checksums. A group whose commit fails is kept, to be
committed by the next call, which sees the same error if it lasts. Schema changes are named
migrations, recorded in `schema_migrations` and applied in order on open. A change to
the rows a finished phase's answer is read from deletes every re-run receipt, by trigger:
whatever writes it, this version or another.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import astuple, dataclass, field, fields, replace
from datetime import UTC, datetime
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from migrate.errors import ConfigError, InventorySuperseded, StateBusy, StateUnwritable
from migrate.keys import portable_key
from migrate.locations import STATE_FILE

if TYPE_CHECKING:
    from migrate.plan import Phase, Plan
    from providers.base import ObjectInfo

# The transfers `status --failed` lists: failed, changed at the source during their copy,
# or found wrong by a verification (pending, their reason still their error). Written
# without a table alias: the partial index below holds exactly these rows, and SQLite
# uses it only for a query naming the same expression.
_NOT_COPIED_STATES = (
    "(state IN ('failed', 'changed') "
    "OR (state = 'pending' AND recopy_reason IS NOT NULL AND error = recopy_reason))"
)

_MIGRATIONS: list[tuple[str, str]] = [
    (
        "inventory",
        """
        CREATE TABLE inventory_runs (
            id INTEGER PRIMARY KEY,
            site TEXT NOT NULL,
            prefix TEXT NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT
        );
        CREATE TABLE listings (
            run_id INTEGER NOT NULL REFERENCES inventory_runs(id),
            container TEXT NOT NULL,
            marker TEXT,
            done INTEGER NOT NULL DEFAULT 0,
            pages INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (run_id, container)
        );
        CREATE TABLE objects (
            site TEXT NOT NULL,
            container TEXT NOT NULL,
            key TEXT NOT NULL,
            dataset TEXT NOT NULL,
            size INTEGER NOT NULL,
            etag TEXT,
            last_modified TEXT,
            checksums TEXT,
            storage_class TEXT,
            archived INTEGER NOT NULL DEFAULT 0,
            version_id TEXT,
            content_type TEXT,
            metadata TEXT,
            flags INTEGER NOT NULL DEFAULT 0,
            first_seen INTEGER NOT NULL,
            last_seen INTEGER NOT NULL,
            changed_in INTEGER,
            deleted_in INTEGER,
            PRIMARY KEY (site, container, key)
        ) WITHOUT ROWID;
        CREATE INDEX objects_dataset ON objects (site, dataset);
        """,
    ),
    (
        "plans-and-transfers",
        """
        CREATE TABLE approvals (
            plan TEXT NOT NULL,
            digest TEXT NOT NULL,
            approved_by TEXT NOT NULL,
            approved_at TEXT NOT NULL,
            path TEXT NOT NULL,
            PRIMARY KEY (plan, digest)
        );
        CREATE TABLE phases (
            plan TEXT NOT NULL,
            phase TEXT NOT NULL,
            resolved_at TEXT,
            started_at TEXT,
            finished_at TEXT,
            verified_at TEXT,
            forced_reason TEXT,
            PRIMARY KEY (plan, phase)
        );
        CREATE TABLE transfers (
            plan TEXT NOT NULL,
            container TEXT NOT NULL,
            key TEXT NOT NULL,
            phase TEXT NOT NULL,
            dataset TEXT NOT NULL,
            size INTEGER NOT NULL,
            source_etag TEXT,
            source_version TEXT,
            source_checksums TEXT,
            destination_bucket TEXT NOT NULL,
            destination_key TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending',
            upload_id TEXT,
            part_size INTEGER,
            sha256 TEXT,
            md5 TEXT,
            destination_etag TEXT,
            error TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            retries INTEGER NOT NULL DEFAULT 0,
            started_at TEXT,
            finished_at TEXT,
            PRIMARY KEY (plan, container, key)
        ) WITHOUT ROWID;
        CREATE INDEX transfers_phase_state ON transfers (plan, phase, state);
        CREATE TABLE parts (
            plan TEXT NOT NULL,
            container TEXT NOT NULL,
            key TEXT NOT NULL,
            upload_id TEXT NOT NULL,
            part_number INTEGER NOT NULL,
            size INTEGER NOT NULL,
            md5 TEXT NOT NULL,
            etag TEXT,
            PRIMARY KEY (plan, container, key, upload_id, part_number)
        ) WITHOUT ROWID;
        CREATE TABLE routes (
            plan TEXT NOT NULL,
            host TEXT NOT NULL,
            scheme TEXT NOT NULL,
            requests INTEGER NOT NULL DEFAULT 0,
            bytes_sent INTEGER NOT NULL DEFAULT 0,
            first_seen TEXT NOT NULL,
            last_seen TEXT NOT NULL,
            PRIMARY KEY (plan, host, scheme)
        );
        """,
    ),
    (
        "verification",
        """
        CREATE TABLE verifications (
            id INTEGER PRIMARY KEY,
            plan TEXT NOT NULL,
            phase TEXT,
            mode TEXT NOT NULL,
            sample REAL,
            seed INTEGER NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT NOT NULL,
            passed INTEGER NOT NULL,
            objects INTEGER NOT NULL,
            bytes INTEGER NOT NULL,
            reread INTEGER NOT NULL,
            summary TEXT NOT NULL
        );
        CREATE INDEX verifications_plan ON verifications (plan, phase, id);
        CREATE INDEX transfers_destination ON transfers (plan, destination_bucket, destination_key);
        CREATE INDEX transfers_manifest
            ON transfers (plan, state, dataset, destination_bucket, destination_key);
        """,
    ),
    (
        # Counting a phase (status, a finished phase run again) reads the index alone:
        # without `size` in it, SUM(size) read every row of the table (~1.5 s a million).
        "phase counts from the index",
        """
        DROP INDEX transfers_phase_state;
        CREATE INDEX transfers_phase_state ON transfers (plan, phase, state, size);
        """,
    ),
    (
        # A finished phase run again is answered from its receipt (migrate/rerun.py, which
        # reads this table). The answer is read from transfers, phases and approvals (a
        # test checks it): a change to any of their rows, by any writer, deletes every
        # receipt. A migration that rebuilds one of those tables must create its triggers
        # again; one that retires receipts drops the table, not only the triggers (an
        # older migrate would answer from what they no longer void). (`WHERE` keeps SQLite
        # from clearing the empty table's page: a page written at every change.)
        "re-run receipts",
        """
        CREATE TABLE receipts (
            inputs TEXT PRIMARY KEY,
            text TEXT NOT NULL,
            json TEXT NOT NULL,
            written_at TEXT NOT NULL
        );
        CREATE TRIGGER receipts_void_transfers_insert AFTER INSERT ON transfers
            BEGIN DELETE FROM receipts WHERE inputs IS NOT NULL; END;
        CREATE TRIGGER receipts_void_transfers_update AFTER UPDATE ON transfers
            BEGIN DELETE FROM receipts WHERE inputs IS NOT NULL; END;
        CREATE TRIGGER receipts_void_transfers_delete AFTER DELETE ON transfers
            BEGIN DELETE FROM receipts WHERE inputs IS NOT NULL; END;
        CREATE TRIGGER receipts_void_phases_insert AFTER INSERT ON phases
            BEGIN DELETE FROM receipts WHERE inputs IS NOT NULL; END;
        CREATE TRIGGER receipts_void_phases_update AFTER UPDATE ON phases
            BEGIN DELETE FROM receipts WHERE inputs IS NOT NULL; END;
        CREATE TRIGGER receipts_void_phases_delete AFTER DELETE ON phases
            BEGIN DELETE FROM receipts WHERE inputs IS NOT NULL; END;
        CREATE TRIGGER receipts_void_approvals_insert AFTER INSERT ON approvals
            BEGIN DELETE FROM receipts WHERE inputs IS NOT NULL; END;
        CREATE TRIGGER receipts_void_approvals_update AFTER UPDATE ON approvals
            BEGIN DELETE FROM receipts WHERE inputs IS NOT NULL; END;
        CREATE TRIGGER receipts_void_approvals_delete AFTER DELETE ON approvals
            BEGIN DELETE FROM receipts WHERE inputs IS NOT NULL; END;
        """,
    ),
    (
        # Hosts contacted by the commands that read a site before a plan exists
        # (inventory, sites check, the plan's own reads): the report attests them beside
        # the runs' routes.
        "site routes",
        """
        CREATE TABLE site_routes (
            site TEXT NOT NULL,
            command TEXT NOT NULL,
            host TEXT NOT NULL,
            scheme TEXT NOT NULL,
            requests INTEGER NOT NULL DEFAULT 0,
            bytes_sent INTEGER NOT NULL DEFAULT 0,
            first_seen TEXT NOT NULL,
            last_seen TEXT NOT NULL,
            PRIMARY KEY (site, command, host, scheme)
        );
        """,
    ),
    (
        # Why verify last asked for a copy again: the same finding after that copy is the
        # store's doing (it alters what is written), which another copy would not mend.
        "verify's reason to copy again",
        "ALTER TABLE transfers ADD COLUMN recopy_reason TEXT;",
    ),
    (
        # The headers a listing carries besides the content type (Azure's does), which a
        # copy keeps and verify compares: JSON, None where the listing does not carry them.
        "source headers",
        "ALTER TABLE objects ADD COLUMN headers TEXT;",
    ),
    (
        # The source's last modification as listed when the transfer was taken: a change
        # of metadata alone keeps an S3 object's ETag, not its modification time.
        "source modification time",
        "ALTER TABLE transfers ADD COLUMN source_modified TEXT;",
    ),
    (
        # Verify found the copy's bytes wrong (size or checksum): until a new copy is done,
        # what the destination holds is not a proven copy, whatever its metadata says.
        "bytes disputed",
        "ALTER TABLE transfers ADD COLUMN bytes_disputed INTEGER NOT NULL DEFAULT 0;",
    ),
    (
        # An unfinished run a delta or cutover re-list replaced: never resumed (what it
        # listed is as old as it is), never taken for a finished one.
        "inventory runs abandoned",
        "ALTER TABLE inventory_runs ADD COLUMN abandoned_at TEXT;",
    ),
    (
        # Where each dataset of a plan went when the plan's state was first made: a plan
        # made again under the same name (its file name) that sends a dataset elsewhere
        # would otherwise take that progress for its own.
        "plan routes",
        """
        CREATE TABLE plan_routes (
            plan TEXT NOT NULL,
            dataset TEXT NOT NULL,
            route TEXT NOT NULL,
            bound_at TEXT NOT NULL,
            PRIMARY KEY (plan, dataset)
        ) WITHOUT ROWID;
        """,
    ),
    (
        # Objects whose names are not UTF-8 (flag 512, KEY_NOT_UTF8): a phase's resolution
        # looks for them, and there are few or none.
        "objects not utf-8",
        "CREATE INDEX objects_not_utf8 ON objects (site) WHERE flags & 512 != 0;",
    ),
    (
        # A finished phase's answer now reads plan_routes too (check_approved): a change to
        # it voids the re-run receipts, as one to transfers, phases or approvals does.
        "receipts void on plan routes",
        """
        CREATE TRIGGER receipts_void_plan_routes_insert AFTER INSERT ON plan_routes
            BEGIN DELETE FROM receipts WHERE inputs IS NOT NULL; END;
        CREATE TRIGGER receipts_void_plan_routes_update AFTER UPDATE ON plan_routes
            BEGIN DELETE FROM receipts WHERE inputs IS NOT NULL; END;
        CREATE TRIGGER receipts_void_plan_routes_delete AFTER DELETE ON plan_routes
            BEGIN DELETE FROM receipts WHERE inputs IS NOT NULL; END;
        """,
    ),
    (
        # What the conflict check of the phase's latest run found under a transfer's
        # destination key, which its write then expects (If-Match): the ETag of the object
        # let be overwritten ('' for one without an ETag). NULL: nothing there (If-None-Match).
        "destination seen",
        "ALTER TABLE transfers ADD COLUMN destination_seen TEXT;",
    ),
    (
        # Each `migrate run` of a phase (refused at its gate too): who ran it, with which
        # version and options, when, and what came of it (the phases table keeps only the
        # latest times). NULL outcome: no end recorded (killed, or under way).
        "runs",
        """
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            plan TEXT NOT NULL,
            phase TEXT NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            run_by TEXT NOT NULL,
            tool_version TEXT NOT NULL,
            options TEXT NOT NULL,
            outcome TEXT,
            copied INTEGER NOT NULL DEFAULT 0,
            bytes_copied INTEGER NOT NULL DEFAULT 0,
            failed INTEGER NOT NULL DEFAULT 0,
            conflicts INTEGER NOT NULL DEFAULT 0,
            changed INTEGER NOT NULL DEFAULT 0,
            removed INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX runs_plan ON runs (plan, id);
        """,
    ),
    (
        # What a write with --overwrite was let replace: an object this plan did not write
        # (why it was a conflict, its ETag and size). Kept once the copy is done: the
        # record of what was there.
        "overwrote",
        "ALTER TABLE transfers ADD COLUMN overwrote TEXT;",
    ),
    (
        # `status --failed` reads every failed or changed object a page at a time: each
        # page from where the last stopped, not by sorting them all again.
        "transfers not copied",
        "CREATE INDEX transfers_not_copied ON transfers (plan, phase, container, key) "
        "WHERE state IN ('failed', 'changed');",
    ),
    (
        # Each copy done with --overwrite over an object this plan did not write, and what
        # was there: kept apart from the transfer, whose later copies (a delta, a copy
        # verify asked for) would otherwise erase the record.
        "overwrites",
        """
        CREATE TABLE overwrites (
            plan TEXT NOT NULL,
            phase TEXT NOT NULL,
            container TEXT NOT NULL,
            key TEXT NOT NULL,
            what TEXT NOT NULL,
            at TEXT NOT NULL
        );
        CREATE INDEX overwrites_phase ON overwrites (plan, phase, container, key);
        INSERT INTO overwrites
            SELECT plan, phase, container, key, overwrote, COALESCE(finished_at, '')
            FROM transfers WHERE overwrote IS NOT NULL AND state = 'done';
        UPDATE transfers SET overwrote = NULL WHERE state = 'done';
        """,
    ),
    (
        # Each copy removed at the destination by --delete-removed: kept apart from the
        # transfer, which a later copy (the object back at the source) takes over, so the
        # record of a deletion that cannot be undone stays.
        "removals",
        """
        CREATE TABLE removals (
            plan TEXT NOT NULL,
            phase TEXT NOT NULL,
            container TEXT NOT NULL,
            key TEXT NOT NULL,
            destination_bucket TEXT NOT NULL,
            destination_key TEXT NOT NULL,
            at TEXT NOT NULL
        );
        CREATE INDEX removals_plan ON removals (plan, at);
        INSERT INTO removals
            SELECT plan, phase, container, key, destination_bucket, destination_key,
                COALESCE(finished_at, '')
            FROM transfers WHERE state = 'removed' AND error = 'deleted at the source';
        """,
    ),
    (
        # A copy that --delete-removed found gone at the destination already (removed by
        # someone else) is recorded as such: the log does not say the run removed it.
        "removals_already_gone",
        "ALTER TABLE removals ADD COLUMN already_gone INTEGER NOT NULL DEFAULT 0;",
    ),
    (
        # The report finds the run each copy finished in (its phase's latest run begun
        # before): a phase's duration is the time its runs worked, not the idle between.
        "runs_by_phase",
        "CREATE INDEX runs_phase ON runs (plan, phase, started_at);",
    ),
    (
        # The tags a copy set on the object (JSON; NULL: none), which verify compares.
        "transfer_tags",
        "ALTER TABLE transfers ADD COLUMN tags TEXT;",
    ),
    (
        # How a container's objects are grouped into datasets, decided at its first
        # listing and kept: by top-level prefix (whole 0), or the container as one dataset
        # (whole 1: too many prefixes; see migrate.inventory.WHOLE_CONTAINER_AFTER). The
        # containers listed before are by prefix, as they were planned.
        "container_datasets",
        """
        CREATE TABLE container_datasets (
            site TEXT NOT NULL,
            container TEXT NOT NULL,
            whole INTEGER NOT NULL,
            PRIMARY KEY (site, container)
        ) WITHOUT ROWID;
        INSERT INTO container_datasets SELECT DISTINCT site, container, 0 FROM objects;
        """,
    ),
    (
        # Who ran each verification and with which version, as for runs: a verification
        # opens the gates. NULL: recorded before this was kept.
        "verifications_by",
        """
        ALTER TABLE verifications ADD COLUMN run_by TEXT;
        ALTER TABLE verifications ADD COLUMN tool_version TEXT;
        """,
    ),
    (
        # A random name for each inventory run: a plan names the one it was made from, which
        # another state's run of the same number (a same-named site) is not. NULL: a run
        # listed before this was kept.
        "inventory token",
        """
        ALTER TABLE inventory_runs ADD COLUMN token TEXT;
        UPDATE inventory_runs SET token = lower(hex(randomblob(8))) WHERE token IS NULL;
        """,
    ),
    (
        # `status --failed` lists the copies a verification found wrong too (pending, to be
        # copied again): a script reading its lines saw none of them.
        "transfers not copied, found wrong",
        """
        DROP INDEX transfers_not_copied;
        CREATE INDEX transfers_not_copied ON transfers (plan, phase, container, key)
        WHERE NOT_COPIED;
        """.replace("NOT_COPIED", _NOT_COPIED_STATES),
    ),
    (
        # How many ways a plan's bulk waves split its objects (a key hash modulo that),
        # from the first wave a run took: a plan made again keeps it, and a wave of another
        # split is refused (objects of waves not run fell to no wave: a walkthrough).
        "plan waves",
        """
        CREATE TABLE plan_waves (
            plan TEXT PRIMARY KEY,
            waves INTEGER NOT NULL
        ) WITHOUT ROWID;
        """,
    ),
    (
        # The digests `migrate plan` made with this state: approval takes no other (a file
        # whose blocking findings were cut out and its digest computed again was approved
        # and run: a walkthrough; the digest is no seal, anyone can compute it).
        "plans made",
        """
        CREATE TABLE plans_made (
            plan TEXT NOT NULL,
            digest TEXT NOT NULL,
            made_at TEXT NOT NULL,
            PRIMARY KEY (plan, digest)
        ) WITHOUT ROWID;
        """,
    ),
    (
        # Every `plan approve` as it was made: approvals holds each digest's standing
        # approval only (approving an older version again replaced its first record, and a
        # second approver of the same digest was on no record: an auditor lost both).
        # Those recorded before this was kept are their standing approvals.
        "approval history",
        """
        CREATE TABLE approval_events (
            plan TEXT NOT NULL,
            digest TEXT NOT NULL,
            approved_by TEXT NOT NULL,
            approved_at TEXT NOT NULL,
            path TEXT NOT NULL,
            took_effect INTEGER NOT NULL
        );
        CREATE INDEX approval_events_plan ON approval_events (plan);
        INSERT INTO approval_events (plan, digest, approved_by, approved_at, path, took_effect)
        SELECT plan, digest, approved_by, approved_at, path, 1 FROM approvals ORDER BY rowid;
        """,
    ),
]


# The end of the reason of a transfer `removed` whose source object is gone while its
# destination key holds an object this plan cannot prove it wrote: left there, not removed.
BY_HAND = "remove it by hand"
# Its reason once a verification found that destination key empty (removed by hand).
LEFT_GONE = (
    "deleted at the source; what its destination key held is gone (a verification found it empty)"
)


class InventoryRow(NamedTuple):
    """One listed object as the inventory stores it: a named tuple, in the column order of
    the `objects` table, because an inventory builds one per listed object and a tuple is
    the cheapest typed row to build and to hand to SQLite."""

    container: str
    key: str
    dataset: str
    size: int
    etag: str | None
    last_modified: str | None
    checksums: str | None  # JSON object algorithm -> hex, or None
    storage_class: str | None
    archived: bool
    version_id: str | None
    content_type: str | None
    metadata: str | None  # JSON object, or None when the listing does not carry metadata
    flags: int
    headers: str | None  # JSON object of `carried_headers`, None as metadata


@dataclass(frozen=True, slots=True)
class RemovalRow:
    """A copy removed at the destination by --delete-removed (its source object deleted)."""

    phase: str  # the phase whose copy it was
    container: str
    key: str
    destination_bucket: str
    destination_key: str
    at: str
    already_gone: bool  # not there when --delete-removed came to it: not removed by it


@dataclass(frozen=True, slots=True)
class ListingState:
    marker: str | None
    done: bool


@dataclass(frozen=True, slots=True)
class DatasetCounts:
    dataset: str
    container: str
    objects: int
    bytes: int
    size_classes: tuple[tuple[str, int], ...]
    tiers: tuple[tuple[str, int], ...]
    flags: tuple[tuple[int, int], ...]  # flag bit -> objects having it


@dataclass(frozen=True, slots=True)
class RunChanges:
    run_id: int
    first: bool  # the site's first inventory: everything is new
    added: int
    changed: int
    deleted: int
    # Objects of containers the site no longer lists (a whole-site inventory): left out of
    # the current inventory, and not deleted at the source (their `deleted_in` is -run).
    unlisted: int = 0
    unlisted_containers: tuple[str, ...] = ()


# The reason of a transfer not copied because another object is at its destination key.
CONFLICT = "conflict: "
# A transfer as a `PhaseCandidate`, its sha256/md5 those of an earlier copy.
_CANDIDATE_COLUMNS = (
    "container, key, dataset, size, source_etag, source_checksums, destination_bucket, "
    "destination_key, state, sha256, md5"
)
# A transfer still to write, an upload under way included: the upload is this plan's, but
# what is under its key may have been written by another since the upload began.
_WRITABLE = "state IN ('pending', 'in_progress', 'failed')"
# One to write into bucket ? for phase ? of plan ?.
_TO_WRITE = f"plan=? AND destination_bucket=? AND phase=? AND {_WRITABLE}"

_TRANSFER_COLUMNS = (
    "container, key, phase, dataset, size, source_etag, source_version, source_checksums, "
    "destination_bucket, destination_key, state, upload_id, part_size, destination_seen, "
    "overwrote IS NOT NULL"
)


@dataclass(frozen=True, slots=True)
class TransferRow:
    container: str
    key: str
    phase: str
    dataset: str
    size: int
    source_etag: str | None
    source_version: str | None
    source_checksums: str | None
    destination_bucket: str
    destination_key: str
    state: str
    upload_id: str | None
    part_size: int | None
    # What the conflict check found under the destination key (see the migration).
    destination_seen: str | None = None
    # --overwrite let its copy replace another's object (see the `overwrote` migration).
    overwriting: bool = False


@dataclass(frozen=True, slots=True)
class PhaseCounts:
    phase: str
    state: str
    objects: int
    bytes: int


@dataclass(frozen=True, slots=True)
class PhaseState:
    resolved_at: str | None
    started_at: str | None
    finished_at: str | None
    verified_at: str | None
    forced_reason: str | None


@dataclass(frozen=True, slots=True)
class DeletedRow:
    container: str
    key: str
    destination_bucket: str
    destination_key: str
    size: int
    sha256: str | None = None  # of the bytes this plan wrote there
    destination_etag: str | None = None  # the store's ETag of that write


@dataclass(frozen=True, slots=True)
class DatasetTotal:
    dataset: str
    objects: int
    bytes: int


@dataclass(frozen=True, slots=True)
class RouteUse:
    """One host contacted during a plan's runs: the route attestation."""

    host: str
    scheme: str
    requests: int
    bytes_sent: int
    first_seen: str
    last_seen: str


@dataclass(frozen=True, slots=True)
class SiteRouteUse:
    """One host contacted for a site by a command that reads it outside a plan's runs
    (inventory, sites check, plan), summed over every time that command ran."""

    site: str
    command: str
    route: RouteUse


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# A group of small objects' records is committed at this many statements (three an
# object: started, done, its parts cleared: 256 objects) or this age.
GROUP_STATEMENTS = 768
GROUP_SECONDS = 0.5
# How long a write waits for another process's write lock before giving up (SQLite's own
# default is 5 s; a run's grouped commit or an inventory page may hold it a moment).
BUSY_SECONDS = 30.0

_Statement = tuple[str, tuple[object, ...]]


class _StateLock:
    """The connection's lock. Entering it first commits the grouped records, so every
    reader and every other writer sees the ledger as if each had been committed at once."""

    def __init__(self, flush: Callable[[], None]) -> None:
        self.held = threading.RLock()  # taken without committing: to add to the group
        self._flush = flush

    def __enter__(self) -> None:
        self.held.acquire()
        try:
            self._flush()
        except BaseException:
            self.held.release()
            raise

    def __exit__(self, *exc: object) -> None:
        self.held.release()


# SQLite's answers that say the file itself is wrong (damaged, not a database, or a
# database of another shape: "table approvals already exists", "no such table"), not the
# place it is in. Busy and locked (another process) are neither: they are raised as they are.
_NOT_OURS = ("SQLITE_NOTADB", "SQLITE_CORRUPT", "SQLITE_ERROR", "SQLITE_CONSTRAINT")
_IN_USE = ("SQLITE_BUSY", "SQLITE_LOCKED")
_UNWRITABLE = ("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_READONLY")


class _NotOurSchema(sqlite3.DatabaseError):
    """The state lacks a table, column, index or trigger this version's migrations make."""

    sqlite_errorname = "SQLITE_ERROR"


@cache
def _expected_schema() -> frozenset[tuple[str, str, str]]:
    """(type, name, column) of everything the migrations make, column "" but for tables:
    read from an in-memory database they are run on, once per process."""
    db = sqlite3.connect(":memory:", isolation_level=None)
    try:
        _create_migrations_table(db)
        _run_migrations(db, set())
        return _schema_of(db)
    finally:
        db.close()


def _schema_of(db: sqlite3.Connection) -> frozenset[tuple[str, str, str]]:
    rows = db.execute(
        "SELECT m.type, m.name, COALESCE(c.name, '') FROM sqlite_master m "
        "LEFT JOIN pragma_table_info(m.name) c ON m.type = 'table' "
        "WHERE m.type IN ('table', 'index', 'trigger') AND m.name NOT LIKE 'sqlite_%'"
    ).fetchall()
    return frozenset((str(t), str(n), str(c)) for t, n, c in rows)


def _run_migrations(db: sqlite3.Connection, applied: set[int]) -> None:
    for version, (name, sql) in enumerate(_MIGRATIONS, start=1):
        if version in applied:
            continue
        statement = ""
        for piece in sql.split(";"):  # a trigger's body has `;` of its own
            statement += piece + ";"
            if sqlite3.complete_statement(statement):
                if statement.strip().strip(";"):
                    db.execute(statement)
                statement = ""
        if statement.strip().strip(";"):  # never recorded as applied, half run
            raise RuntimeError(f"migration {name!r} ends in an unfinished statement")
        db.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", (version, name, _now()))


def _after(plan: Plan, phase: str) -> list[str]:
    """The phases that require `phase`, directly or through others."""
    found: list[str] = []
    todo = [phase]
    while todo:
        name = todo.pop()
        for p in plan.phases:
            if name in p.requires and p.name not in found:
                found.append(p.name)
                todo.append(p.name)
    return found


def _check_current(db: sqlite3.Connection, site: str, run_id: int) -> None:
    """Refuse the pages of an inventory run abandoned, or overtaken by a newer run of the
    same site over keys it lists too: its older listing would write over the newer's
    `last_seen`, and one of the two would then record the other's objects deleted (which
    a delta's --delete-removed acts on)."""
    newer = _newer_run(db, run_id)
    (abandoned,) = db.execute(
        "SELECT abandoned_at FROM inventory_runs WHERE id = ?", (run_id,)
    ).fetchone() or (None,)
    if newer is not None or abandoned is not None:
        raise InventorySuperseded(
            f"site {site}: another listing of it started while this one ran"
            + (f" (run #{newer})" if newer is not None else "")
            + ": this one stops, the newer one's is kept",
            hint="run one inventory of a site at a time; a delta or cutover re-lists the "
            "source itself",
        )


def _newer_run(db: sqlite3.Connection, run_id: int) -> int | None:
    """A run of the same site started after `run_id` over keys it lists too (one prefix
    holds the other), if any."""
    row = db.execute(
        "SELECT r.id FROM inventory_runs AS me JOIN inventory_runs AS r ON r.site = me.site "
        "AND r.id > me.id AND (substr(r.prefix, 1, length(me.prefix)) = me.prefix "
        "OR substr(me.prefix, 1, length(r.prefix)) = r.prefix) "
        "WHERE me.id = ? ORDER BY r.id LIMIT 1",
        (run_id,),
    ).fetchone()
    return None if row is None else int(row[0])


def _create_migrations_table(db: sqlite3.Connection) -> None:
    db.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """The state opened for reading alone. A write-ahead log left beside it holds commits
    the file lacks: then SQLite must read it (and its index, which it may have to create,
    so this can fail where nothing may be written). With none, the file is the whole
    state, read as it stands ("immutable": nothing to create)."""
    if not path.is_file():
        raise sqlite3.OperationalError("unable to open database file")
    wal = path.with_name(path.name + "-wal")
    whole = not (wal.exists() and wal.stat().st_size > 0)
    uri = path.resolve().as_uri() + "?mode=ro" + ("&immutable=1" if whole else "")
    return sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)


def refuse_decommission(plan: Plan, phase: Phase) -> None:
    """A decommission phase is planned, never run: `migrate run` only copies (its dry run
    says so too, rather than what it would copy)."""
    if phase.kind.value == "decommission":
        from migrate.errors import PlanError

        raise PlanError(
            f"plan {plan.name}: phase {phase.name} deletes at the source; "
            "`migrate run` only copies",
            hint="decommissioning is not implemented in this version",
        )


class Ledger:
    def __init__(self, state_dir: Path, *, read_only: bool = False) -> None:
        """`read_only`: a state this process may not write (a copy handed to an auditor):
        read as it is, never upgraded; writing fails. See `Ledger.for_reading`."""
        self.path = state_dir / STATE_FILE
        self._read_only = read_only
        self._identity: tuple[int, int] | None = None  # read-only: not written, not checked
        try:
            if self.path.is_file() and self.path.stat().st_size == 0:
                # SQLite takes an empty file for a new state: one truncated to nothing
                # would be read as a state holding nothing (a walkthrough).
                raise _NotOurSchema("the file is empty: truncated?")
            if read_only:
                self._db = _connect_read_only(self.path)
            else:
                state_dir.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_SECONDS
                )
                # The first write: fails where read-only.
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute("PRAGMA foreign_keys=ON")
            # The file this connection writes: one removed or replaced meanwhile takes
            # every record with it (see `check_in_place`).
            opened = os.stat(self.path)
            self._identity = (opened.st_dev, opened.st_ino)
        except (OSError, sqlite3.Error) as exc:  # unwritable, or not a state file at all
            if hasattr(self, "_db"):
                self._db.close()
            raise self._open_error(exc) from None
        self._depth = 0
        self._group: list[_Statement] = []
        self._group_timer: threading.Timer | None = None
        self._closed = False
        # Uploads a phase's resolution took from transfers it refreshed: see
        # `take_dropped_uploads`.
        self._dropped_uploads: list[tuple[str, str, str]] = []
        # Executor threads share this connection: one transaction at a time.
        self._lock = _StateLock(self._commit_group)
        try:
            self._migrate()
        except sqlite3.Error as exc:
            self._closed = True
            self._db.close()
            raise self._open_error(exc) from None
        except BaseException:
            self._closed = True
            self._db.close()
            raise

    def check_in_place(self) -> None:
        """StateUnwritable when the state file this connection writes is no longer the one
        at its path (the state directory removed, or the file replaced, while a command
        worked): what it recorded went with the old file, though every write succeeded."""
        if self._identity is None:
            return
        try:
            now = os.stat(self.path)
            there = (now.st_dev, now.st_ino) == self._identity
        except OSError:
            there = False
        if not there:
            raise StateUnwritable(
                f"the state file {self.path} was removed or replaced while this command "
                "worked: what it recorded went with the old file",
                hint="restore the state directory from a backup if there is one; else the "
                "move starts over from a new state (inventory, plan approve, run)",
            )

    @classmethod
    def for_reading(cls, state_dir: Path) -> Ledger:
        """For the commands that only read (status, report): a state that exists but may
        not be written here is read as it is, instead of refused. One that does not exist
        is refused, not made empty (a walkthrough: a deleted state read as one that held
        nothing of the plan, with a hint about another sites file)."""
        path = state_dir / STATE_FILE
        if state_dir.exists() and not state_dir.is_dir():
            raise ConfigError(
                f"state directory {state_dir} is a file, not a directory",
                hint="set state_dir in the sites file to the directory the state was kept in",
            )
        if not path.exists():
            raise ConfigError(
                f"no state file at {path}: nothing was inventoried, approved or run with "
                "this state directory",
                hint="name the sites file the plan was made with (--sites, or MIGRATE_SITES), "
                "or restore the state directory from a backup",
            )
        writable = os.access(path, os.W_OK) and os.access(state_dir, os.W_OK)
        return cls(state_dir, read_only=path.is_file() and not writable)

    def _open_error(self, exc: OSError | sqlite3.Error) -> Exception:
        """The one line for a state that cannot be opened: the file (damaged, or another
        tool's), the place (unwritable), or another process holding its write lock."""
        name = getattr(exc, "sqlite_errorname", "")
        if name.startswith(_IN_USE):
            return self._busy(exc)
        if name.startswith("SQLITE_READONLY"):
            return ConfigError(
                f"state file {self.path} cannot be written here ({exc})",
                hint="make it writable (its permissions, an immutable flag, a read-only "
                "mount), or point state_dir at a copy you may write",
            )
        if name.startswith(_NOT_OURS):
            return ConfigError(
                f"state file {self.path} is damaged or not migrate's ({exc})",
                hint="move it aside (migrate then starts a new, empty state) or restore it "
                "from a backup",
            )
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return ConfigError(
            f"state directory {self.path.parent}: the state cannot be opened there ({why})",
            hint="set state_dir in the sites file to a directory you can write to",
        )

    def check_integrity(self) -> None:
        """SQLite's own check of the whole file: a state damaged in its middle reads well
        until a query reaches the damaged pages (an audit: `report` failed there with an
        unexpected error, `status` showed figures as if nothing were wrong). Raises the
        one line naming the file."""
        with self._lock:
            try:
                rows = self._db.execute("PRAGMA quick_check").fetchall()
            except sqlite3.DatabaseError as exc:
                raise self._damaged(str(exc)) from exc
        if rows != [("ok",)]:
            raise self._damaged(str(rows[0][0]))

    def _damaged(self, detail: str) -> ConfigError:
        return ConfigError(
            f"state file {self.path} is damaged ({detail[:200]})",
            hint="restore it from a backup: what it records of the move cannot be trusted as it is",
        )

    def close(self, *, keep_group_errors: bool = True) -> None:
        """Commits the last group, then closes. `keep_group_errors=False` (leaving on an
        error already): a failing commit does not replace that error; its objects are
        copied again by the next run."""
        with self._lock.held:
            try:
                self._commit_group()
            except (sqlite3.Error, StateUnwritable, StateBusy):
                if keep_group_errors:
                    raise
            finally:
                self._closed = True
                if self._group_timer is not None:
                    self._group_timer.cancel()
                self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(keep_group_errors=exc_type is None)

    @contextmanager
    def atomic(self) -> Iterator[sqlite3.Connection]:
        """One transaction; nested calls become savepoints. Rolls back on any exception."""
        with self._lock:
            yield from self._transaction()

    def _transaction(self) -> Iterator[sqlite3.Connection]:
        name = f"sp{self._depth}"
        try:
            self._db.execute("BEGIN IMMEDIATE" if self._depth == 0 else f"SAVEPOINT {name}")
        except sqlite3.Error as exc:
            self._raise_unwritable(exc)
            raise
        self._depth += 1
        try:
            yield self._db
        except BaseException as exc:
            self._depth -= 1
            # SQLite may have rolled back already (a full disk): nothing is left to undo.
            if self._db.in_transaction:
                if self._depth == 0:
                    self._db.execute("ROLLBACK")
                else:
                    self._db.execute(f"ROLLBACK TO {name}")
                    self._db.execute(f"RELEASE {name}")
            self._raise_unwritable(exc)
            raise
        self._depth -= 1
        try:
            self._db.execute("COMMIT" if self._depth == 0 else f"RELEASE {name}")
        except sqlite3.Error as exc:
            if self._depth == 0 and self._db.in_transaction:
                self._db.execute("ROLLBACK")
            self._raise_unwritable(exc)
            raise

    def _busy(self, exc: BaseException) -> StateBusy:
        return StateBusy(
            f"state file {self.path} is held by another process's write for longer than "
            f"{BUSY_SECONDS:g} s ({exc})",
            hint="wait for it to end (`migrate status` names a run under way), then run the "
            "same command again",
        )

    def _raise_unwritable(self, exc: BaseException) -> None:
        """A state that cannot be written any more (its disk full, an I/O error, made
        read-only) or whose write lock another process holds too long: one line naming it
        and what to do. Any other error: nothing raised here."""
        name = getattr(exc, "sqlite_errorname", "")
        if name.startswith(_IN_USE):
            raise self._busy(exc) from exc
        if name.startswith("SQLITE_READONLY"):
            raise StateUnwritable(
                f"state file {self.path} cannot be written ({exc}): nothing more is recorded",
                hint="make it writable again (its permissions, an immutable flag, a read-only "
                "mount), then run the same command again: it resumes",
            ) from exc
        if not name.startswith(_UNWRITABLE):
            return
        raise StateUnwritable(
            f"state file {self.path} cannot be written ({exc}): nothing more is recorded",
            hint="free space on its disk (or move state_dir), then run the same command "
            "again: it resumes; an object copied whose record was not written is copied again",
        ) from exc

    _held_transaction = contextmanager(_transaction)

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Every read inside sees the ledger as the first one did (one read transaction:
        what other processes commit meanwhile is not seen), so that a report's totals,
        phases and manifest describe one state. Other threads of this process wait for it;
        inside a transaction already, it adds nothing."""
        with self._lock:
            if self._depth:
                yield
                return
            self._db.execute("BEGIN DEFERRED")
            self._depth += 1
            try:
                yield
            except BaseException:
                # The block's error is the one to say: ending the read must not replace it
                # (a damaged file failed the COMMIT too, and its named line was lost).
                self._depth -= 1
                with suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise
            self._depth -= 1
            self._db.execute("COMMIT")

    def _commit_group(self) -> None:
        """The grouped records, in one transaction (the lock is held). If it fails they
        stay grouped, ahead of any added since, and the error is raised."""
        if not self._group or self._depth or self._closed:
            return
        statements, self._group = self._group, []
        if self._group_timer is not None:
            self._group_timer.cancel()
            self._group_timer = None
        try:
            with self._held_transaction() as db:
                for sql, args in statements:
                    db.execute(sql, args)
        except BaseException:
            self._group[:0] = statements
            raise

    def _commit_group_late(self) -> None:
        """The timer's commit: its errors are met again by the next call (the records
        stay grouped), so none is raised in the timer's thread."""
        with suppress(sqlite3.Error, StateUnwritable, StateBusy), self._lock:
            pass

    def _write(self, statements: list[_Statement], group: bool) -> None:
        if not group:
            with self.atomic() as db:
                for sql, args in statements:
                    db.execute(sql, args)
            return
        with self._lock.held:
            if self._closed:
                raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
            self._group.extend(statements)
            if len(self._group) >= GROUP_STATEMENTS:
                self._commit_group()
            elif self._group_timer is None:
                self._group_timer = threading.Timer(GROUP_SECONDS, self._commit_group_late)
                self._group_timer.daemon = True
                self._group_timer.start()

    def _migrate(self) -> None:
        """Apply the migrations not yet applied, then check that the state has every
        table (with its columns), index and trigger they make: a file of another tool, or
        one a table was dropped from, is refused at open (`_NotOurSchema`), not met later
        by some query."""
        if self._read_only:
            self._check_read_only()
            return
        if self._up_to_date():
            # Nothing to apply: no write lock taken, so that status, report and plan show
            # read while another process holds it (a walkthrough: they failed after 5 s).
            return
        with self.atomic() as db:
            tables = {
                str(name)
                for (name,) in db.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' "
                    "AND name NOT LIKE 'sqlite_%'"
                )
            }
            if tables and "schema_migrations" not in tables:
                # Another tool's database: migrate's tables are not written beside its own.
                raise _NotOurSchema(f"tables of another tool ({', '.join(sorted(tables)[:3])})")
            _create_migrations_table(db)
            applied = {row[0] for row in db.execute("SELECT version FROM schema_migrations")}
            _run_migrations(db, applied)
            have = _schema_of(db)
        self._check_schema(have)

    def _up_to_date(self) -> bool:
        """Whether every migration is applied and the schema is whole, read without a
        transaction (False on any doubt: the write path then decides)."""
        try:
            have = _schema_of(self._db)
            if not any(kind == "table" and name == "schema_migrations" for kind, name, _ in have):
                return False
            applied = {int(v) for (v,) in self._db.execute("SELECT version FROM schema_migrations")}
        except sqlite3.Error:
            return False
        return set(range(1, len(_MIGRATIONS) + 1)) <= applied and not (_expected_schema() - have)

    def _check_read_only(self) -> None:
        """A state that may not be written is read only if it needs no migration."""
        have = _schema_of(self._db)
        if not any(kind == "table" and name == "schema_migrations" for kind, name, _ in have):
            raise _NotOurSchema("no table schema_migrations")
        applied = {int(v) for (v,) in self._db.execute("SELECT version FROM schema_migrations")}
        if not set(range(1, len(_MIGRATIONS) + 1)) <= applied:
            raise ConfigError(
                f"state file {self.path} was written by an earlier version of migrate and "
                "cannot be upgraded here (it may not be written)",
                hint="run `migrate status PLAN` once where the state can be written",
            )
        self._check_schema(have)

    def _check_schema(self, have: frozenset[tuple[str, str, str]]) -> None:
        missing = _expected_schema() - have
        if missing:  # said by its table first: "no table transfers", not its 20 columns
            tables = {name for kind, name, _ in have if kind == "table"}
            kind, name, column = min(missing, key=lambda m: (m[0] != "table", m[1] in tables, m))
            what = f"column {name}.{column}" if name in tables and column else f"{kind} {name}"
            raise _NotOurSchema(f"no {what}")

    # -- inventory -------------------------------------------------------------------------

    def open_inventory_run(
        self,
        site: str,
        prefix: str,
        *,
        resume: bool = True,
        claim: Callable[[int], bool] = lambda run_id: True,
    ) -> tuple[int, bool]:
        """The unfinished run of this site and prefix (resume), else a new one. With
        `resume=False` always a new one, and the unfinished ones are abandoned: a resumed
        run skips what it listed before, however long ago. `claim(run_id)` takes the run
        for this process (False: another process is listing it now; it is superseded, as
        by `resume=False`, and stops at its next page). Returns (run id, resumed)."""
        with self.atomic() as db:
            unfinished = (
                "FROM inventory_runs WHERE site=? AND prefix=? AND finished_at IS NULL "
                "AND abandoned_at IS NULL"
            )
            if not resume:
                db.execute(
                    f"UPDATE inventory_runs SET abandoned_at=? "
                    f"WHERE id IN (SELECT id {unfinished})",
                    (_now(), site, prefix),
                )
            row = db.execute(
                f"SELECT id {unfinished} ORDER BY id DESC LIMIT 1", (site, prefix)
            ).fetchone()
            if row and _newer_run(db, int(row[0])) is None and claim(int(row[0])):
                return int(row[0]), True
            # A newer listing covered its keys since (resumed, it would be refused), or a
            # process is listing it now.
            if row:
                db.execute("UPDATE inventory_runs SET abandoned_at=? WHERE id=?", (_now(), row[0]))
            cur = db.execute(
                "INSERT INTO inventory_runs (site, prefix, started_at, token) VALUES (?, ?, ?, ?)",
                (site, prefix, _now(), secrets.token_hex(8)),
            )
            run_id = int(cur.lastrowid or 0)
            claim(run_id)  # a new run: no other process has it
            return run_id, False

    def inventory_run_resumable(self, run_id: int) -> bool:
        """Whether an inventory may resume the run (neither finished nor abandoned)."""
        with self._lock:
            return (
                self._db.execute(
                    "SELECT 1 FROM inventory_runs WHERE id=? AND finished_at IS NULL "
                    "AND abandoned_at IS NULL",
                    (run_id,),
                ).fetchone()
                is not None
            )

    def listing_state(self, run_id: int, container: str) -> ListingState:
        row = self._db.execute(
            "SELECT marker, done FROM listings WHERE run_id=? AND container=?",
            (run_id, container),
        ).fetchone()
        if not row:
            return ListingState(None, False)
        marker = row[0]
        if isinstance(marker, bytes):  # a key that is not UTF-8 (see record_listing_page)
            marker = marker.decode("utf-8", "surrogateescape")
        return ListingState(marker=marker, done=bool(row[1]))

    def whole_container(self, site: str, container: str) -> bool | None:
        """Whether the container's objects are one dataset (True) or one a top-level prefix
        (False); None: not decided yet (its first listing is under way, or to come)."""
        with self._lock:
            row = self._db.execute(
                "SELECT whole FROM container_datasets WHERE site=? AND container=?",
                (site, container),
            ).fetchone()
        return None if row is None else bool(row[0])

    def source_deleted(self, site: str, container: str, key: str) -> bool:
        """Whether the site's latest inventory found the object deleted."""
        with self._lock:
            row = self._db.execute(
                "SELECT deleted_in FROM objects WHERE site=? AND container=? AND key=?",
                (site, container, key),
            ).fetchone()
        return row is not None and row[0] is not None and int(row[0]) > 0

    def whole_containers(self, site: str) -> set[str]:
        """The site's containers whose objects are one dataset (see `whole_container`)."""
        with self._lock:
            return {
                str(c)
                for (c,) in self._db.execute(
                    "SELECT container FROM container_datasets WHERE site=? AND whole", (site,)
                )
            }

    def datasets_listed(self, site: str, container: str) -> int:
        """How many datasets the container's objects stored so far fall into."""
        with self._lock:
            return int(
                self._db.execute(
                    "SELECT COUNT(DISTINCT dataset) FROM objects WHERE site=? AND container=?",
                    (site, container),
                ).fetchone()[0]
            )

    def decide_datasets(self, site: str, run_id: int, container: str, *, whole: bool) -> None:
        """Record how the container's objects are grouped, for good. `whole`: they become
        one dataset, `<container>/`, those stored already too (one UPDATE, in SQL)."""
        with self.atomic() as db:
            _check_current(db, site, run_id)
            db.execute(
                "INSERT INTO container_datasets (site, container, whole) VALUES (?, ?, ?) "
                "ON CONFLICT (site, container) DO UPDATE SET whole = excluded.whole",
                (site, container, int(whole)),
            )
            if whole:
                dataset = f"{container}/"
                db.execute(
                    "UPDATE objects SET dataset=? WHERE site=? AND container=? AND dataset != ?",
                    (dataset, site, container, dataset),
                )

    def restart_listing(self, run_id: int, container: str) -> None:
        """The container is listed again from its first key at the run's next attempt: its
        marker came from a listing that was not in key order."""
        with self.atomic() as db:
            db.execute(
                "UPDATE listings SET marker = NULL, done = 0 WHERE run_id=? AND container=?",
                (run_id, container),
            )

    def record_listing_page(
        self,
        site: str,
        run_id: int,
        container: str,
        rows: Sequence[InventoryRow],
        done: bool,
        *,
        marker: str | None = None,
    ) -> None:
        """Store one page of a listing and move the resume marker past it, atomically.
        `marker`: the page's last key as listed, when the row's is stored escaped (a key that
        is not UTF-8: `migrate.inventory.escaped_key`); default, the last row's key."""
        with self.atomic() as db:
            _check_current(db, site, run_id)
            db.executemany(
                """
                INSERT INTO objects (container, key, dataset, size, etag, last_modified,
                    checksums, storage_class, archived, version_id, content_type, metadata,
                    flags, headers, site, first_seen, last_seen)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (site, container, key) DO UPDATE SET
                    changed_in = CASE
                        WHEN objects.deleted_in > 0 THEN excluded.last_seen
                        WHEN objects.etag IS NOT excluded.etag OR objects.size != excluded.size
                            OR objects.version_id IS NOT excluded.version_id
                            -- rewritten in place (S3 metadata: the same ETag, a later
                            -- time): delta copies it, so the re-list counts it changed
                            OR julianday(excluded.last_modified)
                                > julianday(objects.last_modified)
                        THEN excluded.last_seen ELSE objects.changed_in END,
                    first_seen = CASE WHEN objects.deleted_in > 0
                        THEN excluded.first_seen ELSE objects.first_seen END,
                    dataset = excluded.dataset, size = excluded.size, etag = excluded.etag,
                    last_modified = excluded.last_modified, checksums = excluded.checksums,
                    storage_class = excluded.storage_class, archived = excluded.archived,
                    version_id = excluded.version_id, content_type = excluded.content_type,
                    metadata = excluded.metadata, flags = excluded.flags,
                    headers = excluded.headers,
                    last_seen = excluded.last_seen, deleted_in = NULL
                """,
                [(*r, site, run_id, run_id) for r in rows],  # archived: a bool is stored as 0/1
            )
            if marker is None and rows:
                marker = rows[-1].key
            resume_at: str | bytes | None = marker
            if marker is not None and not _is_utf8(marker):
                # TEXT cannot hold it: its bytes, as a BLOB, read back by listing_state.
                resume_at = marker.encode("utf-8", "surrogateescape")
            db.execute(
                """
                INSERT INTO listings (run_id, container, marker, done, pages)
                VALUES (?, ?, ?, ?, 1)
                ON CONFLICT (run_id, container) DO UPDATE SET
                    marker = COALESCE(excluded.marker, listings.marker),
                    done = excluded.done, pages = listings.pages + 1
                """,
                (run_id, container, resume_at, int(done)),
            )

    def finish_inventory_run(
        self, site: str, run_id: int, containers: Sequence[str], prefix: str
    ) -> RunChanges:
        """Mark what this run did not see as deleted at the source; return the run's changes.
        A whole-site run (no prefix) also leaves out of the current inventory the objects of
        containers the site no longer lists, marked `deleted_in` -run: not listed, so not
        known deleted (a copy of one is never taken for a deletion's to remove)."""
        unlisted: list[str] = []
        unlisted_objects = 0
        with self.atomic() as db:
            _check_current(db, site, run_id)
            for container in containers:
                db.execute(
                    "UPDATE objects SET deleted_in=? WHERE site=? AND container=? "
                    "AND last_seen < ? AND deleted_in IS NULL AND substr(key, 1, ?) = ?",
                    (run_id, site, container, run_id, len(prefix), prefix),
                )
            if not prefix:
                listed = json.dumps(list(containers))
                outside = "site=? AND deleted_in IS NULL AND container NOT IN " + (
                    "(SELECT value FROM json_each(?))"
                )
                unlisted = [
                    str(c)
                    for (c,) in db.execute(
                        f"SELECT DISTINCT container FROM objects WHERE {outside} "
                        "ORDER BY container LIMIT 20",
                        (site, listed),
                    )
                ]
                if unlisted:
                    unlisted_objects = db.execute(
                        f"UPDATE objects SET deleted_in=? WHERE {outside}",
                        (-run_id, site, listed),
                    ).rowcount
            db.execute("UPDATE inventory_runs SET finished_at=? WHERE id=?", (_now(), run_id))
            first = (
                db.execute(
                    "SELECT COUNT(*) FROM inventory_runs WHERE site=? AND id < ?", (site, run_id)
                ).fetchone()[0]
                == 0
            )
            added, changed, deleted = db.execute(
                """
                SELECT
                    SUM(first_seen = :r AND deleted_in IS NULL),
                    SUM(changed_in = :r AND first_seen != :r AND deleted_in IS NULL),
                    SUM(deleted_in = :r)
                FROM objects WHERE site = :s
                """,
                {"r": run_id, "s": site},
            ).fetchone()
        return RunChanges(
            run_id,
            first,
            added or 0,
            changed or 0,
            deleted or 0,
            unlisted_objects,
            tuple(unlisted),
        )

    def dataset_counts(
        self, site: str, size_classes: Sequence[tuple[str, int]], flag_bits: Sequence[int]
    ) -> list[DatasetCounts]:
        """Per dataset of a site's current inventory: counts by size class, tier and flag.
        Two grouped scans in SQL, so memory does not grow with the number of objects."""
        bounds = [0, *(upper for _, upper in size_classes)]
        class_sums = ", ".join(f"SUM(size >= {lo} AND size < {hi})" for lo, hi in pairwise(bounds))
        flag_sums = ", ".join(f"SUM((flags & {int(bit)}) != 0)" for bit in flag_bits)
        columns = ", ".join(
            c for c in ("dataset, container, COUNT(*), SUM(size)", class_sums, flag_sums) if c
        )
        base = "FROM objects WHERE site=? AND deleted_in IS NULL"
        tiers: dict[str, list[tuple[str, int]]] = {}
        for dataset, tier, n in self._db.execute(
            f"SELECT dataset, storage_class, COUNT(*) {base} "
            "GROUP BY dataset, storage_class ORDER BY dataset, storage_class",
            (site,),
        ):
            tiers.setdefault(dataset, []).append((str(tier or "-"), int(n)))
        out: list[DatasetCounts] = []
        rows = self._db.execute(
            f"SELECT {columns} {base} GROUP BY dataset, container ORDER BY dataset",
            (site,),
        )
        n_classes = len(size_classes)
        for row in rows:
            dataset, container, count, size = row[:4]
            classes = row[4 : 4 + n_classes]
            flags = row[4 + n_classes :]
            out.append(
                DatasetCounts(
                    dataset,
                    container,
                    int(count),
                    int(size or 0),
                    tuple(
                        (label, int(n or 0))
                        for (label, _), n in zip(size_classes, classes, strict=True)
                    ),
                    tuple(tiers.get(dataset, [])),
                    tuple((int(bit), int(n or 0)) for bit, n in zip(flag_bits, flags, strict=True)),
                )
            )
        return out

    def datasets_outside(self, site: str, datasets: Sequence[str]) -> list[DatasetTotal]:
        """The datasets of a site's current inventory that are not in `datasets` (a plan's),
        with their objects and bytes: one grouped scan."""
        # One parameter (a JSON array): one per dataset passed SQLite's variable limit.
        names = json.dumps(list(datasets), ensure_ascii=False)
        with self._lock:
            rows = self._db.execute(
                "SELECT dataset, COUNT(*), SUM(size) FROM objects WHERE site=? "
                "AND deleted_in IS NULL AND dataset NOT IN (SELECT value FROM json_each(?)) "
                "GROUP BY dataset ORDER BY dataset",
                (site, names),
            ).fetchall()
        return [DatasetTotal(str(d), int(n), int(b or 0)) for d, n, b in rows]

    def inventory_objects(self, site: str, container: str | None = None) -> Iterator[InventoryRow]:
        """Stream a site's current inventory in key order (a cursor, not a list)."""
        sql = (
            "SELECT container, key, dataset, size, etag, last_modified, checksums, "
            "storage_class, archived, version_id, content_type, metadata, flags, headers "
            "FROM objects WHERE site=? AND deleted_in IS NULL"
        )
        args: tuple[str, ...] = (site,)
        if container is not None:
            sql += " AND container=?"
            args = (site, container)
        cursor = self._db.execute(sql + " ORDER BY container, key", args)
        for row in cursor:
            yield InventoryRow._make((*row[:8], bool(row[8]), *row[9:]))

    def has_inventory(self, site: str) -> bool:
        return (
            self._db.execute(
                "SELECT 1 FROM inventory_runs WHERE site=? AND finished_at IS NOT NULL LIMIT 1",
                (site,),
            ).fetchone()
            is not None
        )

    # -- transfers -------------------------------------------------------------------------

    def transfers_to_do(
        self,
        plan: str,
        phase: str,
        after: tuple[str, str] | None,
        limit: int,
        *,
        skip_conflicts: bool = False,
    ) -> list[TransferRow]:
        """The phase's objects not yet done (pending, in progress, failed), in key order,
        one batch at a time (keyset pagination: no cursor held across writes); with
        `skip_conflicts`, not those failed for a conflict at the destination."""
        sql = (
            f"SELECT {_TRANSFER_COLUMNS} FROM transfers WHERE plan=? AND phase=? "
            "AND state IN ('pending', 'in_progress', 'failed')"
        )
        if skip_conflicts:
            sql += f" AND (error IS NULL OR error NOT LIKE '{CONFLICT}%')"
        args: list[object] = [plan, phase]
        if after is not None:
            sql += " AND (container, key) > (?, ?)"
            args += list(after)
        sql += " ORDER BY container, key LIMIT ?"
        args.append(limit)
        with self._lock:
            return [TransferRow(*row) for row in self._db.execute(sql, args)]

    def done_parts(
        self, plan: str, container: str, key: str, upload_id: str
    ) -> dict[int, tuple[str, str | None]]:
        """The recorded parts of an upload: part number -> (MD5, the store's ETag)."""
        with self._lock:
            return {
                int(n): (str(md5), etag)
                for n, md5, etag in self._db.execute(
                    "SELECT part_number, md5, etag FROM parts "
                    "WHERE plan=? AND container=? AND key=? AND upload_id=?",
                    (plan, container, key, upload_id),
                )
            }

    def transfer_started(
        self,
        plan: str,
        container: str,
        key: str,
        upload_id: str | None,
        part_size: int | None,
        *,
        group: bool = False,
        attempt: bool = True,
    ) -> None:
        """`group`: committed with other small objects' records (the module's docstring).
        `attempt=False`: the upload of an attempt already counted (its first part)."""
        self._write(
            [
                (
                    "UPDATE transfers SET state='in_progress', upload_id=?, part_size=?, "
                    "attempts=attempts+?, started_at=COALESCE(started_at, ?) "
                    "WHERE plan=? AND container=? AND key=?",
                    (upload_id, part_size, int(attempt), _now(), plan, container, key),
                )
            ],
            group,
        )

    def part_done(
        self,
        plan: str,
        container: str,
        key: str,
        upload_id: str,
        part_number: int,
        size: int,
        md5: str,
        etag: str | None,
    ) -> None:
        with self.atomic() as db:
            db.execute(
                "INSERT OR REPLACE INTO parts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (plan, container, key, upload_id, part_number, size, md5, etag),
            )

    def transfer_done(
        self,
        plan: str,
        container: str,
        key: str,
        *,
        sha256: str,
        md5: str,
        destination_etag: str | None,
        source_proof: str,
        retries: int,
        group: bool = False,
        overwriting: bool = False,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """The only way an object becomes done: with the checksums that prove it.
        `tags`: those the copy set on the object, for verify to compare.
        `group`: committed with other small objects' records (the module's docstring).
        `overwriting` (the row's): a copy --overwrite let replace another's object leaves
        its record (`overwrites`)."""
        kept: list[_Statement] = []
        if overwriting:
            kept.append(
                (
                    "INSERT INTO overwrites SELECT plan, phase, container, key, overwrote, ? "
                    "FROM transfers WHERE plan=? AND container=? AND key=? "
                    "AND overwrote IS NOT NULL",
                    (_now(), plan, container, key),
                )
            )
        self._write(
            [
                *kept,
                (
                    "UPDATE transfers SET state='done', sha256=?, md5=?, destination_etag=?, "
                    "error=?, retries=retries+?, finished_at=?, bytes_disputed=0, "
                    "overwrote=NULL, tags=? "
                    "WHERE plan=? AND container=? AND key=?",
                    (
                        sha256,
                        md5,
                        destination_etag,
                        f"source-proof:{source_proof}",
                        retries,
                        _now(),
                        json.dumps(dict(tags), sort_keys=True) if tags else None,
                        plan,
                        container,
                        key,
                    ),
                ),
                (
                    "DELETE FROM parts WHERE plan=? AND container=? AND key=?",
                    (plan, container, key),
                ),
            ],
            group,
        )

    def transfer_not_done(
        self,
        plan: str,
        container: str,
        key: str,
        state: str,
        reason: str,
        retries: int,
        *,
        keep_upload: bool = False,
    ) -> None:
        """failed (with its reason) or changed (left for the delta phase)."""
        with self.atomic() as db:
            db.execute(
                "UPDATE transfers SET state=?, error=?, retries=retries+?, finished_at=?, "
                "upload_id=CASE WHEN ? THEN upload_id ELSE NULL END "
                "WHERE plan=? AND container=? AND key=?",
                (state, reason, retries, _now(), int(keep_upload), plan, container, key),
            )
            if not keep_upload:
                db.execute(
                    "DELETE FROM parts WHERE plan=? AND container=? AND key=?",
                    (plan, container, key),
                )

    def to_write_at(
        self,
        plan: str,
        phase: str,
        bucket: str,
        keys: Sequence[str] | None = None,
        *,
        portable: bool | None = None,
    ) -> Iterator[PhaseCandidate]:
        """The phase's transfers to do, whose destination is one of `keys` in `bucket`
        (None: any key; `portable` False: only keys a store keeping files renames, True:
        only the others), in
        destination key order, but those the conflict check has left as conflicts since it
        cleared them. `previous_sha256` is set when this plan copied it before; `uploading`
        when an upload of it is under way."""
        # Its source is there (else the run settled it first): not gone.
        sql = (
            f"SELECT {_CANDIDATE_COLUMNS}, upload_id IS NOT NULL, 0 "
            f"FROM transfers WHERE {_TO_WRITE} "
            f"AND (error IS NULL OR error NOT LIKE '{CONFLICT}%')"
        )
        args: list[object] = [plan, bucket, phase]
        if portable is not None:
            sql += f" AND {'' if portable else 'NOT '}migrate_portable(destination_key)"
        if keys is not None:
            if not keys:
                return
            sql += f" AND destination_key IN ({', '.join('?' for _ in keys)})"
            args += list(keys)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY destination_key", args).fetchall()
        for r in rows:
            yield _fixed_candidate(r)

    def to_write_count(self, plan: str, phase: str, bucket: str) -> int:
        with self._lock:
            return int(
                self._db.execute(
                    f"SELECT COUNT(*) FROM transfers WHERE {_TO_WRITE}",
                    (plan, bucket, phase),
                ).fetchone()[0]
            )

    def to_write_runs(self, plan: str, phase: str, bucket: str, gap: int) -> list[tuple[str, str]]:
        """The phase's destination keys to write in `bucket` (as `to_write_at`), as runs in
        key order: (first, last) of each, a run ending where more than `gap` of the plan's
        other objects in the bucket come before the next key to write. A listing of the
        bucket restarted at each run skips what the plan copied already (a resumed phase)."""
        where = "plan = :plan AND destination_bucket = :bucket"
        written = f"phase = :phase AND {_WRITABLE}"
        args = {"plan": plan, "bucket": bucket, "phase": phase, "gap": gap}
        with self._lock:
            starts = self._db.execute(
                f"WITH r AS (SELECT destination_key AS k, ({written}) AS w, "
                f"ROW_NUMBER() OVER (ORDER BY destination_key) AS n FROM transfers WHERE {where}), "
                "t AS (SELECT k, n, n - LAG(n) OVER (ORDER BY n) AS gap, "
                "LAG(k) OVER (ORDER BY n) AS prev FROM r WHERE w) "
                "SELECT k, prev FROM t WHERE gap IS NULL OR gap - 1 > :gap ORDER BY n",
                args,
            ).fetchall()
            last = self._db.execute(
                f"SELECT MAX(destination_key) FROM transfers WHERE {where} AND {written}", args
            ).fetchone()[0]
        if not starts:
            return []
        ends = [prev for _, prev in starts[1:]] + [last]
        return [(str(k), str(end)) for (k, _), end in zip(starts, ends, strict=True)]

    def gone_at_source(self, plan: Plan, phase: str, limit: int) -> list[PhaseCandidate]:
        """The phase's transfers still to copy (no upload under way) whose source object
        the latest inventory no longer has: a copy would fail at every run. The caller
        settles each (`settle_gone`), so they leave this list."""
        params: dict[str, object] = {"plan": plan.name, "site": plan.source, "phase": phase}
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_CANDIDATE_COLUMNS} FROM transfers AS t WHERE {_GONE} "
                f"LIMIT {int(limit)}",  # each is settled: no order needed
                params,
            ).fetchall()
        return [PhaseCandidate(*r) for r in rows]

    def settle_gone(
        self,
        plan: str,
        container: str,
        key: str,
        *,
        at_destination: ObjectInfo | None,
        earlier_copy: bool,
    ) -> str:
        """Settle a transfer whose source object is gone, from what its destination key
        holds; returns the new state. Nothing there and never copied: the transfer is
        dropped (nothing to copy, nothing to keep). This plan's earlier copy there: back to
        `done` as that copy (its size and ETag as they are), so it is reported deleted at
        the source and removed only with --delete-removed. Nothing there but copied before:
        `removed`. Something there this plan cannot prove it wrote: `removed`, the reason
        naming it, so verify reports it as unexpected and nothing deletes it unasked."""
        with self.atomic() as db:
            where = "WHERE plan=? AND container=? AND key=?"
            if at_destination is None and not earlier_copy:
                db.execute(f"DELETE FROM transfers {where}", (plan, container, key))
                return "dropped"
            disputed = db.execute(
                f"SELECT bytes_disputed FROM transfers {where}", (plan, container, key)
            ).fetchone()
            if disputed and disputed[0] and at_destination is not None:
                # Verify found these bytes wrong and the source is gone before the copy that
                # would mend them: the manifest must not call them a proven copy.
                db.execute(
                    f"UPDATE transfers SET state='removed', error=?, finished_at=? {where}",
                    (
                        "deleted at the source after verify found its copy's bytes wrong; the "
                        f"object at the destination key is not a proven copy: {BY_HAND}",
                        _now(),
                        plan,
                        container,
                        key,
                    ),
                )
                return "removed"
            if at_destination is not None and earlier_copy:
                db.execute(
                    # The source is gone: nothing proves the copy against it any more.
                    "UPDATE transfers SET state='done', size=?, destination_etag=?, "
                    f"error='source-proof:none', source_etag=NULL, finished_at=? {where}",
                    (at_destination.size, at_destination.etag, _now(), plan, container, key),
                )
                return "done"
            why = (
                "deleted at the source; its copy is no longer at the destination"
                if at_destination is None
                else "deleted at the source before its copy was recorded; the object at the "
                f"destination key is not proven this plan's: {BY_HAND} if it is"
            )
            db.execute(
                f"UPDATE transfers SET state='removed', error=?, finished_at=? {where}",
                (why, _now(), plan, container, key),
            )
            return "removed"

    def clear_conflicts(self, plan: str, phase: str) -> None:
        """The phase's conflicts are checked again: back to pending; and what an earlier
        check found under each key is forgotten (`destination_seen`)."""
        with self.atomic() as db:
            db.execute(
                "UPDATE transfers SET state='pending', error=NULL WHERE plan=? AND phase=? "
                f"AND state='failed' AND error LIKE '{CONFLICT}%'",
                (plan, phase),
            )
            db.execute(
                "UPDATE transfers SET destination_seen=NULL WHERE plan=? AND phase=? "
                "AND destination_seen IS NOT NULL",
                (plan, phase),
            )
            db.execute(
                f"UPDATE transfers SET overwrote=NULL WHERE plan=? AND phase=? AND {_WRITABLE} "
                "AND overwrote IS NOT NULL",
                (plan, phase),
            )

    def destination_seen(
        self,
        plan: str,
        container: str,
        key: str,
        etag: str | None,
        *,
        overwriting: str | None = None,
    ) -> None:
        """The conflict check found at the transfer's destination key an object it lets
        the copy replace (this plan's, the same bytes, or with `overwriting` another's that
        --overwrite replaces: what it is), of this ETag: the write expects it there.
        Committed with other records in a group (read back through the lock)."""
        self._write(
            [
                (
                    "UPDATE transfers SET destination_seen=?, overwrote=? WHERE plan=? "
                    "AND container=? AND key=?",
                    (etag or "", overwriting, plan, container, key),
                )
            ],
            True,
        )

    def overwritten(
        self, plan: str, phase: str, limit: int
    ) -> tuple[list[tuple[str, str, str]], int]:
        """The copies of `phase` done over an object this plan did not write (--overwrite,
        or one holding the same bytes), with what was there: the first `limit` in key
        order, and how many in all."""
        where = "plan=? AND phase=?"
        with self._lock:
            count = int(
                self._db.execute(
                    f"SELECT COUNT(*) FROM overwrites WHERE {where}", (plan, phase)
                ).fetchone()[0]
            )
            rows = self._db.execute(
                f"SELECT container, key, what FROM overwrites WHERE {where} "
                "ORDER BY container, key, at LIMIT ?",
                (plan, phase, limit),
            ).fetchall()
        return [(str(c), str(k), str(o)) for c, k, o in rows], count

    def upload_of(self, plan: str, bucket: str, key: str) -> str | None:
        """The upload the plan holds for destination `key` and has not finished, if any."""
        with self._lock:
            row = self._db.execute(
                "SELECT upload_id FROM transfers WHERE plan=? AND destination_bucket=? "
                "AND destination_key=? AND upload_id IS NOT NULL AND state != 'done' LIMIT 1",
                (plan, bucket, key),
            ).fetchone()
        return str(row[0]) if row else None

    def is_orphan_upload(self, plan: str, bucket: str, key: str, upload_id: str) -> bool:
        """Whether an unfinished upload found at the destination is one a crash left: the
        plan still has to write `key` (a key whose copy is done is not: an upload under it
        now is another writer's) and holds no record of this upload (its id never reached
        the ledger)."""
        with self._lock:
            return (
                self._db.execute(
                    "SELECT 1 FROM transfers WHERE plan=? AND destination_bucket=? "
                    f"AND destination_key=? AND {_WRITABLE} LIMIT 1",
                    (plan, bucket, key),
                ).fetchone()
                is not None
                and self._db.execute(
                    "SELECT 1 FROM transfers WHERE plan=? AND destination_bucket=? "
                    "AND destination_key=? AND upload_id=? AND state != 'done' LIMIT 1",
                    (plan, bucket, key, upload_id),
                ).fetchone()
                is None
            )

    def phase_counts(self, plan: str, phase: str | None = None) -> list[PhaseCounts]:
        sql = (
            "SELECT phase, state, COUNT(*), SUM(size) FROM transfers WHERE plan=? "
            + ("AND phase=? " if phase else "")
            + "GROUP BY phase, state ORDER BY phase, state"
        )
        args = (plan, phase) if phase else (plan,)
        with self._lock:
            return [
                PhaseCounts(p, s, int(n), int(b or 0)) for p, s, n, b in self._db.execute(sql, args)
            ]

    def failures(
        self, plan: str, phase: str, limit: int = 50, *, removed: bool = False
    ) -> list[tuple[str, str, str]]:
        """The phase's failed and changed objects with their reasons, in key order; with
        `removed`, its removed ones instead (deleted at the destination, or no longer
        expected there), each with why."""
        states = "('removed')" if removed else "('failed', 'changed')"
        with self._lock:
            return [
                (c, k, e or "")
                for c, k, e in self._db.execute(
                    "SELECT container, key, error FROM transfers WHERE plan=? AND phase=? "
                    f"AND state IN {states} ORDER BY container, key LIMIT ?",
                    (plan, phase, limit),
                )
            ]

    def not_copied(
        self, plan: str, phase: str | None = None, page: int = 500
    ) -> Iterator[NotCopiedRow]:
        """Every failed or changed object of the plan (of `phase` only, if given), and every
        copy a verification found wrong (state `found_wrong`), with its reason, in (phase,
        container, key) order: all of them, a page at a time (keyset pagination along an
        index: memory and each page's cost do not grow with their number)."""
        columns = (
            "phase, container, key, destination_bucket, destination_key, "
            "CASE WHEN state = 'pending' THEN 'found_wrong' ELSE state END, error, attempts"
        )
        # Named: with --phase, SQLite chose the primary key for the first page (a review).
        base = (
            f"SELECT {columns} FROM transfers INDEXED BY transfers_not_copied "
            f"WHERE plan=? AND {_NOT_COPIED_STATES}"
        )
        after: tuple[str, str, str] | None = None
        while True:
            if phase is not None:
                sql = base + " AND phase=?"
                args: tuple[object, ...] = (plan, phase)
                if after is not None:
                    sql += " AND (container, key) > (?, ?)"
                    args += after[1:]
            else:
                sql, args = base, (plan,)
                if after is not None:
                    sql += " AND (phase, container, key) > (?, ?, ?)"
                    args += after
            with self._lock:
                rows = self._db.execute(
                    sql + " ORDER BY phase, container, key LIMIT ?", (*args, page)
                ).fetchall()
            if not rows:
                return
            for ph, c, k, db, dk, st, error, attempts in rows:
                yield NotCopiedRow(ph, c, k, db, dk, st, error or "", int(attempts or 0))
            after = (rows[-1][0], rows[-1][1], rows[-1][2])

    def phase_mark(self, plan: str, phase: str, column: str, reason: str | None = None) -> None:
        """Record started_at (its first run's start: kept), finished_at or verified_at (and
        a forced gate's reason: each different reason is kept, after those before it)."""
        if column not in ("started_at", "finished_at", "verified_at"):
            raise ValueError(column)
        value = "COALESCE(started_at, :now)" if column == "started_at" else ":now"
        with self.atomic() as db:
            db.execute(
                "INSERT INTO phases (plan, phase) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (plan, phase),
            )
            db.execute(
                f"UPDATE phases SET {column}={value}, forced_reason=CASE "
                "WHEN :reason IS NULL THEN forced_reason "
                "WHEN forced_reason IS NULL THEN :reason "
                "WHEN instr('; then: ' || forced_reason || '; then: ', "
                "'; then: ' || :reason || '; then: ') > 0 THEN forced_reason "
                "ELSE forced_reason || '; then: ' || :reason END "
                "WHERE plan=:plan AND phase=:phase",
                {"now": _now(), "reason": reason, "plan": plan, "phase": phase},
            )

    def removed_by(self, plan: Plan, phase: str) -> None:
        """`phase`'s run removed copies at the destination (--delete-removed): what the
        verifications of it and of the phases after it checked is not what is there now
        (the cutover's "switch over" among them), until they are verified again."""
        self.clear_verified(plan.name, [phase, *_after(plan, phase)])

    def clear_verified(self, plan: str, phases: Sequence[str]) -> None:
        """The phases are not verified any more (found wrong, or their check failed)."""
        with self.atomic() as db:
            for name in phases:
                db.execute(
                    "UPDATE phases SET verified_at=NULL WHERE plan=? AND phase=?", (plan, name)
                )

    def phase_state(self, plan: str, phase: str) -> PhaseState:
        with self._lock:
            row = self._db.execute(
                "SELECT resolved_at, started_at, finished_at, verified_at, forced_reason "
                "FROM phases WHERE plan=? AND phase=?",
                (plan, phase),
            ).fetchone()
        return PhaseState(*row) if row else PhaseState(None, None, None, None, None)

    # -- routes ------------------------------------------------------------------------------

    def record_routes(self, plan: str, hosts: Sequence[RouteUse]) -> None:
        with self.atomic() as db:
            for r in hosts:
                db.execute(
                    """
                    INSERT INTO routes VALUES (?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (plan, host, scheme) DO UPDATE SET
                        requests = routes.requests + excluded.requests,
                        bytes_sent = routes.bytes_sent + excluded.bytes_sent,
                        last_seen = excluded.last_seen
                    """,
                    (plan, r.host, r.scheme, r.requests, r.bytes_sent, r.first_seen, r.last_seen),
                )

    def routes(self, plan: str) -> list[RouteUse]:
        with self._lock:
            return [
                RouteUse(h, s, int(n), int(b), f, la)
                for h, s, n, b, f, la in self._db.execute(
                    "SELECT host, scheme, requests, bytes_sent, first_seen, last_seen "
                    "FROM routes WHERE plan=? ORDER BY host, scheme",
                    (plan,),
                )
            ]

    def record_site_routes(self, command: str, uses: Sequence[tuple[str, RouteUse]]) -> None:
        """Add (site, use) pairs contacted by `command` to what is recorded."""
        with self.atomic() as db:
            for site, r in uses:
                db.execute(
                    """
                    INSERT INTO site_routes VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (site, command, host, scheme) DO UPDATE SET
                        requests = site_routes.requests + excluded.requests,
                        bytes_sent = site_routes.bytes_sent + excluded.bytes_sent,
                        last_seen = excluded.last_seen
                    """,
                    (
                        site,
                        command,
                        r.host,
                        r.scheme,
                        r.requests,
                        r.bytes_sent,
                        r.first_seen,
                        r.last_seen,
                    ),
                )

    def site_routes(self, sites: Sequence[str]) -> list[SiteRouteUse]:
        marks = ", ".join("?" * len(sites))
        with self._lock:
            return [
                SiteRouteUse(site, command, RouteUse(h, s, int(n), int(b), f, la))
                for site, command, h, s, n, b, f, la in self._db.execute(
                    "SELECT site, command, host, scheme, requests, bytes_sent, first_seen, "
                    f"last_seen FROM site_routes WHERE site IN ({marks}) "
                    "ORDER BY site, command, host, scheme",
                    tuple(sites),
                )
            ]

    # -- re-run receipts ---------------------------------------------------------------------

    def record_receipt(self, inputs: str, answer: Callable[[], tuple[str, str] | None]) -> bool:
        """Store the answer (text, JSON) a finished phase gives again, for these inputs.
        `answer` reads the state inside this transaction, so no change can come between the
        answer and its receipt; one that wrote would void it, and nothing is stored.
        Returns whether a receipt was stored."""
        with self.atomic() as db:
            changes = db.total_changes
            found = answer()
            if found is None or db.total_changes != changes:
                return False
            db.execute(
                "INSERT OR REPLACE INTO receipts VALUES (?, ?, ?, ?)",
                (inputs, found[0], found[1], _now()),
            )
        return True

    # -- plans -------------------------------------------------------------------------------
    # Aggregates the planner reads, approvals, and the resolution of a phase's object set.
    # Every read here is a grouped scan or a bounded query: memory does not grow with the
    # number of objects.

    def _plan_functions(self) -> None:
        """Register the SQL functions plans (and removal counts) select with (once per
        connection)."""
        if getattr(self, "_plan_fns", False):
            return
        from migrate.plan import key_hash  # plan imports nothing of the ledger

        self._db.create_function("migrate_key_hash", 2, key_hash, deterministic=True)
        self._db.create_function("migrate_max_segment", 1, _max_segment_bytes, deterministic=True)
        self._db.create_function("migrate_portable", 1, portable_key, deterministic=True)
        self._plan_fns = True

    def inventory_run_site(self, run: int) -> str | None:
        """The site an inventory run of this state listed; None if the state has no such run."""
        with self._lock:
            row = self._db.execute("SELECT site FROM inventory_runs WHERE id=?", (run,)).fetchone()
        return str(row[0]) if row else None

    def inventory_finished_at(self, site: str) -> str | None:
        """When the site's last finished inventory run finished (ISO, UTC); None if none."""
        with self._lock:
            row = self._db.execute(
                "SELECT finished_at FROM inventory_runs WHERE site=? AND finished_at IS NOT "
                "NULL ORDER BY id DESC LIMIT 1",
                (site,),
            ).fetchone()
        return str(row[0]) if row else None

    def latest_inventory_run(self, site: str) -> int | None:
        """The id of the site's last finished inventory run, None if it has none."""
        with self._lock:
            row = self._db.execute(
                "SELECT MAX(id) FROM inventory_runs WHERE site=? AND finished_at IS NOT NULL",
                (site,),
            ).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def plan_dataset_stats(
        self,
        site: str,
        size_bounds: Sequence[int],
        flag_bits: Sequence[int],
        *,
        key_limit: int,
        segment_limit: int | None,
        size_limit: int,
        folder_keys: bool = False,
    ) -> list[PlanDatasetStats]:
        """Per dataset of the site's current inventory, in one grouped scan: counts and bytes
        per size class (bounded by `size_bounds`, upper bounds exclusive; the last class is
        open) and per flag bit, the largest object and key, and how many objects exceed the
        given key, path-segment and size limits (in bytes); with `folder_keys`, how many
        keys end with '/' or are the folder of other keys (a lookup in the key index
        each)."""
        self._plan_functions()
        lows = [0, *(int(b) for b in size_bounds)]
        classes = []
        for i, low in enumerate(lows):
            cond = f"size >= {low}" + (f" AND size < {lows[i + 1]}" if i + 1 < len(lows) else "")
            classes.append(f"SUM({cond}), SUM(CASE WHEN {cond} THEN size ELSE 0 END)")
        flags = [
            f"SUM((flags & {int(b)}) != 0), SUM(CASE WHEN flags & {int(b)} THEN size ELSE 0 END)"
            for b in flag_bits
        ]
        segment = (
            "SUM(CASE WHEN length(CAST(key AS BLOB)) > :seg "
            "THEN migrate_max_segment(key) > :seg ELSE 0 END)"
            if segment_limit is not None
            else "0"
        )
        columns = ", ".join(
            [
                "dataset",
                "container",
                "COUNT(*)",
                "SUM(size)",
                "MAX(size)",
                "MAX(length(CAST(key AS BLOB)))",
                "SUM(length(CAST(key AS BLOB)) > :kl)",
                segment,
                "SUM(size > :ol)",
                "SUM(version_id IS NOT NULL)",
                f"SUM({_EXAMPLE_CONDITIONS['folder_key']})" if folder_keys else "0",
                *classes,
                *flags,
            ]
        )
        sql = (
            f"SELECT {columns} FROM objects WHERE site = :site AND deleted_in IS NULL "
            "GROUP BY dataset, container ORDER BY dataset, container"
        )
        params = {"site": site, "kl": key_limit, "seg": segment_limit or 0, "ol": size_limit}
        out: list[PlanDatasetStats] = []
        n_classes = len(lows)
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()  # one row per dataset
        for row in rows:
            ints = [int(v or 0) for v in row[2:]]
            classes_part = ints[9 : 9 + 2 * n_classes]
            flags_part = ints[9 + 2 * n_classes :]
            out.append(
                PlanDatasetStats(
                    dataset=str(row[0]),
                    container=str(row[1]),
                    objects=ints[0],
                    bytes=ints[1],
                    max_size=ints[2],
                    max_key_bytes=ints[3],
                    over_key_limit=ints[4],
                    over_segment_limit=ints[5],
                    over_size_limit=ints[6],
                    versioned=ints[7],
                    folder_keys=ints[8],
                    size_classes=tuple(
                        (classes_part[2 * i], classes_part[2 * i + 1]) for i in range(n_classes)
                    ),
                    flags=tuple(
                        (int(bit), flags_part[2 * i], flags_part[2 * i + 1])
                        for i, bit in enumerate(flag_bits)
                    ),
                )
            )
        return out

    def inventory_listings(self, site: str) -> tuple[str | None, list[tuple[str, str]]]:
        """When the site's latest whole listing began (None: none finished), and the
        (prefix, began) of each `--prefix` listing finished after it: the state's view of
        the site is made of both."""
        with self._lock:
            rows = self._db.execute(
                "SELECT prefix, started_at FROM inventory_runs WHERE site=? AND finished_at "
                "IS NOT NULL AND id >= COALESCE((SELECT MAX(id) FROM inventory_runs WHERE "
                "site=? AND prefix='' AND finished_at IS NOT NULL), 0) ORDER BY id",
                (site, site),
            ).fetchall()
        whole = next((str(at) for prefix, at in rows if prefix == ""), None)
        return whole, [(str(prefix), str(at)) for prefix, at in rows if prefix != ""]

    def inventory_token(self, run: int) -> str | None:
        """An inventory run's random name (None: no such run, or one listed before runs
        were named)."""
        with self._lock:
            row = self._db.execute("SELECT token FROM inventory_runs WHERE id=?", (run,)).fetchone()
        return str(row[0]) if row and row[0] is not None else None

    def inventory_started_at(self, run: int) -> str | None:
        """When an inventory run began listing (ISO, UTC)."""
        with self._lock:
            row = self._db.execute(
                "SELECT started_at FROM inventory_runs WHERE id=?", (run,)
            ).fetchone()
        return str(row[0]) if row and row[0] is not None else None

    def plan_recent_changes(
        self, site: str, since: str, excluding: Sequence[str] = ()
    ) -> tuple[int, int]:
        """Objects and bytes of the site's current inventory last modified at or after
        `since` (ISO 8601, UTC: the inventory stores UTC times, so strings compare), but
        in the datasets `excluding` names (one JSON parameter: SQLite's variable limit)."""
        with self._lock:
            n, size = self._db.execute(
                "SELECT COUNT(*), SUM(size) FROM objects "
                "WHERE site=? AND deleted_in IS NULL AND last_modified >= ? "
                "AND dataset NOT IN (SELECT value FROM json_each(?))",
                (site, since, json.dumps(list(excluding), ensure_ascii=False)),
            ).fetchone()
        return int(n), int(size or 0)

    def plan_tier_stats(self, site: str) -> list[PlanTierStats]:
        """Per dataset and storage class/tier: objects, bytes, and how many (and how many
        bytes) are archived."""
        with self._lock:
            return [
                PlanTierStats(
                    str(d),
                    None if t is None else str(t),
                    int(n),
                    int(b or 0),
                    int(a or 0),
                    int(ab or 0),
                )
                for d, t, n, b, a, ab in self._db.execute(
                    "SELECT dataset, storage_class, COUNT(*), SUM(size), SUM(archived), "
                    "SUM(CASE WHEN archived THEN size ELSE 0 END) "
                    "FROM objects WHERE site=? AND deleted_in IS NULL "
                    "GROUP BY dataset, storage_class ORDER BY dataset, storage_class",
                    (site,),
                )
            ]

    def plan_examples(
        self, site: str, dataset: str, condition: str, value: int | str, limit: int = 3
    ) -> list[tuple[str, str]]:
        """A few (container, key) of a dataset meeting one condition, in key order:
        "flag" (value: a flag bit), "key_bytes", "segment_bytes", "size" (value: a limit the
        key, a path segment or the size exceeds), "tier" (value: a storage class)."""
        where = _EXAMPLE_CONDITIONS[condition]
        self._plan_functions()
        with self._lock:
            return [
                (str(c), str(k))
                for c, k in self._db.execute(
                    "SELECT container, key FROM objects INDEXED BY objects_dataset "
                    "WHERE site=:site AND dataset=:ds "
                    f"AND deleted_in IS NULL AND {where} ORDER BY container, key LIMIT :n",
                    {"site": site, "ds": dataset, "v": value, "n": limit},
                )
            ]

    def record_approval(self, plan: str, digest: str, who: str, path: str) -> Approval:
        """Record that `who` approved this digest of the plan; approving it again keeps the
        first record, while it is the plan's latest approval. One approved before a later
        version was is approved anew (a new record: the latest approval is the one a run
        takes). Every call is in the plan's approval history, whichever stands."""
        now = _now()
        with self.atomic() as db:
            latest = db.execute(
                "SELECT digest FROM approvals WHERE plan=? ORDER BY rowid DESC LIMIT 1",
                (plan,),
            ).fetchone()
            if latest is not None and latest[0] != digest:
                db.execute("DELETE FROM approvals WHERE plan=? AND digest=?", (plan, digest))
            inserted = db.execute(
                "INSERT INTO approvals (plan, digest, approved_by, approved_at, path) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (plan, digest) DO NOTHING",
                (plan, digest, who, now, path),
            ).rowcount
            db.execute(
                "INSERT INTO approval_events (plan, digest, approved_by, approved_at, path, "
                "took_effect) VALUES (?, ?, ?, ?, ?, ?)",
                (plan, digest, who, now, path, inserted == 1),
            )
            row = db.execute(
                "SELECT plan, digest, approved_by, approved_at, path FROM approvals "
                "WHERE plan=? AND digest=?",
                (plan, digest),
            ).fetchone()
        return replace(Approval(*row), recorded_now=inserted == 1)

    def record_plan_made(self, plan: str, digest: str) -> None:
        """`migrate plan` made this digest of the plan with this state."""
        with self.atomic() as db:
            db.execute(
                "INSERT INTO plans_made (plan, digest, made_at) VALUES (?, ?, ?) "
                "ON CONFLICT (plan, digest) DO NOTHING",
                (plan, digest, _now()),
            )

    def plan_made(self, plan: str, digest: str) -> bool:
        with self._lock:
            return (
                self._db.execute(
                    "SELECT 1 FROM plans_made WHERE plan=? AND digest=?", (plan, digest)
                ).fetchone()
                is not None
            )

    def approvals(self, plan: str) -> list[Approval]:
        """Every approval of the plan (any digest), newest first."""
        with self._lock:
            return [
                Approval(*row)
                for row in self._db.execute(
                    "SELECT plan, digest, approved_by, approved_at, path FROM approvals "
                    "WHERE plan=? ORDER BY rowid DESC",  # as recorded: a clock set back too
                    (plan,),
                )
            ]

    def approval_history(self, plan: str) -> list[ApprovalEvent]:
        """Every `plan approve` of the plan, oldest first, whether it took effect or found
        the digest approved already."""
        with self._lock:
            return [
                ApprovalEvent(p, d, by, at, path, bool(took))
                for p, d, by, at, path, took in self._db.execute(
                    "SELECT plan, digest, approved_by, approved_at, path, took_effect "
                    "FROM approval_events WHERE plan=? ORDER BY rowid",
                    (plan,),
                )
            ]

    def _refuse_names_not_utf8(self, db: sqlite3.Connection, plan: Plan, phase: str) -> None:
        """PlanError (the caller's transaction rolls back) if the phase, just resolved,
        takes an object whose name is not UTF-8 (flagged by the inventory, stored escaped):
        one that appeared after the plan was made, which its KEY_NOT_UTF8 finding could not
        block. S3 and Azure keys are UTF-8. Other phases are not held up by it."""
        from migrate.errors import PlanError
        from migrate.inventory import Flag  # not at the top: the inventory imports the ledger

        rows = db.execute(
            "SELECT o.container, o.key FROM objects o INDEXED BY objects_not_utf8 "
            "JOIN transfers t ON t.plan = ? AND t.container = o.container AND t.key = o.key "
            f"WHERE o.site = ? AND o.deleted_in IS NULL AND o.flags & {int(Flag.KEY_NOT_UTF8)} "
            "!= 0 AND t.phase = ? AND t.state != 'done' ORDER BY o.container, o.key",
            (plan.name, plan.source, phase),
        )
        names = [f"{c}/{k}" for c, k in rows]
        if names:
            raise PlanError(
                f"plan {plan.name}: {len(names):,} object{'s' if len(names) > 1 else ''} at "
                f"{plan.source} named in bytes that are not UTF-8 (e.g. {names[0]}) appeared "
                "since the plan was made: S3 and Azure keys are UTF-8",
                hint="rename them at the source, then run the phase again (delta and cutover "
                f"re-list the source; before another phase, run `migrate inventory "
                f"{plan.source}`)",
            )

    def _bind_waves(self, db: sqlite3.Connection, plan: Plan, phase: Phase) -> None:
        """Record the plan's split into waves at its first wave's run; refuse a wave of
        another split (PlanError)."""
        waves = phase.selector.waves
        if not waves:
            return
        db.execute(
            "INSERT OR IGNORE INTO plan_waves (plan, waves) VALUES (?, ?)", (plan.name, waves)
        )
        self.refuse_other_split(plan, phase)

    def refuse_other_split(self, plan: Plan, phase: Phase) -> None:
        """PlanError for a wave of another split than the one the plan's runs began with
        (a run checks it before its gate too: --force would record a start)."""
        bound = self.plan_waves(plan.name)
        waves = phase.selector.waves
        if bound is not None and waves and bound != waves:
            from migrate.errors import PlanError

            raise PlanError(
                f"plan {plan.name}: phase {phase.name} splits the objects into {waves} "
                f"waves; its runs began with {bound} (each object's wave depends on it)",
                hint=f"make the plan again with `migrate plan -o`: it keeps the {bound} waves",
            )

    def plan_waves(self, plan: str) -> int | None:
        """The number of bulk waves the plan's runs began with, if a wave ran."""
        with self._lock:
            row = self._db.execute("SELECT waves FROM plan_waves WHERE plan=?", (plan,)).fetchone()
        return None if row is None else int(row[0])

    def datasets_taken(self, plan: str, datasets: Sequence[str]) -> list[str]:
        """Those of `datasets` that a phase of the plan took objects of (it has transfers),
        each one index probe per state (transfers_manifest leads with plan, state, dataset)."""
        states = "('pending', 'in_progress', 'done', 'failed', 'changed', 'removed')"
        with self._lock:
            return [
                d
                for d in datasets
                if self._db.execute(
                    f"SELECT 1 FROM transfers WHERE plan=? AND state IN {states} "
                    "AND dataset=? LIMIT 1",
                    (plan, d),
                ).fetchone()
            ]

    def buckets_written(self, plan: str, buckets: Sequence[str]) -> list[str]:
        """Those of `buckets` that a run of the plan began a copy into (transfers_destination
        leads with plan, destination bucket)."""
        with self._lock:
            return [
                b
                for b in buckets
                if self._db.execute(
                    "SELECT 1 FROM transfers WHERE plan=? AND destination_bucket=? "
                    "AND started_at IS NOT NULL LIMIT 1",
                    (plan, b),
                ).fetchone()
            ]

    def plan_routes(self, plan: str) -> dict[str, str]:
        """Where each dataset of the plan went when its state was made (dataset -> route)."""
        with self._lock:
            return dict(
                self._db.execute("SELECT dataset, route FROM plan_routes WHERE plan=?", (plan,))
            )

    def resolve_phase(self, plan: Plan, phase: Phase | str) -> int:
        """Fix the phase's object set in `transfers` the first time; return its size.

        The set is what the phase's selector takes from the source's current inventory,
        less every object a transfer of this plan already holds (and less what the phases
        in `exclude_phases` take, resolved or not), each with its destination bucket/key
        from the plan's mappings and the source ETag, version and checksums from the
        inventory. A `changed_since_copy` phase (delta, cutover) takes the objects new since
        the copy, and moves into itself, back to pending, the objects whose inventory ETag
        or size differs from the copied one, or that changed during their copy (state
        `changed`); their previous sha256/md5 stay as a record of the earlier copy. The
        first call records `resolved_at` in the same transaction; later calls change
        nothing and return the same count, except for a `changed_since_copy` phase: it is
        resolved again at each call (each run follows a re-list of the source), so what
        appeared or changed since its last run joins it, and what it had not copied yet
        and the source no longer has leaves it; when that changes its set, its
        `finished_at` and `verified_at` are cleared (there is new work to do and check)."""
        dropped: list[tuple[str, str, str]] = []
        size = self._resolve_phase(plan, phase, dropped)
        with self._lock:  # committed: the uploads it took from transfers may go
            self._dropped_uploads.extend(dropped)
        return size

    def _resolve_phase(
        self, plan: Plan, phase: Phase | str, dropped: list[tuple[str, str, str]]
    ) -> int:
        if isinstance(phase, str):
            phase = plan.phase(phase)
        refuse_decommission(plan, phase)
        self._plan_functions()
        from migrate.plan import routes_of

        with self.atomic() as db:
            db.executemany(
                "INSERT OR IGNORE INTO plan_routes (plan, dataset, route, bound_at) "
                "VALUES (?, ?, ?, ?)",
                [(plan.name, d, route, _now()) for d, route in routes_of(plan).items()],
            )
            self._bind_waves(db, plan, phase)
            row = db.execute(
                "SELECT resolved_at FROM phases WHERE plan=? AND phase=?", (plan.name, phase.name)
            ).fetchone()
            again = phase.selector.changed_since_copy and row is not None and row[0] is not None
            if row is None or row[0] is None or again:
                before = db.total_changes
                if plan.mappings:
                    self._resolve(db, plan, phase, dropped)
                    self._refuse_names_not_utf8(db, plan, phase.name)
                if again:
                    if db.total_changes != before:
                        db.execute(
                            "UPDATE phases SET finished_at = NULL, verified_at = NULL "
                            "WHERE plan=? AND phase=?",
                            (plan.name, phase.name),
                        )
                        # New work here voids the verifications of the phases after it
                        # (the cutover's "switch over" no longer holds).
                        db.executemany(
                            "UPDATE phases SET verified_at = NULL WHERE plan=? AND phase=?",
                            [(plan.name, later) for later in _after(plan, phase.name)],
                        )
                    return self._phase_size(db, plan.name, phase.name)
                db.execute(
                    "INSERT INTO phases (plan, phase, resolved_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (plan, phase) DO UPDATE SET resolved_at = excluded.resolved_at",
                    (plan.name, phase.name, _now()),
                )
            return self._phase_size(db, plan.name, phase.name)

    def take_dropped_uploads(self) -> list[tuple[str, str, str]]:
        """(bucket, key, upload id) of each unfinished upload `resolve_phase` dropped from a
        transfer it took again (its source changed since the upload began), for the caller
        to abort; handed out once."""
        with self._lock:
            dropped, self._dropped_uploads = self._dropped_uploads, []
        return dropped

    @staticmethod
    def _phase_size(db: sqlite3.Connection, plan: str, phase: str) -> int:
        return int(
            db.execute(
                "SELECT COUNT(*) FROM transfers WHERE plan=? AND phase=?", (plan, phase)
            ).fetchone()[0]
        )

    def _resolve(
        self,
        db: sqlite3.Connection,
        plan: Plan,
        phase: Phase,
        dropped: list[tuple[str, str, str]],
    ) -> None:
        params: dict[str, object] = {"plan": plan.name, "site": plan.source, "phase": phase.name}
        if phase.selector.changed_since_copy:
            where = _changed_where(phase.selector.datasets, params)
            # Their unfinished uploads are of the bytes before: the run aborts them by id
            # (no listing needed, which a store may refuse), once this is committed.
            dropped.extend(
                (str(b), str(k), str(u))
                for b, k, u in db.execute(
                    "SELECT t.destination_bucket, t.destination_key, t.upload_id "
                    f"FROM transfers AS t, objects AS o WHERE {where} "
                    "AND t.upload_id IS NOT NULL AND t.state != 'done'",
                    params,
                )
            )
            # The earlier phases whose copies found wrong it takes: left with nothing to copy,
            # they are finished again (verify cleared the mark when it sent them back).
            emptied = [
                str(p)
                for (p,) in db.execute(
                    "SELECT DISTINCT t.phase FROM transfers AS t, objects AS o "
                    f"WHERE {where} AND t.phase != :phase AND {_FOUND_WRONG}",
                    params,
                )
            ]
            db.execute(
                "UPDATE transfers AS t SET phase = :phase, state = 'pending', size = o.size, "
                "source_etag = o.etag, source_version = o.version_id, "
                "source_modified = o.last_modified, "
                "source_checksums = o.checksums, upload_id = NULL, part_size = NULL, "
                "error = NULL, started_at = NULL, finished_at = NULL, "
                # counted for the phase that copies it now: the report's tables count an
                # object, its attempts and retries where its latest copy was made
                "attempts = 0, retries = 0 "
                f"FROM objects AS o WHERE {where}",
                params,
            )
            for earlier in emptied:
                db.execute(
                    "UPDATE phases SET finished_at = ? WHERE plan = ? AND phase = ? "
                    "AND finished_at IS NULL AND resolved_at IS NOT NULL AND NOT EXISTS "
                    "(SELECT 1 FROM transfers WHERE plan = ? AND phase = ? "
                    "AND state IN ('pending', 'in_progress', 'failed', 'changed'))",
                    (_now(), plan.name, earlier, plan.name, earlier),
                )
        ctes = [_mapping_cte(plan, params)]
        select = self._selection(plan, phase, params, "s", ctes)
        db.execute(
            f"WITH {', '.join(ctes)} "
            "INSERT INTO transfers (plan, container, key, phase, dataset, size, source_etag, "
            "source_version, source_checksums, destination_bucket, destination_key, state, "
            "source_modified) "
            "SELECT :plan, container, key, :phase, dataset, size, etag, version_id, checksums, "
            f"bucket, dkey, 'pending', last_modified FROM ({select})",
            params,
        )

    def phase_candidates(self, plan: Plan, phase: Phase | str) -> Iterator[PhaseCandidate]:
        """The phase's objects without writing anything: its fixed set when resolved (with
        each transfer's state), else what `resolve_phase` would take now (state None).
        Streams (a cursor, not a list), in no particular order."""
        if isinstance(phase, str):
            phase = plan.phase(phase)
        if not plan.mappings:
            return
        self._plan_functions()
        with self._lock:
            resolved = self._db.execute(
                "SELECT resolved_at FROM phases WHERE plan=? AND phase=?", (plan.name, phase.name)
            ).fetchone()
        params: dict[str, object] = {"plan": plan.name, "site": plan.source, "phase": phase.name}
        fixed = (
            f"SELECT {_CANDIDATE_COLUMNS}, upload_id IS NOT NULL, ({_GONE}) FROM transfers AS t "
            "WHERE t.plan = :plan AND t.phase = :phase"
        )
        if resolved is not None and resolved[0] is not None:
            if not phase.selector.changed_since_copy:
                for row in self._db.execute(fixed, params):
                    yield _fixed_candidate(row)
                return
            # Resolved again at its next run (see resolve_phase): its rows as they will be
            # then, and what will join it (below).
            where = _changed_where(phase.selector.datasets, params)
            fixed += f" AND NOT ({_GONE}) AND NOT EXISTS (SELECT 1 FROM objects AS o WHERE {where})"
            for row in self._db.execute(fixed, params):
                yield _fixed_candidate(row)
        ctes = [_mapping_cte(plan, params)]
        select = self._selection(plan, phase, params, "s", ctes)
        sql = (
            f"WITH {', '.join(ctes)} SELECT container, key, dataset, size, etag, checksums, "
            f"bucket, dkey, NULL, NULL, NULL FROM ({select})"
        )
        if phase.selector.changed_since_copy:
            where = _changed_where(phase.selector.datasets, params)
            sql += (
                " UNION ALL SELECT t.container, t.key, t.dataset, o.size, o.etag, o.checksums, "
                "t.destination_bucket, t.destination_key, NULL, t.sha256, t.md5 "
                f"FROM transfers AS t, objects AS o WHERE {where}"
            )
        for row in self._db.execute(sql, params):
            yield PhaseCandidate(*row)

    def _is_resolved(self, plan: str, phase: str) -> bool:
        row = self._db.execute(
            "SELECT resolved_at FROM phases WHERE plan=? AND phase=?", (plan, phase)
        ).fetchone()
        return row is not None and row[0] is not None

    def _selection(
        self, plan: Plan, phase: Phase, params: dict[str, object], tag: str, ctes: list[str]
    ) -> str:
        """A SELECT of the objects `phase` takes now that no transfer of the plan holds,
        with columns container, key, dataset, size, etag, version_id, checksums, bucket,
        dkey, last_modified. Phases it excludes that are not resolved yet become CTEs
        appended to `ctes` (their objects are not in `transfers` yet, so they are taken out
        by rule)."""
        sel = phase.selector
        where = [
            "o.site = :site",
            "o.deleted_in IS NULL",
            _NOT_TAKEN,
        ]
        if sel.datasets:
            names = []
            for i, dataset in enumerate(sel.datasets):
                params[f"{tag}_d{i}"] = dataset
                names.append(f":{tag}_d{i}")
            where.append(f"o.dataset IN ({', '.join(names)})")
        if sel.min_size is not None:
            params[f"{tag}_min"] = sel.min_size
            where.append(f"o.size >= :{tag}_min")
        if sel.max_size is not None:
            params[f"{tag}_max"] = sel.max_size
            where.append(f"o.size < :{tag}_max")
        if sel.modified_before is not None:
            params[f"{tag}_before"] = sel.modified_before
            where.append(f"o.last_modified < :{tag}_before")
        size_class = "0"
        if sel.size_bounds:
            whens = " ".join(
                f"WHEN o.size < {int(b)} THEN {i}" for i, b in enumerate(sel.size_bounds)
            )
            size_class = f"CASE {whens} ELSE {len(sel.size_bounds)} END"
        base = (
            "SELECT o.container AS container, o.key AS key, o.dataset AS dataset, "
            "o.size AS size, o.etag AS etag, o.version_id AS version_id, "
            "o.checksums AS checksums, o.last_modified AS last_modified, m.bucket AS bucket, "
            "m.dprefix || substr(o.key, length(m.sprefix) + 1) AS dkey, "
            f"migrate_key_hash(o.container, o.key) AS h, {size_class} AS cls "
            # The mappings outside, each dataset's objects found by the index: SQLite,
            # without statistics, takes `site = ?` for a few rows and chose to read the
            # site's objects once per mapping (objects x datasets).
            "FROM m CROSS JOIN objects o INDEXED BY objects_dataset ON o.dataset = m.dataset "
            f"WHERE {' AND '.join(where)}"
        )
        picks: list[str] = []
        if sel.cover_per_class > 0:
            base = (
                "SELECT b.*, ROW_NUMBER() OVER (PARTITION BY dataset, cls "
                f"ORDER BY h, container, key) AS rn FROM ({base}) b"
            )
            params[f"{tag}_cover"] = sel.cover_per_class
            cover = f"rn <= :{tag}_cover"
            if sel.sample_per_10000 is not None:
                params[f"{tag}_s"] = sel.sample_per_10000
                picks.append(f"(h % 10000 < :{tag}_s OR {cover})")
            else:
                picks.append(cover)
        elif sel.sample_per_10000 is not None:
            params[f"{tag}_s"] = sel.sample_per_10000
            picks.append(f"h % 10000 < :{tag}_s")
        if sel.waves:
            params[f"{tag}_n"] = sel.waves
            params[f"{tag}_w"] = (sel.wave or 1) - 1
            picks.append(f"(h / 10000) % :{tag}_n = :{tag}_w")
        for j, name in enumerate(sel.exclude_phases):
            other = plan.phase(name)
            if other.selector.changed_since_copy or self._is_resolved(plan.name, name):
                continue  # resolved: its objects are in transfers already
            sub = f"{tag}_x{j}"
            ctes.append(
                f"{sub} AS MATERIALIZED ({self._selection(plan, other, params, sub, ctes)})"
            )
            # Not `(container, key) NOT IN`: SQLite, not knowing the columns of `sub` are
            # never NULL, read all of it for a NULL for each object not in it.
            picks.append(
                f"NOT EXISTS (SELECT 1 FROM {sub} AS x "
                "WHERE x.container = c.container AND x.key = c.key)"
            )
        return (
            "SELECT container, key, dataset, size, etag, version_id, checksums, bucket, dkey, "
            f"last_modified FROM ({base}) AS c" + (f" WHERE {' AND '.join(picks)}" if picks else "")
        )

    # -- verification ------------------------------------------------------------------------
    # Reads for `migrate verify`, the manifest and the report, and the record of each
    # verification. Streams page by keyset over an index in their order, so no cursor is
    # held across the caller's work and memory does not grow with the number of objects.

    def destination_rows(
        self, plan: str, source_site: str, bucket: str, *, batch: int = 1000
    ) -> Iterator[DestinationRow]:
        """Every transfer of the plan into `bucket`, any phase and any state, in the order
        of (destination key, source container, source key): the order stores list keys in
        (UTF-8 bytes), so a listing can be merged with it. Each row carries the source
        object's inventory etag, content type and metadata (None where unknown)."""
        base = (
            "SELECT t.destination_key, t.container, t.key, t.phase, t.dataset, t.size, "
            "t.state, t.sha256, t.md5, t.destination_etag, t.source_etag, t.source_version, "
            "t.error, o.etag, o.content_type, o.metadata, o.headers, t.recopy_reason, t.tags "
            "FROM transfers t "
            "LEFT JOIN objects o ON o.site = ? AND o.container = t.container AND o.key = t.key "
            "WHERE t.plan = ? AND t.destination_bucket = ?"
        )
        after: list[object] = []
        while True:
            sql = base
            if after:
                sql += " AND (t.destination_key, t.container, t.key) > (?, ?, ?)"
            sql += " ORDER BY t.destination_key, t.container, t.key LIMIT ?"
            with self._lock:
                rows = self._db.execute(sql, [source_site, plan, bucket, *after, batch]).fetchall()
            for r in rows:
                yield DestinationRow(bucket, *r)
            if len(rows) < batch:
                return
            after = [rows[-1][0], rows[-1][1], rows[-1][2]]

    def manifest_rows(self, plan: str, *, batch: int = 1000) -> Iterator[ManifestRow]:
        """The plan's done transfers in manifest order: dataset, destination bucket,
        destination key (then source container and key)."""
        base = (
            "SELECT dataset, destination_bucket, destination_key, container, key, size, "
            "sha256, source_etag, source_version, destination_etag, error FROM transfers "
            "WHERE plan = ? AND state = 'done'"
        )
        after: list[object] = []
        while True:
            sql = base
            if after:
                sql += (
                    " AND (dataset, destination_bucket, destination_key, container, key) "
                    "> (?, ?, ?, ?, ?)"
                )
            sql += " ORDER BY dataset, destination_bucket, destination_key, container, key LIMIT ?"
            with self._lock:
                rows = self._db.execute(sql, [plan, *after, batch]).fetchall()
            for r in rows:
                proof = str(r[10] or "").removeprefix("source-proof:")
                yield _manifest_row(r, proof or "none")
            if len(rows) < batch:
                return
            after = list(rows[-1][:5])

    def record_verification(
        self,
        plan: str,
        phase: str | None,
        *,
        mode: str,
        sample: float | None,
        seed: int,
        started_at: str,
        finished_at: str,
        passed: bool,
        objects: int,
        size: int,
        reread: int,
        summary: str,
        run_by: str,
        tool_version: str,
        verified_phases: Sequence[str] = (),
        unverified_phases: Sequence[str] = (),
    ) -> int:
        """Record one verification and, in the same transaction, set `verified_at` on the
        phases it proved and clear it on the phases it found wrong (status, the report
        and the gates of the phases after them say so until a verification passes again).
        Returns the record's id."""
        with self.atomic() as db:
            cur = db.execute(
                "INSERT INTO verifications (plan, phase, mode, sample, seed, started_at, "
                "finished_at, passed, objects, bytes, reread, summary, run_by, tool_version) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    plan,
                    phase,
                    mode,
                    sample,
                    seed,
                    started_at,
                    finished_at,
                    int(passed),
                    objects,
                    size,
                    reread,
                    summary,
                    run_by,
                    tool_version,
                ),
            )
            for name in verified_phases:
                self.phase_mark(plan, name, "verified_at")
            self.clear_verified(plan, unverified_phases)
            return int(cur.lastrowid or 0)

    def run_started(
        self,
        plan: str,
        phase: str,
        *,
        run_by: str,
        tool_version: str,
        options: Mapping[str, object],
    ) -> int:
        """Record a run of `phase` begun now; returns its id for `run_finished`."""
        with self.atomic() as db:
            cursor = db.execute(
                "INSERT INTO runs (plan, phase, started_at, run_by, tool_version, options) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (plan, phase, _now(), run_by, tool_version, json.dumps(options, sort_keys=True)),
            )
            return int(cursor.lastrowid or 0)

    def run_progress(self, run_id: int, counts: RunCounts) -> None:
        """What a run under way has done so far: a run killed outright (no end recorded)
        shows it, not nothing."""
        self._run_counts(run_id, counts, "WHERE id=? AND finished_at IS NULL")

    def run_finished(self, run_id: int, outcome: str, counts: RunCounts) -> None:
        self._run_counts(run_id, counts, "WHERE id=?", finished_at=_now(), outcome=outcome)

    def _run_counts(self, run_id: int, counts: RunCounts, where: str, **end: str) -> None:
        # The counts' columns are named as RunCounts' fields.
        columns = [*end, *(f.name for f in fields(RunCounts))]
        with self.atomic() as db:
            db.execute(
                f"UPDATE runs SET {', '.join(f'{c}=?' for c in columns)} {where}",
                (*end.values(), *astuple(counts), run_id),
            )

    def runs(self, plan: str, limit: int) -> tuple[list[RunRecord], int]:
        """The plan's latest `limit` runs, oldest first, and how many it has in all."""
        with self._lock:
            count = int(
                self._db.execute("SELECT COUNT(*) FROM runs WHERE plan=?", (plan,)).fetchone()[0]
            )
            rows = self._db.execute(
                "SELECT id, plan, phase, started_at, finished_at, run_by, tool_version, "
                "options, outcome, copied, bytes_copied, failed, conflicts, changed, removed "
                "FROM runs WHERE plan=? ORDER BY id DESC LIMIT ?",
                (plan, limit),
            ).fetchall()
        records = [
            RunRecord(i, p, ph, start, end, by, version, options, outcome, RunCounts(*counts))
            for i, p, ph, start, end, by, version, options, outcome, *counts in reversed(rows)
        ]
        return records, count

    def verifications(self, plan: str) -> list[VerificationRecord]:
        """Every verification of the plan, oldest first."""
        with self._lock:
            return [
                VerificationRecord(i, p, ph, m, sa, se, st, fi, bool(passed), *rest)
                for i, p, ph, m, sa, se, st, fi, passed, *rest in self._db.execute(
                    "SELECT id, plan, phase, mode, sample, seed, started_at, finished_at, "
                    "passed, objects, bytes, reread, summary, run_by, tool_version "
                    "FROM verifications "
                    "WHERE plan=? ORDER BY id",
                    (plan,),
                )
            ]

    def transfer_stats(self, plan: str) -> list[TransferStats]:
        """Per phase, dataset, state and run (of the phase) that finished them: objects,
        bytes, attempts, retries, and the first start and last finish (one grouped scan).
        A transfer's run is its phase's latest begun by its finish; none if unfinished, or
        finished where no run was recorded (a library caller's `run_phase`). A pending
        transfer a verification sent back to be copied again has the state `found_wrong`; one
        whose source is gone and whose destination key holds what this plan cannot prove
        its copy (left there, not removed), `left`."""
        with self._lock:
            return [
                TransferStats(ph, d, s, int(n), int(b or 0), int(a or 0), int(r or 0), st, fi, run)
                for ph, d, s, run, n, b, a, r, st, fi in self._db.execute(
                    "SELECT phase, dataset, shown, run, COUNT(*), SUM(size), SUM(attempts), "
                    "SUM(retries), MIN(started_at), MAX(finished_at) FROM (SELECT t.*, "
                    # the reason stays on the copy found right again later (verify compares
                    # it); a transfer sent back by verify has it as its error too
                    f"CASE WHEN {_FOUND_WRONG} THEN 'found_wrong' "
                    # not removed: an object this plan cannot prove its copy is left there
                    f"WHEN t.state = 'removed' AND t.error LIKE '%{BY_HAND}%' THEN 'left' "
                    "ELSE t.state END AS shown, "
                    "(SELECT MAX(r.started_at) FROM runs AS r WHERE r.plan = t.plan "
                    "AND r.phase = t.phase AND r.started_at <= t.finished_at) AS run "
                    "FROM transfers AS t WHERE t.plan=?) "
                    "GROUP BY phase, dataset, shown, run ORDER BY phase, dataset, shown, run",
                    (plan,),
                )
            ]

    def done_timeline(self, plan: str) -> list[TimelinePoint]:
        """Objects and bytes finished per second (per minute past 6 hours of activity, per
        hour past 30 days), oldest first: at most ~45,000 points whatever the plan's size."""
        with self._lock:
            first, last = self._db.execute(
                "SELECT MIN(finished_at), MAX(finished_at) FROM transfers "
                "WHERE plan=? AND state='done'",
                (plan,),
            ).fetchone()
            if first is None:
                return []
            span = (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds()
            # ISO 8601 prefixes: 19 characters to the second, 16 the minute, 13 the hour.
            width, suffix = (19, "") if span <= 6 * 3600 else (16, ":00")
            if span > 30 * 86400:
                width, suffix = 13, ":00:00"
            return [
                TimelinePoint(str(at) + suffix, int(n), int(b or 0))
                for at, n, b in self._db.execute(
                    f"SELECT substr(finished_at, 1, {width}) AS at, COUNT(*), SUM(size) "
                    "FROM transfers WHERE plan=? AND state='done' GROUP BY at ORDER BY at",
                    (plan,),
                )
            ]

    def unproven_sources(self, plan: str, limit: int = 1000) -> tuple[int, list[ManifestRow]]:
        """Done objects whose source offered no native checksum to compare the bytes read
        with, or is gone ("source-proof:none"): their count, and the first `limit` in
        manifest order."""
        # As the manifest reads it: no recorded proof is "none" (rows of older versions).
        where = "WHERE plan=? AND state='done' AND (error IS NULL OR error='source-proof:none')"
        with self._lock:
            count = int(
                self._db.execute(f"SELECT COUNT(*) FROM transfers {where}", (plan,)).fetchone()[0]
            )
            rows = self._db.execute(
                "SELECT dataset, destination_bucket, destination_key, container, key, size, "
                "sha256, source_etag, source_version, destination_etag FROM transfers "
                f"{where} ORDER BY dataset, destination_bucket, destination_key, container, key "
                "LIMIT ?",
                (plan, limit),
            ).fetchall()
        return count, [_manifest_row(r, "none") for r in rows]

    # -- delta -------------------------------------------------------------------------------
    # Objects the plan copied that the source no longer has. Read by keyset pages over the
    # transfers' primary key, so memory stays bounded and no cursor is held across the
    # caller's deletes.

    _DELETED_AT_SOURCE = (
        "FROM transfers AS t JOIN objects AS o ON o.site = ? AND o.container = t.container "
        "AND o.key = t.key WHERE t.plan = ? AND t.state = 'done' AND o.deleted_in > 0"
    )

    def changed_since_copy_count(self, plan: str, site: str) -> int:
        """How many of the plan's copies the latest inventory of the source `site` shows
        changed since (another ETag, size, later time or version), or back at the source
        after their copy was removed: what a delta run would copy again."""
        with self._lock:
            return int(
                self._db.execute(
                    "SELECT COUNT(*) FROM transfers AS t JOIN objects AS o ON o.site = ? "
                    "AND o.container = t.container AND o.key = t.key AND o.deleted_in IS NULL "
                    "WHERE t.plan = ? AND (t.state = 'removed' OR (t.state = 'done' AND "
                    f"{_SOURCE_DIFFERS}))",
                    (site, plan),
                ).fetchone()[0]
            )

    def not_taken_count(self, plan: str, site: str, datasets: Sequence[str]) -> int:
        """How many objects the latest inventory of the source `site` has in `datasets`
        (the plan's) that no transfer of the plan holds: new at the source since its phases
        took theirs, what a delta run would take."""
        if not datasets:
            return 0
        params: dict[str, object] = {"site": site, "plan": plan}
        params.update({f"d{i}": d for i, d in enumerate(datasets)})
        names = ", ".join(f":d{i}" for i in range(len(datasets)))
        with self._lock:
            (count,) = self._db.execute(
                "SELECT COUNT(*) FROM objects AS o INDEXED BY objects_dataset "
                f"WHERE o.site = :site AND o.dataset IN ({names}) AND o.deleted_in IS NULL "
                f"AND {_NOT_TAKEN}",
                params,
            ).fetchone()
        return int(count)

    def deleted_at_source_count(self, plan: str, site: str, *, removable: bool = False) -> int:
        """How many done transfers of the plan copied an object that the latest inventory
        of the source `site` marks deleted (their copies are still at the destination).
        `removable`: only those --delete-removed may remove (not a key a store keeping
        files may hold under another name: a//b)."""
        where = " AND migrate_portable(t.destination_key)" if removable else ""
        with self._lock:
            self._plan_functions()
            row = self._db.execute(
                f"SELECT COUNT(*) {self._DELETED_AT_SOURCE}{where}", (site, plan)
            ).fetchone()
        return int(row[0])

    def deleted_at_source(
        self, plan: str, site: str, *, after: tuple[str, str] | None = None, limit: int
    ) -> list[DeletedRow]:
        """One page of those transfers in (container, key) order, the first `limit` after
        `after` (a (container, key) of the previous page)."""
        sql = (
            "SELECT t.container, t.key, t.destination_bucket, t.destination_key, t.size, "
            "t.sha256, t.destination_etag " + self._DELETED_AT_SOURCE
        )
        args: list[object] = [site, plan]
        if after is not None:
            sql += " AND (t.container, t.key) > (?, ?)"
            args += list(after)
        args.append(limit)
        with self._lock:
            return [
                DeletedRow(*r)
                for r in self._db.execute(sql + " ORDER BY t.container, t.key LIMIT ?", args)
            ]

    def transfer_to_copy_again(
        self, plan: str, container: str, key: str, why: str, *, bytes_wrong: bool = False
    ) -> bool:
        """A done transfer whose destination object a verification found wrong goes back
        to `pending` (its sha256/md5 stay, as the record of the copy found wrong), so the
        next run of its phase copies it again; the phase is no longer finished nor verified.
        `bytes_wrong`: its size or checksum, not only its metadata (see `settle_gone`).
        Returns whether it changed (only a done transfer does)."""
        with self.atomic() as db:
            cur = db.execute(
                "UPDATE transfers SET state='pending', upload_id=NULL, part_size=NULL, "
                "error=?, recopy_reason=?, started_at=NULL, finished_at=NULL, "
                "bytes_disputed=? WHERE plan=? AND container=? AND key=? AND state='done'",
                (why, why, int(bytes_wrong), plan, container, key),
            )
            if cur.rowcount:
                db.execute(  # at once: a verification stopped half-way records nothing
                    "UPDATE phases SET finished_at=NULL, verified_at=NULL WHERE plan=? AND "
                    "phase=(SELECT phase FROM transfers WHERE plan=? AND container=? AND key=?)",
                    (plan, plan, container, key),
                )
        return cur.rowcount > 0

    def left_gone(self, plan: str, container: str, key: str) -> None:
        """A verification found empty the destination key of an object deleted at the
        source whose copy was left there to be removed by hand (removed since): no longer
        left, it counts as removed."""
        with self.atomic() as db:
            db.execute(
                "UPDATE transfers SET error=? WHERE plan=? AND container=? AND key=? "
                f"AND state='removed' AND error LIKE '%{BY_HAND}%'",
                (LEFT_GONE, plan, container, key),
            )

    def clear_recopy_reason(self, plan: str, container: str, key: str) -> None:
        """A verification found right what it had asked to copy again."""
        with self.atomic() as db:
            db.execute(
                "UPDATE transfers SET recopy_reason = NULL WHERE plan=? AND container=? AND key=?",
                (plan, container, key),
            )

    def destination_claimed(self, plan: str, bucket: str, key: str) -> bool:
        """Whether a transfer of the plan writes under this destination key."""
        with self._lock:
            return (
                self._db.execute(
                    "SELECT 1 FROM transfers WHERE plan=? AND destination_bucket=? "
                    "AND destination_key=? LIMIT 1",
                    (plan, bucket, key),
                ).fetchone()
                is not None
            )

    def transfer_removed(
        self, plan: str, container: str, key: str, *, already_gone: bool = False
    ) -> bool:
        """Record that the destination copy of an object deleted at the source was removed
        (state `removed`: the manifest and verification no longer expect it, and verify
        reports it if it is still there), or found gone already. Only a done transfer
        changes; returns whether this one did. Should the object come back at the source,
        the next delta phase copies it again."""
        now = _now()
        with self.atomic() as db:
            cur = db.execute(
                "UPDATE transfers SET state='removed', error='deleted at the source', "
                "finished_at=? WHERE plan=? AND container=? AND key=? AND state='done'",
                (now, plan, container, key),
            )
            if cur.rowcount > 0:
                db.execute(
                    "INSERT INTO removals SELECT plan, phase, container, key, "
                    "destination_bucket, destination_key, ?, ? FROM transfers "
                    "WHERE plan=? AND container=? AND key=?",
                    (now, int(already_gone), plan, container, key),
                )
        return cur.rowcount > 0

    def removals(self, plan: str, limit: int) -> tuple[list[RemovalRow], int, int]:
        """Every copy --delete-removed removed at the destination (or found gone already),
        kept even when the key was copied again since: the first `limit` by time, how many
        in all, and how many of them were found gone already."""
        with self._lock:
            count, gone = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(already_gone), 0) FROM removals WHERE plan=?",
                (plan,),
            ).fetchone()
            rows = self._db.execute(
                "SELECT phase, container, key, destination_bucket, destination_key, at, "
                "already_gone FROM removals WHERE plan=? ORDER BY at, container, key LIMIT ?",
                (plan, limit),
            ).fetchall()
        removals = [
            RemovalRow(str(ph), str(c), str(k), str(b), str(dk), str(at), bool(gone_one))
            for ph, c, k, b, dk, at, gone_one in rows
        ]
        return removals, int(count), int(gone)


# -- verification: rows ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DestinationRow:
    """A transfer as verification sees it, with the source's inventory attributes."""

    destination_bucket: str
    destination_key: str
    container: str
    key: str
    phase: str
    dataset: str
    size: int
    state: str
    sha256: str | None
    md5: str | None  # MD5 hex, or MD5-of-part-MD5s "-N" for a multipart copy
    destination_etag: str | None
    source_etag: str | None
    source_version: str | None
    error: str | None
    inventory_etag: str | None  # None also when the inventory no longer has the object
    content_type: str | None
    metadata: str | None  # JSON, or None when the source listing did not carry metadata
    headers: str | None = None  # JSON of the source's other headers, None where unknown
    recopy_reason: str | None = None  # why verify last asked for a copy again, if it did
    tags: str | None = None  # JSON of the tags the copy set; None: it set none


@dataclass(frozen=True, slots=True)
class ManifestRow:
    dataset: str
    destination_bucket: str
    destination_key: str
    container: str
    key: str
    size: int
    sha256: str | None
    source_etag: str | None
    source_version: str | None
    destination_etag: str | None
    source_proof: str  # the source's own checksum matched ("md5", "crc64nvme", ...), or "none"


def _fixed_candidate(r: Sequence[Any]) -> PhaseCandidate:
    """A PhaseCandidate from a row of a resolved phase's query: its columns, then whether
    an upload is under way and whether its source is gone (the run settles it)."""
    return PhaseCandidate(
        container=r[0],
        key=r[1],
        dataset=r[2],
        size=r[3],
        etag=r[4],
        checksums=r[5],
        destination_bucket=r[6],
        destination_key=r[7],
        state=r[8],
        previous_sha256=r[9],
        previous_md5=r[10],
        uploading=bool(r[11]),
        gone=bool(r[12]),
    )


def _manifest_row(r: Sequence[Any], proof: str) -> ManifestRow:
    """A manifest row from the first ten columns the manifest queries select."""
    return ManifestRow(r[0], r[1], r[2], r[3], r[4], int(r[5]), r[6], r[7], r[8], r[9], proof)


@dataclass(frozen=True, slots=True)
class NotCopiedRow:
    """An object a phase has not copied: failed (with why), changed at the source during
    its copy (left for a delta phase), or found wrong by a verification (to copy again)."""

    phase: str
    container: str
    key: str
    destination_bucket: str
    destination_key: str
    state: str  # failed | changed | found_wrong
    reason: str
    attempts: int


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One `migrate run` of a phase, refused at its gate too (see the `runs` migration)."""

    id: int
    plan: str
    phase: str
    started_at: str
    finished_at: str | None
    run_by: str
    tool_version: str
    options: str  # JSON object: overwrite, forced_reason, delete_removed, max_remove
    outcome: str | None  # None: no end recorded (killed, or under way)
    counts: RunCounts


@dataclass(frozen=True, slots=True)
class RunCounts:
    """What a run did, recorded with its end."""

    copied: int = 0
    bytes_copied: int = 0
    failed: int = 0
    conflicts: int = 0
    changed: int = 0
    removed: int = 0


@dataclass(frozen=True, slots=True)
class VerificationRecord:
    id: int
    plan: str
    phase: str | None  # None: the whole plan
    mode: str  # stored | deep | deep-both
    sample: float | None
    seed: int
    started_at: str
    finished_at: str
    passed: bool
    objects: int
    bytes: int
    reread: int
    summary: str  # JSON written by migrate.verify
    run_by: str | None  # None: recorded before who was kept
    tool_version: str | None


@dataclass(frozen=True, slots=True)
class TransferStats:
    phase: str
    dataset: str
    state: str
    objects: int
    bytes: int
    attempts: int
    retries: int
    first_started: str | None
    last_finished: str | None
    run_started: str | None = None  # the run of the phase that finished them (its start)


@dataclass(frozen=True, slots=True)
class TimelinePoint:
    at: str  # ISO 8601 start of the second, minute or hour
    objects: int
    bytes: int


# Built once: json.dumps with options builds an encoder for every call (~2 µs, per listed
# object in an inventory).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def dumps(value: object) -> str:
    """Canonical JSON for values stored in the ledger."""
    return _CANONICAL.encode(value)


# -- plans: rows and SQL fragments ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlanDatasetStats:
    """One dataset of a site's current inventory, aggregated for planning."""

    dataset: str
    container: str
    objects: int
    bytes: int
    max_size: int
    max_key_bytes: int
    over_key_limit: int  # objects whose key is longer (UTF-8 bytes) than the limit asked
    over_segment_limit: int  # objects with a path segment longer than the limit asked
    over_size_limit: int  # objects larger than the limit asked
    versioned: int  # objects with a version id
    folder_keys: int  # keys ending with '/' or the folder of others (when asked; else 0)
    size_classes: tuple[tuple[int, int], ...]  # (objects, bytes) per class, in bound order
    flags: tuple[tuple[int, int, int], ...]  # (bit, objects, bytes) per flag bit asked


@dataclass(frozen=True, slots=True)
class PlanTierStats:
    dataset: str
    tier: str | None
    objects: int
    bytes: int
    archived: int
    archived_bytes: int


@dataclass(frozen=True, slots=True)
class Approval:
    plan: str
    digest: str
    approved_by: str
    approved_at: str
    path: str
    # From record_approval: whether that call recorded it (False: the digest was approved
    # already, and the first approval stands).
    recorded_now: bool = field(default=False, compare=False)


@dataclass(frozen=True, slots=True)
class ApprovalEvent:
    """One `plan approve`: took_effect False when the digest stood approved already (by
    whoever approved it first: a second approver, or the same one again)."""

    plan: str
    digest: str
    approved_by: str
    approved_at: str
    path: str
    took_effect: bool


@dataclass(frozen=True, slots=True)
class PhaseCandidate:
    """An object of a phase, as a dry run sees it."""

    container: str
    key: str
    dataset: str
    size: int
    etag: str | None
    checksums: str | None  # JSON, as the inventory stores it
    destination_bucket: str
    destination_key: str
    state: str | None  # the transfer's state; None: the phase is not resolved yet
    previous_sha256: str | None  # sha256 of an earlier copy of this object by the plan
    previous_md5: str | None  # its MD5 (MD5 of part MD5s "-N" when multipart)
    # An upload of it under way: this plan's own write (completed once its key is free).
    uploading: bool = False
    # Still to copy but gone from the source: a run settles it (`settle_gone`), copies none.
    gone: bool = False


_EXAMPLE_CONDITIONS = {
    "flag": "(flags & :v) != 0",
    "key_bytes": "length(CAST(key AS BLOB)) > :v",
    "segment_bytes": "length(CAST(key AS BLOB)) > :v AND migrate_max_segment(key) > :v",
    # A key ending with '/', or the folder of another key of its container (keys between
    # `key/` and `key0`, '0' following '/': one seek in the primary key).
    "folder_key": (
        "(substr(key, -1) = '/' OR EXISTS (SELECT 1 FROM objects AS f WHERE f.site = "
        "objects.site AND f.container = objects.container AND f.key > objects.key || '/' "
        "AND f.key < objects.key || '0' AND f.deleted_in IS NULL))"
    ),
    "size": "size > :v",
    "tier": "storage_class = :v",
}


def _is_utf8(text: str) -> bool:
    """False for a str holding surrogates (a local file name that is not UTF-8)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _max_segment_bytes(key: str) -> int:
    """The longest '/'-separated segment of a key, in UTF-8 bytes."""
    return max(len(s.encode("utf-8", "surrogateescape")) for s in key.split("/"))


def _mapping_cte(plan: Plan, params: dict[str, object]) -> str:
    """The plan's mappings as a CTE `m(dataset, bucket, sprefix, dprefix)`, read from one
    parameter (a JSON array): four parameters a mapping passed SQLite's limit on bound
    variables (32,766 in most builds) at ~8,200 datasets."""
    params["mappings"] = json.dumps(
        [
            [m.dataset, m.destination_bucket, m.source_prefix, m.destination_prefix]
            for m in plan.mappings
        ],
        ensure_ascii=False,
    )
    fields = ", ".join(f"json_extract(value, '$[{i}]')" for i in range(4))
    return f"m(dataset, bucket, sprefix, dprefix) AS (SELECT {fields} FROM json_each(:mappings))"


# A transfer `t` of phase :phase still to copy, with no upload under way, whose source
# object the latest inventory no longer has: see `Ledger.gone_at_source`.
_GONE = (
    "t.plan = :plan AND t.phase = :phase AND t.state IN ('pending', 'failed', 'changed') "
    "AND t.upload_id IS NULL AND NOT EXISTS (SELECT 1 FROM objects AS g "
    "WHERE g.site = :site AND g.container = t.container AND g.key = t.key "
    # Below 0: in a container the site no longer lists, not known gone (see
    # finish_inventory_run).
    "AND (g.deleted_in IS NULL OR g.deleted_in < 0))"
)


# The source object `o`, as the latest inventory has it, is no longer the one transfer `t`
# took: another ETag or size; metadata rewritten in place (the same ETag on S3, a later
# time; unknown for transfers taken before the time was recorded: NULL, never true); or,
# within the same second (times are to the second), another version id in a versioned
# bucket.
# The inventory's object `o` is no transfer's of the plan (:plan): no phase has taken it.
_NOT_TAKEN = (
    "NOT EXISTS (SELECT 1 FROM transfers AS t WHERE t.plan = :plan "
    "AND t.container = o.container AND t.key = o.key)"
)

# A copy a verification sent back to be copied again: pending, its reason still its error.
_FOUND_WRONG = "(t.state = 'pending' AND t.recopy_reason IS NOT NULL AND t.error = t.recopy_reason)"

_SOURCE_DIFFERS = (
    "(o.etag IS NOT t.source_etag OR o.size != t.size "
    "OR julianday(o.last_modified) > julianday(t.source_modified) "
    "OR o.version_id != t.source_version)"
)


def _changed_where(datasets: Sequence[str], params: dict[str, object]) -> str:
    """Transfers `t` of the plan whose source object `o` changed since it was copied (or
    during its copy), or came back at the source after its copy was removed at the
    destination (state `removed`); and those of the phase itself still to copy whose
    source changed since they were taken (their recorded ETag and size are refreshed, and
    an upload a stopped run left under way dropped: its parts are of the bytes before)."""
    where = (
        "t.plan = :plan AND o.site = :site "
        "AND o.container = t.container AND o.key = t.key AND o.deleted_in IS NULL "
        "AND (t.state IN ('changed', 'removed') OR ((t.state = 'done' OR (t.phase = :phase "
        f"AND t.state IN ('pending', 'failed', 'in_progress'))) AND {_SOURCE_DIFFERS}) "
        # copies a verification found wrong, of any earlier phase: the cutover's run, in the
        # freeze, copies them itself (it left them to their phase's run, and then failed
        # its verification of the whole plan: a walkthrough)
        f"OR {_FOUND_WRONG})"
    )
    if datasets:
        names = []
        for i, dataset in enumerate(datasets):
            params[f"c_d{i}"] = dataset
            names.append(f":c_d{i}")
        where += f" AND t.dataset IN ({', '.join(names)})"
    return where
