"""`migrate demo`: the whole flow on real local servers, with a sample health-data estate.

Starts SeaweedFS (the sovereign destination) and Azurite (the Azure source) on 127.0.0.1,
seeds Azurite through the same adapter the tool uses, writes a sites file that references
credentials by environment variable, and runs the inventory.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import io
import os
import random
import shlex
import shutil
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from importlib.metadata import version
from pathlib import Path
from typing import BinaryIO, cast

from rich.console import Console

from migrate import render
from migrate.dryrun import dry_run
from migrate.errors import ConfigError, DemoBusy
from migrate.executor import TransferConfig
from migrate.inventory import InventorySummary, run_inventory
from migrate.ledger import Ledger
from migrate.localservers import Azurite, SeaweedFS, azurite, seaweedfs, stop_left_behind
from migrate.phaserun import run_plan_phase
from migrate.plan import PhaseKind, save_plan
from migrate.planner import (
    approve_plan,
    check_approved,
    parse_bandwidth,
)
from migrate.replication import plan_from_sites
from migrate.report import build_report, write_report
from migrate.session import declared_proxies, guarded_adapter, open_session, site_reads
from migrate.sites import SitesConfig, load_sites
from migrate.summary import PhaseSummary
from migrate.verify import verify
from providers.base import StoreAdapter, WriteAttrs
from providers.catalog import Catalog, load_catalog, set_active_catalog

MARKER = ".migrate-demo"
MiB = 1024 * 1024
CONTAINERS = ("snds", "cohorts", "imaging")
AZURE_ENV = "DEMO_AZURE_CONNECTION_STRING"
S3_KEY_ENV, S3_SECRET_ENV = "DEMO_S3_ACCESS_KEY", "DEMO_S3_SECRET_KEY"

# Names an estate really has: spaces, accents, %, +, #, a trailing dot, deep prefixes.
ODD_NAMES = (
    "cohorts/constances/vague 1/questionnaire médecin.json",
    "cohorts/constances/vague 1/taux 5%+bonus.csv",
    "cohorts/constances/notes #3/résumé.",
    "cohorts/e3n/a/b/c/d/e/f/profond.parquet",
    "cohorts/e3n/Ångström/ß/è.txt",
)


@dataclass(frozen=True)
class SeedObject:
    container: str
    key: str
    size: int
    seed: int
    attrs: WriteAttrs
    multipart: bool = False


@dataclass(frozen=True)
class DemoResult:
    workdir: Path
    sites_file: Path
    state: Path
    seeded_objects: int
    seeded_bytes: int
    inventory: InventorySummary
    plan: Path
    phases: list[PhaseSummary]
    verified: bool
    report: Path
    env_file: Path | None = None  # under `keep`, while the servers are up (write_env_file)


class _SeededStream:
    """Deterministic pseudo-random bytes, produced as read: never the whole object."""

    def __init__(self, size: int, seed: int) -> None:
        self._rng = random.Random(seed)
        self._left = size

    def read(self, n: int = -1) -> bytes:
        n = self._left if n < 0 else min(n, self._left)
        self._left -= n
        return self._rng.randbytes(n)


LARGE_SIZES = (50 * MiB, 120 * MiB, 200 * MiB)


def estate(small_files: int, large_sizes: tuple[int, ...] = LARGE_SIZES) -> Iterator[SeedObject]:
    """The sample estate: a few thousand small files, some large ones, odd names, a Cool blob."""
    rng = random.Random(2026)
    months = [f"{m:02d}" for m in range(1, 13)]
    for i in range(small_files):
        container = ("snds", "cohorts")[i % 5 == 0]
        if container == "snds":
            table = ("dcir", "pmsi/mco", "pmsi/had", "cepidc")[i % 4]
            key = f"{table}/2025/{months[i % 12]}/extract-{i:05d}.csv"
            ctype = "text/csv"
        else:
            key = f"constances/participants/p{i:05d}.json"
            ctype = "application/json"
        yield SeedObject(
            container,
            key,
            rng.randint(200, 48 * 1024),
            i,
            WriteAttrs(content_type=ctype, metadata={"source": "demo", "pseudonymised": "yes"}),
        )
    for n, name in enumerate(ODD_NAMES):
        container, key = name.split("/", 1)
        attrs = WriteAttrs(content_type="text/plain")
        yield SeedObject(container, key, 1000 + n, 10_000 + n, attrs)
    for n, size in enumerate(large_sizes):
        yield SeedObject(
            "imaging",
            f"ct-scans/study-{n + 1:03d}.dcm.tar",
            size,
            20_000 + n,
            WriteAttrs(content_type="application/x-tar", metadata={"modality": "CT"}),
            multipart=True,
        )
    yield SeedObject(
        "imaging",
        "archive/2019/old-study.dcm.tar",
        3 * MiB,
        30_000,
        WriteAttrs(content_type="application/x-tar", storage_class="Cool"),
    )


def _md5_of(obj: SeedObject) -> str:
    md5 = hashlib.md5()
    stream = _SeededStream(obj.size, obj.seed)
    while chunk := stream.read(MiB):
        md5.update(chunk)
    return md5.hexdigest()


def _seed_one(adapter: StoreAdapter, obj: SeedObject) -> None:
    if not obj.multipart:
        stream = cast(BinaryIO, _SeededStream(obj.size, obj.seed))
        adapter.put_object(
            obj.container, obj.key, stream, obj.size, obj.attrs, {"md5": _md5_of(obj)}
        )
        return
    # Large blobs are committed from blocks without a whole-blob MD5, as most tools do:
    # the source then has no native checksum, and the copy must compute one in flight.
    part = 8 * MiB
    upload = adapter.create_multipart(obj.container, obj.key, obj.attrs)
    source = _SeededStream(obj.size, obj.seed)
    parts = []
    for number, offset in enumerate(range(0, obj.size, part), start=1):
        data = source.read(min(part, obj.size - offset))
        parts.append(
            adapter.upload_part(
                obj.container,
                obj.key,
                upload,
                number,
                io.BytesIO(data),
                len(data),
                {"md5": hashlib.md5(data).hexdigest()},
            )
        )
    adapter.complete_multipart(obj.container, obj.key, upload, parts)


def write_sites_file(workdir: Path, az: Azurite, sw: SeaweedFS) -> Path:
    path = workdir / "sites.toml"
    containers = ", ".join(f'"{c}"' for c in CONTAINERS)
    path.write_text(
        f"""# Written by `migrate demo`. Credentials are referenced by environment variable only.
policy = "fr-health"
runner = {{ location = "FR" }}
state_dir = "state"

[sites.azure-hdh]
provider = "azure"
region = "francecentral"
account = "{az.account}"
endpoint = "{az.endpoint}"   # Azurite stands in for <account>.blob.core.windows.net
containers = [{containers}]
credentials = {{ connection_string_env = "{AZURE_ENV}" }}

[sites.chu-seaweed]
provider = "self-hosted"
software = "seaweedfs"
endpoint = "{sw.endpoint}"
region = "local"
addressing = "path"
country = "FR"
operator = "CHU Demo (hospital-run SeaweedFS)"
parent_country = "FR"                  # a public hospital: no parent; its own country
non_eu_law = []                        # declared: no law from outside the EU reaches it
certifications = ["HDS"]
bucket_prefix = "hdh-"
credentials = {{ access_key_env = "{S3_KEY_ENV}", secret_key_env = "{S3_SECRET_ENV}" }}
""",
        encoding="utf-8",
    )
    return path


@contextmanager
def prepared_workdir(workdir: Path) -> Iterator[int]:
    """The workdir emptied for this demo and held while it runs: a second demo on the same
    workdir (`make demo` while a `demo --keep` is up) is refused at once, instead of
    deleting the first one's servers' data and state under it. The lock is the directory's
    own (flock), taken before anything in it is read or deleted; the kernel releases it
    when the process ends, however it ends. Yields how many servers an earlier demo, killed
    with kill -9, had left running there (stopped)."""
    if workdir.exists() and not workdir.is_dir():
        raise ConfigError(f"--workdir {workdir} is a file", hint="choose a directory")

    def unusable(exc: OSError) -> ConfigError:
        return ConfigError(
            f"--workdir {workdir} cannot be used ({exc.strerror or type(exc).__name__})",
            hint="choose a directory you can write to",
        )

    try:
        workdir.mkdir(parents=True, exist_ok=True)
        fd = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise unusable(exc) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DemoBusy(
                f"--workdir {workdir} is in use by another `migrate demo` (one kept up with "
                "--keep, or still running)",
                hint="stop that demo first (Ctrl-C in its terminal), or choose another --workdir",
            ) from None
        except OSError as exc:  # a file system without locks (some NFS)
            raise unusable(exc) from None
        try:
            if any(workdir.iterdir()) and not (workdir / MARKER).exists():
                raise ConfigError(
                    f"{workdir} exists and was not made by `migrate demo`",
                    hint="choose another --workdir",
                )
            # A demo killed with kill -9 left its servers running on what is deleted next.
            stopped = stop_left_behind(workdir)
            (workdir / MARKER).write_text("made by migrate demo; deleted by the next demo run\n")
            # What the last demo left, emptied: the directory (and so its lock) and the
            # marker kept, so that a demo stopped half-way here is still known as one.
            for child in workdir.iterdir():
                if child.name == MARKER:
                    continue
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        except OSError as exc:
            raise unusable(exc) from None
        yield stopped
    finally:
        os.close(fd)


def write_env_file(workdir: Path, sites_file: Path) -> Path:
    """The demo's credentials and sites file as shell exports, readable by the user alone,
    and `migrate` on the PATH: for `--keep`, to run the other commands against the demo's
    servers while they are up.
    Deleted when the demo ends (the servers, and so these credentials, end with it)."""
    path = workdir / "demo.env"
    lines = [
        "# Written by `migrate demo --keep`; deleted when the demo ends and its servers stop.",
        *(
            f"export {name}={shlex.quote(os.environ[name])}"
            for name in (AZURE_ENV, S3_KEY_ENV, S3_SECRET_ENV)
        ),
        f"export MIGRATE_SITES={shlex.quote(str(sites_file))}",
    ]
    # `migrate` as the README writes it: the one running now (its virtual environment's
    # bin, which the shell's PATH need not hold).
    here = Path(sys.executable).parent
    if (here / "migrate").exists():
        lines.append(f'export PATH={shlex.quote(str(here))}:"$PATH"')
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def run_demo(
    workdir: Path,
    small_files: int = 3000,
    console: Console | None = None,
    large_sizes: tuple[int, ...] | None = None,  # None: LARGE_SIZES
    keep: Callable[[DemoResult], None] | None = None,
) -> DemoResult:
    """The whole flow. `keep`, when given, is called with the result, its `env_file`
    written, while the servers are still up; they stop when it returns."""
    workdir = workdir.resolve()
    with prepared_workdir(workdir) as stopped:
        if console and stopped:
            console.print(f"Stopped {stopped} server(s) an earlier demo left running here.")
        return _run_demo(workdir, small_files, console, large_sizes, keep)


def _run_demo(
    workdir: Path,
    small_files: int,
    console: Console | None,
    large_sizes: tuple[int, ...] | None,
    keep: Callable[[DemoResult], None] | None,
) -> DemoResult:
    say = console.print if console else (lambda *a, **k: None)
    with azurite(workdir / "azurite") as az, seaweedfs(workdir / "seaweedfs") as sw:
        say(f"Azurite (Azure source) on {az.endpoint}; SeaweedFS (destination) on {sw.endpoint}")
        os.environ[AZURE_ENV] = az.connection_string
        os.environ[S3_KEY_ENV], os.environ[S3_SECRET_ENV] = sw.access_key, sw.secret_key
        sites_file = write_sites_file(workdir, az, sw)
        config: SitesConfig = load_sites(sites_file)
        catalog = load_catalog(config.catalog)
        set_active_catalog(catalog)
        source = guarded_adapter(
            config.site("azure-hdh"), CONTAINERS, catalog, declared_proxies(config)
        )
        objects = list(estate(small_files, LARGE_SIZES if large_sizes is None else large_sizes))
        say(f"Seeding {len(objects):,} objects into Azurite ...")
        for container in CONTAINERS:
            source.create_container(container)
        with ThreadPoolExecutor(max_workers=8) as pool:
            for _ in pool.map(lambda o: _seed_one(source, o), objects):
                pass
        seeded_bytes = sum(o.size for o in objects)
        say(f"Seeded {len(objects):,} objects, {render.human_bytes(seeded_bytes)}.")
        source.close()
        # The inventory reads through an adapter of its own: the hosts it contacts are
        # recorded for the report, as `migrate inventory` records them (the seeding above
        # is the demo's, not migrate's).
        with site_reads(config, catalog, "inventory", warn=_unrecorded) as reads:
            lister = reads.adapter(config.site("azure-hdh"), CONTAINERS)
            try:
                summary = run_inventory(config, "azure-hdh", lister)
            finally:
                lister.close()
        if console:
            render.print_inventory(console, summary)
            match = summary.objects == len(objects) and summary.bytes == seeded_bytes
            verdict = "[green]match[/]" if match else "[red]DO NOT match[/]"
            console.print(
                f"Inventory counts {summary.objects:,} objects, "
                f"{render.human_bytes(summary.bytes)}: {verdict} what was seeded."
            )
        plan_path, phases, verified, report = _plan_run_verify_report(
            workdir, config, catalog, console
        )
        if console:
            console.print(
                f"Sites file: {sites_file}\nState: {summary.state}\nPlan: {plan_path}",
                markup=False,
            )
            console.print(f"Report: {report / 'report.html'}", markup=False)
        result = DemoResult(
            workdir,
            sites_file,
            summary.state,
            len(objects),
            seeded_bytes,
            summary,
            plan_path,
            phases,
            verified,
            report,
        )
        if keep is not None:
            env_file = write_env_file(workdir, sites_file)
            try:
                keep(dataclasses.replace(result, env_file=env_file))
            finally:
                env_file.unlink(missing_ok=True)
    return result


def _unrecorded(line: str) -> None:
    """The demo's own fresh state takes every route: one it cannot is a failure."""
    raise ConfigError(line)


def _plan_run_verify_report(
    workdir: Path, config: SitesConfig, catalog: Catalog, console: Console | None
) -> tuple[Path, list[PhaseSummary], bool, Path]:
    """The rest of the flow, as the commands do it: plan, approve, dry-run, run each phase
    with its verification, report."""
    source, destination = "azure-hdh", "chu-seaweed"
    plan = plan_from_sites(
        config,
        catalog,
        name="hdh-demo",
        source=source,
        destination=destination,
        policy=config.policy or "fr-health",
        today=date.today(),
        bandwidth_bytes_per_second=parse_bandwidth("1Gbit/s"),
        pilot_share=0.05,
        warn=_unrecorded,
    )
    plan_path = workdir / "plans" / "hdh-demo.yaml"
    save_plan(plan, plan_path)
    if console:
        render.print_plan(console, plan)
    with Ledger(config.state_dir) as ledger:
        approve_plan(plan_path, ledger, "migrate-demo")
    phases: list[PhaseSummary] = []
    verified = True
    with open_session(plan_path, config, lambda: catalog, lock="demo") as session:
        check_approved(session.plan, session.ledger)
        report = dry_run(session.plan, "pilot", session.ledger, session.source, session.destination)
        if console:
            render.print_dry_run(console, report)
        # Every phase but decommission (the source is the demo's to keep): delta and
        # cutover find nothing changed, and cutover verifies the whole plan.
        for spec in [p for p in session.plan.phases if p.kind != PhaseKind.DECOMMISSION]:
            phase = spec.name
            show = (lambda d: render.print_delta(console, d)) if console else None
            run = run_plan_phase(session, phase, TransferConfig, on_delta=show)
            phases.append(run.summary)
            if console:
                render.print_phase_summary(console, run.summary)
            if spec.kind == PhaseKind.CUTOVER:
                verified = verified and run.ready
                if console:
                    state = "[green]passed[/]" if run.ready else "[red]FAILED[/]"
                    console.print(f"cutover: verification of the whole plan {state}")
            # Each phase's bytes re-read in part; after the cutover (whose own verification
            # compares listings, to keep the freeze short) the whole plan's, as its
            # checklist asks: the report's "last checked" is then a re-read.
            of = None if spec.kind == PhaseKind.CUTOVER else phase
            result = verify(
                session.plan,
                session.ledger,
                session.source,
                session.destination,
                phase=of,
                deep=False,
                sample=0.05,
                seed=2026,
            )
            verified = verified and result.passed
            if console:
                state = "[green]passed[/]" if result.passed else "[red]FAILED[/]"
                console.print(f"verify {of or 'the whole plan'} (5% re-read, seed 2026): {state}")
    out = workdir / "report"
    with Ledger(config.state_dir) as ledger, ledger.snapshot():
        built = build_report(
            session.plan, ledger, catalog, date.today(), version("migrate"), sites=config.sites
        )
        write_report(built, out, plan=session.plan, ledger=ledger)
    if console:
        console.print(f"Report status: {built.status}", markup=False)
        for item in built.open_items:
            console.print(f"  open: {item}", markup=False)
    return plan_path, phases, verified, out
