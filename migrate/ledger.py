"""The ledger: the one owner of the state file (SQLite, WAL). No other module runs SQL.

Each state change is a named method running in one transaction, so a kill -9 at any
instant leaves either the state before or the state after it. Schema changes are named
migrations, recorded in `schema_migrations` and applied in order on open.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

STATE_FILE = "state.db"

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
]


@dataclass(frozen=True, slots=True)
class InventoryRow:
    """One listed object as the inventory stores it."""

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


_TRANSFER_COLUMNS = (
    "container, key, phase, dataset, size, source_etag, source_version, source_checksums, "
    "destination_bucket, destination_key, state, upload_id, part_size"
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
class RouteUse:
    """One host contacted during a plan's runs: the route attestation."""

    host: str
    scheme: str
    requests: int
    bytes_sent: int
    first_seen: str
    last_seen: str


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Ledger:
    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / STATE_FILE
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._depth = 0
        # Executor threads share this connection: one transaction at a time.
        self._lock = threading.RLock()
        self._migrate()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def atomic(self) -> Iterator[sqlite3.Connection]:
        """One transaction; nested calls become savepoints. Rolls back on any exception."""
        with self._lock:
            yield from self._transaction()

    def _transaction(self) -> Iterator[sqlite3.Connection]:
        name = f"sp{self._depth}"
        self._db.execute("BEGIN IMMEDIATE" if self._depth == 0 else f"SAVEPOINT {name}")
        self._depth += 1
        try:
            yield self._db
        except BaseException:
            self._depth -= 1
            if self._depth == 0:
                self._db.execute("ROLLBACK")
            else:
                self._db.execute(f"ROLLBACK TO {name}")
                self._db.execute(f"RELEASE {name}")
            raise
        self._depth -= 1
        self._db.execute("COMMIT" if self._depth == 0 else f"RELEASE {name}")

    def _migrate(self) -> None:
        with self.atomic() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            applied = {row[0] for row in db.execute("SELECT version FROM schema_migrations")}
            for version, (name, sql) in enumerate(_MIGRATIONS, start=1):
                if version in applied:
                    continue
                for statement in sql.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, ?)", (version, name, _now())
                )

    # -- inventory -------------------------------------------------------------------------

    def open_inventory_run(self, site: str, prefix: str) -> tuple[int, bool]:
        """The unfinished run of this site and prefix (resume), else a new one.
        Returns (run id, resumed)."""
        with self.atomic() as db:
            row = db.execute(
                "SELECT id FROM inventory_runs WHERE site=? AND prefix=? AND finished_at IS NULL "
                "ORDER BY id DESC LIMIT 1",
                (site, prefix),
            ).fetchone()
            if row:
                return int(row[0]), True
            cur = db.execute(
                "INSERT INTO inventory_runs (site, prefix, started_at) VALUES (?, ?, ?)",
                (site, prefix, _now()),
            )
            return int(cur.lastrowid or 0), False

    def listing_state(self, run_id: int, container: str) -> ListingState:
        row = self._db.execute(
            "SELECT marker, done FROM listings WHERE run_id=? AND container=?",
            (run_id, container),
        ).fetchone()
        return ListingState(marker=row[0], done=bool(row[1])) if row else ListingState(None, False)

    def record_listing_page(
        self, site: str, run_id: int, container: str, rows: Sequence[InventoryRow], done: bool
    ) -> None:
        """Store one page of a listing and move the resume marker past it, atomically."""
        with self.atomic() as db:
            db.executemany(
                """
                INSERT INTO objects (site, container, key, dataset, size, etag, last_modified,
                    checksums, storage_class, archived, version_id, content_type, metadata,
                    flags, first_seen, last_seen)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (site, container, key) DO UPDATE SET
                    changed_in = CASE
                        WHEN objects.deleted_in IS NOT NULL THEN excluded.last_seen
                        WHEN objects.etag IS NOT excluded.etag OR objects.size != excluded.size
                            OR objects.version_id IS NOT excluded.version_id
                        THEN excluded.last_seen ELSE objects.changed_in END,
                    first_seen = CASE WHEN objects.deleted_in IS NOT NULL
                        THEN excluded.first_seen ELSE objects.first_seen END,
                    dataset = excluded.dataset, size = excluded.size, etag = excluded.etag,
                    last_modified = excluded.last_modified, checksums = excluded.checksums,
                    storage_class = excluded.storage_class, archived = excluded.archived,
                    version_id = excluded.version_id, content_type = excluded.content_type,
                    metadata = excluded.metadata, flags = excluded.flags,
                    last_seen = excluded.last_seen, deleted_in = NULL
                """,
                [
                    (
                        site,
                        r.container,
                        r.key,
                        r.dataset,
                        r.size,
                        r.etag,
                        r.last_modified,
                        r.checksums,
                        r.storage_class,
                        int(r.archived),
                        r.version_id,
                        r.content_type,
                        r.metadata,
                        r.flags,
                        run_id,
                        run_id,
                    )
                    for r in rows
                ],
            )
            marker = rows[-1].key if rows else None
            db.execute(
                """
                INSERT INTO listings (run_id, container, marker, done, pages)
                VALUES (?, ?, ?, ?, 1)
                ON CONFLICT (run_id, container) DO UPDATE SET
                    marker = COALESCE(excluded.marker, listings.marker),
                    done = excluded.done, pages = listings.pages + 1
                """,
                (run_id, container, marker, int(done)),
            )

    def finish_inventory_run(
        self, site: str, run_id: int, containers: Sequence[str], prefix: str
    ) -> RunChanges:
        """Mark what this run did not see as deleted at the source; return the run's changes."""
        with self.atomic() as db:
            for container in containers:
                db.execute(
                    "UPDATE objects SET deleted_in=? WHERE site=? AND container=? "
                    "AND last_seen < ? AND deleted_in IS NULL AND substr(key, 1, ?) = ?",
                    (run_id, site, container, run_id, len(prefix), prefix),
                )
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
        return RunChanges(run_id, first, added or 0, changed or 0, deleted or 0)

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

    def inventory_objects(self, site: str, container: str | None = None) -> Iterator[InventoryRow]:
        """Stream a site's current inventory in key order (a cursor, not a list)."""
        sql = (
            "SELECT container, key, dataset, size, etag, last_modified, checksums, "
            "storage_class, archived, version_id, content_type, metadata, flags "
            "FROM objects WHERE site=? AND deleted_in IS NULL"
        )
        args: tuple[str, ...] = (site,)
        if container is not None:
            sql += " AND container=?"
            args = (site, container)
        cursor = self._db.execute(sql + " ORDER BY container, key", args)
        for row in cursor:
            yield InventoryRow(
                container=row[0],
                key=row[1],
                dataset=row[2],
                size=row[3],
                etag=row[4],
                last_modified=row[5],
                checksums=row[6],
                storage_class=row[7],
                archived=bool(row[8]),
                version_id=row[9],
                content_type=row[10],
                metadata=row[11],
                flags=row[12],
            )

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
        self, plan: str, phase: str, after: tuple[str, str] | None, limit: int
    ) -> list[TransferRow]:
        """The phase's objects not yet done (pending, in progress, failed), in key order,
        one batch at a time (keyset pagination: no cursor held across writes)."""
        sql = (
            f"SELECT {_TRANSFER_COLUMNS} FROM transfers WHERE plan=? AND phase=? "
            "AND state IN ('pending', 'in_progress', 'failed')"
        )
        args: list[object] = [plan, phase]
        if after is not None:
            sql += " AND (container, key) > (?, ?)"
            args += list(after)
        sql += " ORDER BY container, key LIMIT ?"
        args.append(limit)
        with self._lock:
            return [TransferRow(*row) for row in self._db.execute(sql, args)]

    def done_parts(self, plan: str, container: str, key: str, upload_id: str) -> dict[int, str]:
        with self._lock:
            return {
                int(n): str(md5)
                for n, md5 in self._db.execute(
                    "SELECT part_number, md5 FROM parts WHERE plan=? AND container=? AND key=? "
                    "AND upload_id=?",
                    (plan, container, key, upload_id),
                )
            }

    def transfer_started(
        self, plan: str, container: str, key: str, upload_id: str | None, part_size: int | None
    ) -> None:
        with self.atomic() as db:
            db.execute(
                "UPDATE transfers SET state='in_progress', upload_id=?, part_size=?, "
                "attempts=attempts+1, started_at=COALESCE(started_at, ?) "
                "WHERE plan=? AND container=? AND key=?",
                (upload_id, part_size, _now(), plan, container, key),
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
    ) -> None:
        """The only way an object becomes done: with the checksums that prove it."""
        with self.atomic() as db:
            db.execute(
                "UPDATE transfers SET state='done', sha256=?, md5=?, destination_etag=?, "
                "error=?, retries=retries+?, finished_at=? "
                "WHERE plan=? AND container=? AND key=?",
                (
                    sha256,
                    md5,
                    destination_etag,
                    f"source-proof:{source_proof}",
                    retries,
                    _now(),
                    plan,
                    container,
                    key,
                ),
            )
            db.execute(
                "DELETE FROM parts WHERE plan=? AND container=? AND key=?", (plan, container, key)
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

    def recorded_uploads(self, plan: str) -> set[tuple[str, str, str]]:
        """(destination bucket, destination key, upload id) of uploads the plan still owns."""
        with self._lock:
            return {
                (b, k, u)
                for b, k, u in self._db.execute(
                    "SELECT destination_bucket, destination_key, upload_id FROM transfers "
                    "WHERE plan=? AND upload_id IS NOT NULL AND state != 'done'",
                    (plan,),
                )
            }

    def is_destination_key(self, plan: str, bucket: str, key: str) -> bool:
        with self._lock:
            return (
                self._db.execute(
                    "SELECT 1 FROM transfers WHERE plan=? AND destination_bucket=? "
                    "AND destination_key=? LIMIT 1",
                    (plan, bucket, key),
                ).fetchone()
                is not None
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

    def failures(self, plan: str, phase: str, limit: int = 50) -> list[tuple[str, str, str]]:
        with self._lock:
            return [
                (c, k, e or "")
                for c, k, e in self._db.execute(
                    "SELECT container, key, error FROM transfers WHERE plan=? AND phase=? "
                    "AND state IN ('failed', 'changed') ORDER BY container, key LIMIT ?",
                    (plan, phase, limit),
                )
            ]

    def phase_mark(self, plan: str, phase: str, column: str, reason: str | None = None) -> None:
        """Record started_at, finished_at or verified_at (and a forced gate's reason)."""
        if column not in ("started_at", "finished_at", "verified_at"):
            raise ValueError(column)
        with self.atomic() as db:
            db.execute(
                "INSERT INTO phases (plan, phase) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (plan, phase),
            )
            db.execute(
                f"UPDATE phases SET {column}=?, forced_reason=COALESCE(?, forced_reason) "
                "WHERE plan=? AND phase=?",
                (_now(), reason, plan, phase),
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


def dumps(value: object) -> str:
    """Canonical JSON for values stored in the ledger."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
