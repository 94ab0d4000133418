"""Inventory: what the user lists is what the state holds; interrupted listings resume,
later ones record changes; memory stays bounded."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from migrate.inventory import Flag, run_inventory
from migrate.ledger import Ledger
from migrate.sites import Site, SitesConfig
from providers.base import ObjectInfo
from providers.factory import build_adapter
from tests.conftest import SiteFactory, unique_name
from tests.helpers import FailingListing, body, put, seed


def config_for(site: Site, tmp_path: Path, buckets: tuple[str, ...]) -> SitesConfig:
    site = site.model_copy(update={"buckets": buckets})
    return SitesConfig(
        path=tmp_path / "sites.toml", state_dir=tmp_path / "state", sites={site.name: site}
    )


@pytest.mark.parametrize("kind", ["local", "s3", "azure"])
def test_inventory_of_10000_objects_matches_what_was_written(
    kind: str, site_for: SiteFactory, tmp_path: Path
) -> None:
    site = site_for(kind)
    adapter = build_adapter(site)
    container = unique_name("inv")
    adapter.create_container(container)
    written = seed(adapter, container, 10_000)
    config = config_for(site, tmp_path, (container,))

    summary = run_inventory(config, site.name, adapter)

    assert summary.objects == len(written)
    assert summary.bytes == sum(len(b) for b in written.values())
    with Ledger(config.state_dir) as ledger:
        rows = list(ledger.inventory_objects(site.name))
    assert [r.key for r in rows] == sorted(written)
    for row in rows:
        assert row.size == len(written[row.key])
        if row.checksums:  # stores with a native checksum: it is the bytes' MD5
            md5 = json.loads(row.checksums)["md5"]
            assert md5 == hashlib.md5(written[row.key]).hexdigest()
    if kind != "local":
        assert all(r.checksums for r in rows), "S3 and Azure give an MD5 for single PUTs"


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_an_interrupted_listing_resumes_where_it_stopped(
    kind: str, site_for: SiteFactory, tmp_path: Path
) -> None:
    site = site_for(kind)
    adapter = build_adapter(site)
    container = unique_name("resume")
    adapter.create_container(container)
    written = seed(adapter, container, 2_500)
    config = config_for(site, tmp_path, (container,))

    with pytest.raises(ConnectionResetError):
        run_inventory(config, site.name, FailingListing(adapter, fail_after=1_700))  # type: ignore[arg-type]
    with Ledger(config.state_dir) as ledger:
        stored = sum(1 for _ in ledger.inventory_objects(site.name))
    assert stored == 1_000  # the pages stored before the break

    listed: list[str] = []

    class Recording(FailingListing):
        def list_objects(self, container: str, prefix: str = "", start_after: str | None = None):  # type: ignore[no-untyped-def]
            for obj in adapter.list_objects(container, prefix, start_after):
                listed.append(obj.key)
                yield obj

    summary = run_inventory(config, site.name, Recording(adapter, 10**9))  # type: ignore[arg-type]
    assert summary.resumed
    assert summary.objects == len(written)
    assert len(listed) == 1_500, "the resumed listing starts after the last stored page"


def test_an_inventory_started_while_another_lists_the_site_supersedes_it(
    local_site: Site, tmp_path: Path
) -> None:
    """Two terminals, one site: the second took the first's unfinished run for an
    interrupted one and resumed it while the first still listed it (both exited 0, the
    pages listed twice: a review). It lists anew, and the first stops at its next page
    (exit 14), as the README says; a run a crash left unfinished is still resumed."""
    import threading

    from migrate.errors import InventorySuperseded

    adapter = build_adapter(local_site)
    adapter.create_container("data")
    written = seed(adapter, "data", 2_500)
    config = config_for(local_site, tmp_path, ("data",))
    stored, go_on = threading.Event(), threading.Event()

    class Pausing(FailingListing):
        def list_objects(self, container: str, prefix: str = "", start_after: str | None = None):  # type: ignore[no-untyped-def]
            for n, obj in enumerate(adapter.list_objects(container, prefix, start_after)):
                if n == 1_500:  # its first page is stored: it is listing
                    stored.set()
                    go_on.wait(30)
                yield obj

    first: list[BaseException] = []

    def listing() -> None:
        try:
            run_inventory(config, local_site.name, Pausing(adapter, 10**9))  # type: ignore[arg-type]
        except BaseException as exc:
            first.append(exc)

    older = threading.Thread(target=listing)
    older.start()
    assert stored.wait(30)
    try:
        second = run_inventory(config, local_site.name, adapter)
    finally:
        go_on.set()
        older.join(30)
    assert not second.resumed and second.listed == second.objects == len(written)
    assert len(first) == 1 and isinstance(first[0], InventorySuperseded), first
    assert first[0].exit_code == 14
    # Interrupted (its process gone), a listing is resumed as before.
    with pytest.raises(ConnectionResetError):
        run_inventory(config, local_site.name, FailingListing(adapter, fail_after=1_700))  # type: ignore[arg-type]
    assert run_inventory(config, local_site.name, adapter).resumed
    # Interrupted, then superseded by a re-list (a delta's): no lock file stays behind for
    # a run no inventory resumes (a review found one left for each).
    with pytest.raises(ConnectionResetError):
        run_inventory(config, local_site.name, FailingListing(adapter, fail_after=1_700))  # type: ignore[arg-type]
    assert not run_inventory(config, local_site.name, adapter, resume=False).resumed
    assert list((config.state_dir / "locks").glob("inventory-run-*")) == []


def test_an_inventory_where_files_cannot_be_locked_lists_as_before(
    local_site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some NFS mounts have no locks (ENOLCK): the listing goes on as before there were
    these locks, not an unexpected error (a review)."""
    import errno
    import fcntl

    adapter = build_adapter(local_site)
    adapter.create_container("data")
    written = seed(adapter, "data", 30)
    config = config_for(local_site, tmp_path, ("data",))

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    assert run_inventory(config, local_site.name, adapter).objects == len(written)


def test_a_second_inventory_records_what_changed(local_site: Site, tmp_path: Path) -> None:
    adapter = build_adapter(local_site)
    adapter.create_container("data")
    seed(adapter, "data", 50)
    config = config_for(local_site, tmp_path, ("data",))
    first = run_inventory(config, local_site.name, adapter)
    assert first.first and first.objects == 50

    put(adapter, "data", "obj/000003", body(999, 500))  # changed
    adapter.delete("data", "obj/000004")  # deleted
    put(adapter, "data", "new/one", b"new")  # added
    second = run_inventory(config, local_site.name, adapter)

    assert not second.first
    assert (second.added, second.changed, second.deleted) == (1, 1, 1)
    assert second.objects == 50
    assert {d.dataset for d in second.datasets} == {"data/obj/", "data/new/"}


def test_objects_that_will_not_move_as_they_are_are_flagged() -> None:
    from migrate.inventory import flags_of

    def obj(**kw: object) -> ObjectInfo:
        base: dict[str, object] = {
            "container": "c",
            "key": "k",
            "size": 1,
            "checksums": {"md5": "0" * 32},
        }
        base.update(kw)
        return ObjectInfo(**base)  # type: ignore[arg-type]

    assert flags_of(obj()) == Flag(0)
    assert Flag.KEY_TOO_LONG in flags_of(obj(key="é" * 513))
    assert Flag.METADATA_TOO_LARGE in flags_of(obj(metadata={"note": "x" * 2100}))
    # Under 2 KB at the source, over it with the SHA-256 and source time each copy adds.
    assert Flag.METADATA_TOO_LARGE in flags_of(obj(metadata={"note": "x" * 1950}))
    assert Flag.METADATA_TOO_LARGE not in flags_of(obj(metadata={"note": "x" * 1800}))
    # An earlier migration's own names are not carried: not counted.
    earlier = {"note": "x" * 1800, "migrate-sha256": "0" * 64, "migrate-part-size": "8388608"}
    assert Flag.METADATA_TOO_LARGE not in flags_of(obj(metadata=earlier))
    assert Flag.METADATA_BAD_NAME in flags_of(obj(metadata={"bad name": "v"}))
    assert Flag.METADATA_BAD_NAME in flags_of(obj(metadata={"name": "é"}))
    assert Flag.ARCHIVED in flags_of(obj(archived=True, storage_class="Archive"))
    assert Flag.TOO_LARGE in flags_of(obj(size=5 * 1024**4 + 1))
    assert Flag.NO_CHECKSUM in flags_of(obj(checksums={}))
    for key in ("a//b", "/a", "a/./b", "a/../b", "a/..", "a\\b"):  # a\b is a/b on SeaweedFS
        assert Flag.KEY_NOT_PORTABLE in flags_of(obj(key=key)), key
    for key in ("a/b", "a/.b/c", "a..b"):  # a dot file: as they are
        assert Flag.KEY_NOT_PORTABLE not in flags_of(obj(key=key)), key
    # A folder marker (no bytes) is; bytes under a folder's name are kept by no file tree.
    assert Flag.KEY_NOT_PORTABLE not in flags_of(obj(key="a/", size=0))
    assert Flag.KEY_NOT_PORTABLE in flags_of(obj(key="a/", size=1))
    marker = {"hdi_isfolder": "true"}  # an ADLS Gen2 directory, as the Blob API lists it
    assert Flag.DIRECTORY_MARKER in flags_of(obj(key="cohort/2025", size=0, metadata=marker))
    assert Flag.DIRECTORY_MARKER not in flags_of(obj(key="cohort/x", size=3, metadata=marker))
    assert Flag.DIRECTORY_MARKER not in flags_of(obj(key="cohort/empty.csv", size=0))
    accented = 'attachment; filename="résumé.pdf"'
    assert Flag.HEADER_NOT_ASCII in flags_of(obj(content_disposition=accented, metadata={}))
    assert Flag.HEADER_NOT_ASCII not in flags_of(obj(content_disposition="inline", metadata={}))


@pytest.mark.slow
def test_inventory_of_200000_objects_stays_under_150_mib(tmp_path: Path) -> None:
    root = tmp_path / "store"
    for d in range(200):  # 200 directories of 1,000 empty files
        folder = root / "bulk" / f"d{d:03d}"
        folder.mkdir(parents=True)
        for i in range(1000):
            (folder / f"f{i:04d}").touch()
    sites = tmp_path / "sites.toml"
    sites.write_text(f'[sites.big]\nprovider = "local"\npath = "{root}"\nbuckets = ["bulk"]\n')
    # VmHWM, not ru_maxrss: ru_maxrss survives execve, so a child forked from a large
    # pytest process would report the parent's size; VmHWM belongs to the new process image.
    script = (
        "import sys\n"
        "from migrate.cli import main\n"
        "code = main(['inventory', 'big', '--sites', sys.argv[1], '--json'])\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
        "print(int(hwm.split()[1]), file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(sites)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ},
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["datasets"][0]["objects"] == 1000  # one dataset per dir
    total = sum(d["objects"] for d in json.loads(proc.stdout)["datasets"])
    assert total == 200_000
    peak_mib = int(proc.stderr.strip().splitlines()[-1]) / 1024
    assert peak_mib < 150, f"peak RSS {peak_mib:.0f} MiB"


def test_a_listing_stops_with_the_inventory_and_is_never_more_than_a_few_pages_ahead(
    local_site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The listing runs a page ahead of the state's writes, in a thread of its own: when a
    write fails the user gets that error, and the listing stops (an endless store here)."""
    adapter = build_adapter(local_site)
    container = unique_name("ahead")
    adapter.create_container(container)
    config = config_for(local_site, tmp_path, (container,))
    listed = [0]

    class Endless(FailingListing):
        def list_objects(self, container: str, prefix: str = "", start_after: str | None = None):  # type: ignore[no-untyped-def]
            while True:
                listed[0] += 1
                yield ObjectInfo(container=container, key=f"k{listed[0]:09d}", size=1)

    def disk_full(*args: object, **kwargs: object) -> None:
        time.sleep(0.5)  # a slow disk, then a full one: the listing waits meanwhile
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Ledger, "record_listing_page", disk_full)
    with pytest.raises(OSError, match="No space left"):
        run_inventory(config, local_site.name, Endless(adapter, 0))  # type: ignore[arg-type]
    # The listing has stopped by the time the error reaches the caller, who may close the
    # adapter next: no request after that.
    assert not [t for t in threading.enumerate() if t.name == "migrate-list" and t.is_alive()]
    assert listed[0] <= 3 * 1000 + 1, f"{listed[0]} objects listed ahead of one failed page"


def test_a_listing_found_out_of_order_is_listed_again_from_the_start(
    site_for: SiteFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SeaweedFS behind a proxy that hides its Server header, its software undeclared:
    its path order stops the inventory part-way. Once the software is declared, the next
    run lists the container again from its first key: resuming after the page already
    stored would never list the keys path order put after it, and call them deleted."""
    import migrate.inventory
    from migrate.errors import ListingOutOfOrder

    monkeypatch.setattr(migrate.inventory, "PAGE", 1)
    undeclared = site_for("s3").model_copy(update={"software": None})
    adapter = build_adapter(undeclared)
    container = unique_name("order")
    adapter.create_container(container)
    for key in ("a b", "a/b", "c"):  # listed in path order: a/b, a b, c
        put(adapter, container, key, b"x")
    adapter._walk_listing = False  # type: ignore[attr-defined]  # the header hidden
    config = config_for(undeclared, tmp_path, (container,))
    with pytest.raises(ListingOutOfOrder, match="declare its software"):
        run_inventory(config, undeclared.name, adapter)
    declared = undeclared.model_copy(update={"software": "seaweedfs"})
    summary = run_inventory(config_for(declared, tmp_path, (container,)), declared.name,
                            build_adapter(declared))  # fmt: skip
    assert summary.objects == 3
    with Ledger(config.state_dir) as ledger:
        assert [r.key for r in ledger.inventory_objects(declared.name)] == ["a b", "a/b", "c"]


def test_a_resumed_first_listing_counts_the_prefixes_listed_before_the_break(
    local_site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A container is one dataset once its first listing has found more top-level prefixes
    than the limit, the pages stored before an interruption counted too."""
    monkeypatch.setattr("migrate.inventory.WHOLE_CONTAINER_AFTER", 1_600)
    adapter = build_adapter(local_site)
    container = unique_name("cases")
    adapter.create_container(container)
    for i in range(2_500):
        put(adapter, container, f"case-{i:05d}/report.txt", b"%d" % i)
    config = config_for(local_site, tmp_path, (container,))
    with pytest.raises(ConnectionResetError):
        run_inventory(config, local_site.name, FailingListing(adapter, fail_after=1_700))  # type: ignore[arg-type]

    summary = run_inventory(config, local_site.name, adapter)
    assert summary.resumed
    assert [(d.dataset, d.objects, d.whole_container) for d in summary.datasets] == [
        (f"{container}/", 2_500, True)
    ]


def test_a_container_first_listed_under_a_prefix_or_empty_is_grouped_when_it_holds_objects(
    local_site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first inventory under a --prefix keeps one dataset a prefix for good (a plan made
    from it maps prefixes: one whole container would take in what it left out); a
    container empty at its first listing is decided once objects come."""
    monkeypatch.setattr("migrate.inventory.WHOLE_CONTAINER_AFTER", 3)
    adapter = build_adapter(local_site)
    partial, empty = unique_name("partial"), unique_name("empty")
    for container in (partial, empty):
        adapter.create_container(container)
    for i in range(6):
        put(adapter, partial, f"p{i}/x.txt", b"x")
    run_inventory(config_for(local_site, tmp_path, (empty,)), local_site.name, adapter)
    config = config_for(local_site, tmp_path, (partial, empty))
    run_inventory(config, local_site.name, adapter, prefix="p1/")
    for i in range(6):
        put(adapter, empty, f"case-{i}/x.txt", b"x")
    summary = run_inventory(config, local_site.name, adapter)
    datasets = {d.dataset: d.whole_container for d in summary.datasets}
    assert datasets == {f"{empty}/": True, **{f"{partial}/p{i}/": False for i in range(6)}}


def test_a_listing_lock_swept_while_it_is_taken_is_taken_anew(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process's sweep may remove the lock file of a run just made and not yet
    committed (so not resumable to it) between its opening and its locking: the lock
    held was on a removed file, and a third process resumed the run while it was listed
    (a review). It is taken anew on the file there is."""
    import fcntl

    from migrate.planlock import ListingClaims

    real = fcntl.flock
    mine, sweeping, other = (ListingClaims(tmp_path) for _ in range(3))
    swept: list[bool] = []

    def flock(fd: int, operation: int) -> None:
        if not swept:  # the sweep, in that moment
            swept.append(True)
            sweeping.sweep(lambda run_id: False)
        real(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock)
    assert mine.take(7) and swept
    monkeypatch.setattr(fcntl, "flock", real)
    assert not other.take(7), "held: no other process may take the run"
    mine.release()
    assert other.take(7)
    other.release()


def test_a_sweep_never_removes_a_lock_file_made_anew_since_it_opened_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweep opens a run's old file; another sweep removes it, and a process makes the
    file anew and takes the run; the first sweep's lock (on the removed file) succeeds: it
    removed the new file, and a third process took the run being listed (a review)."""
    import fcntl

    from migrate.planlock import ListingClaims

    real = fcntl.flock
    first, second, mine, other = (ListingClaims(tmp_path) for _ in range(4))
    assert mine.take(7)  # an old file of run 7, given back
    mine.release()
    hooked: list[bool] = []

    def flock(fd: int, operation: int) -> None:
        if not hooked:
            hooked.append(True)
            second.sweep(lambda run_id: False)  # removes the old file
            assert mine.take(7)  # the file made anew, the run taken
        real(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock)
    first.sweep(lambda run_id: False)
    monkeypatch.setattr(fcntl, "flock", real)
    assert hooked and (tmp_path / "locks" / "inventory-run-7.lock").exists()
    assert not other.take(7), "held: no other process may take the run"
    mine.release()


def test_a_run_taken_while_a_sweep_holds_its_old_file_is_taken_once_it_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweep holds a run's file for a moment before removing it: a process taking the
    run then (a new run, not committed yet) gave up at once, listed it without a lock,
    and a third process took it (a review). It asks again, and takes the new file."""
    import threading
    from pathlib import Path as P

    from migrate.planlock import ListingClaims

    sweeping, mine, other = (ListingClaims(tmp_path) for _ in range(3))
    assert mine.take(7)
    mine.release()
    holding, go_on = threading.Event(), threading.Event()
    real_unlink = P.unlink

    def unlink(self: P, missing_ok: bool = False) -> None:
        if self.name == "inventory-run-7.lock" and not holding.is_set():
            holding.set()  # the sweep holds the file now
            go_on.wait(5)
            threading.Event().wait(0.05)
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(P, "unlink", unlink)
    sweep = threading.Thread(target=sweeping.sweep, args=(lambda run_id: False,))
    sweep.start()
    assert holding.wait(5)
    go_on.set()
    taken = mine.take(7)
    sweep.join(5)
    assert taken, "asked again once the sweep was done"
    assert not other.take(7), "held: no other process may take the run"
    mine.release()


def test_an_object_deleted_and_put_back_is_listed_again_and_counted_once(
    local_site: Site, tmp_path: Path
) -> None:
    """An object deleted at the source and later put back under the same key is in the
    inventory again (a delta copies it), counted as added, not changed; a deletion is
    counted by the listing that found it, not again by each one after."""
    adapter = build_adapter(local_site)
    adapter.create_container("data")
    for key in ("a/1", "a/2", "a/3"):
        put(adapter, "data", key, key.encode())
    config = config_for(local_site, tmp_path, ("data",))
    run_inventory(config, local_site.name, adapter)
    adapter.delete("data", "a/2")
    adapter.delete("data", "a/3")
    second = run_inventory(config, local_site.name, adapter)
    assert (second.added, second.changed, second.deleted) == (0, 0, 2)

    put(adapter, "data", "a/2", b"back")
    third = run_inventory(config, local_site.name, adapter)
    assert (third.added, third.changed, third.deleted) == (1, 0, 0)
    assert third.objects == 2
    with Ledger(config.state_dir) as ledger:
        assert [r.key for r in ledger.inventory_objects(local_site.name)] == ["a/1", "a/2"]
        assert not ledger.source_deleted(local_site.name, "data", "a/2")
        assert ledger.source_deleted(local_site.name, "data", "a/3")


def test_an_inventory_under_a_prefix_takes_nothing_outside_it_for_deleted(
    local_site: Site, tmp_path: Path
) -> None:
    """`inventory --prefix a/` lists part of the site: what lies outside the prefix, and
    the other containers, were not listed, so not found deleted (a delta would remove
    their copies with --delete-removed)."""
    adapter = build_adapter(local_site)
    for container in ("data", "more"):
        adapter.create_container(container)
        for key in ("a/1", "b/1"):
            put(adapter, container, key, key.encode())
    config = config_for(local_site, tmp_path, ("data", "more"))
    run_inventory(config, local_site.name, adapter)
    adapter.delete("data", "a/1")
    narrow = config_for(local_site, tmp_path, ("data",))
    partial = run_inventory(narrow, local_site.name, adapter, prefix="a/")
    assert (partial.added, partial.changed, partial.deleted) == (0, 0, 1)
    assert partial.unlisted == 0
    with Ledger(config.state_dir) as ledger:
        keys = [(r.container, r.key) for r in ledger.inventory_objects(local_site.name)]
        assert not ledger.source_deleted(local_site.name, "data", "b/1")
    assert keys == [("data", "b/1"), ("more", "a/1"), ("more", "b/1")]


def test_no_plan_is_made_from_an_inventory_that_was_interrupted(
    local_site: Site, tmp_path: Path
) -> None:
    """A first inventory cut short holds some pages: no plan is made from it (it would
    leave out what the listing had not reached), until an inventory of the site ends."""
    from migrate.errors import PlanError
    from migrate.planner import plan_inputs

    adapter = build_adapter(local_site)
    adapter.create_container("data")
    seed(adapter, "data", 1_500)
    config = config_for(local_site, tmp_path, ("data",))
    with pytest.raises(ConnectionResetError):
        run_inventory(config, local_site.name, FailingListing(adapter, fail_after=1_200))  # type: ignore[arg-type]
    with Ledger(config.state_dir) as ledger, pytest.raises(PlanError, match="no finished"):
        plan_inputs(ledger, local_site.name)
    run_inventory(config, local_site.name, adapter)
    with Ledger(config.state_dir) as ledger:
        assert sum(d.objects for d in plan_inputs(ledger, local_site.name).datasets) == 1_500


def test_each_datasets_size_classes_and_flags_count_every_object_once(
    local_site: Site, tmp_path: Path
) -> None:
    """Per dataset: every object in exactly one size class (an empty one and one of
    exactly 1 MiB included), and each flag counted on every object that bears it, whatever
    other flags it bears too."""
    adapter = build_adapter(local_site)
    adapter.create_container("data")
    put(adapter, "data", "a/empty", b"")
    put(adapter, "data", "a/one-mib", b"x" * 1024**2)
    put(adapter, "data", "a/small", b"x")
    put(adapter, "data", "a/back\\slash", b"x")
    put(adapter, "data", "b/x", b"x")
    config = config_for(local_site, tmp_path, ("data",))
    summary = run_inventory(config, local_site.name, adapter)
    by_name = {d.dataset: d for d in summary.datasets}
    a = by_name["data/a/"]
    assert a.objects == sum(a.size_classes.values()) == 4
    assert a.size_classes == {"<1 MiB": 3, "1-100 MiB": 1, "100 MiB-5 GiB": 0, ">=5 GiB": 0}
    # A local file has no native checksum: each object bears NO_CHECKSUM, the
    # backslashed key KEY_NOT_PORTABLE besides.
    assert a.issues == {"NO_CHECKSUM": 4, "KEY_NOT_PORTABLE": 1}
    assert by_name["data/b/"].issues == {"NO_CHECKSUM": 1}


def test_a_container_is_one_dataset_only_past_the_limit_of_prefixes(
    local_site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A container is one dataset past WHOLE_CONTAINER_AFTER top-level prefixes: one with
    exactly that many keeps one dataset a prefix; one more makes it one dataset."""
    monkeypatch.setattr("migrate.inventory.WHOLE_CONTAINER_AFTER", 3)
    adapter = build_adapter(local_site)
    at, over = unique_name("at"), unique_name("over")
    for container, n in ((at, 3), (over, 4)):
        adapter.create_container(container)
        for i in range(n):
            put(adapter, container, f"p{i}/x.txt", b"x")
    summary = run_inventory(config_for(local_site, tmp_path, (at, over)), local_site.name, adapter)
    datasets = {d.dataset: d.whole_container for d in summary.datasets}
    assert datasets == {**{f"{at}/p{i}/": False for i in range(3)}, f"{over}/": True}
