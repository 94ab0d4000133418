"""migrate against rclone, on the same data, in the same run: `make bench` (or
`python -m bench.run [--quick] [--rounds N] [--only 1,2] [--profile]`).

Starts SeaweedFS and Azurite on 127.0.0.1, creates the data, measures the machine's limits
(single-core SHA-256/MD5, a bare boto3 PUT loop; beside each no-op re-run, the start-up of a
migrate process), then runs each scenario with migrate and with rclone alternately (the
order flips every round), several rounds, and reports the
median and the spread (min-max) of wall time, throughput, CPU seconds of the process tree,
peak RSS of the process tree, the servers' CPU meanwhile, and the ratio migrate/rclone.

Scenarios (full scale; --quick shrinks them to debug the harness):
1. large objects, 8 x 256 MiB, S3 -> S3 (two buckets of one SeaweedFS; rclone gets two
   remotes on it, so its copy is streamed like migrate's, not a server-side copy);
2. small objects, 20,000 x 16 KiB, S3 -> S3;
3. Azure -> S3, a mixed set (Azurite -> SeaweedFS);
4. the no-op re-run of the finished copy of scenario 2 (migrate's resume from its ledger,
   rclone's re-check of both sides);
5. inventory/listing of 100,000 objects (`migrate inventory` against `rclone lsjson -R`,
   with `rclone size` alongside).

Every copy is checked after its run (object count and bytes at the destination) and its
destination emptied outside the timing. Raw rows go to bench/out/*.csv; a dated section is
appended to bench/RESULTS.md (unless --no-record).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402
import psutil  # noqa: E402
from botocore.config import Config  # noqa: E402

from bench import measure  # noqa: E402
from bench import profile as prof  # noqa: E402
from migrate.localservers import Azurite, SeaweedFS, azurite, seaweedfs  # noqa: E402

MiB = 1024 * 1024
OUT = ROOT / "bench" / "out"
RESULTS = ROOT / "bench" / "RESULTS.md"
BIN = Path(sys.executable).parent
S3_KEY, S3_SECRET, AZ_CONN = "BENCH_S3_KEY", "BENCH_S3_SECRET", "BENCH_AZ_CONN"


@dataclass(frozen=True)
class Scale:
    name: str
    large: tuple[int, int]  # count, size
    small: tuple[int, int]
    listing: int
    az_large: tuple[int, int]
    az_medium: tuple[int, int]
    az_small: tuple[int, int, int]  # count, min size, max size
    rounds: int


NOOP_REPEATS = 3  # runs of scenario 4 per round and tool

FULL = Scale(
    "full",
    large=(8, 256 * MiB),
    small=(20_000, 16 * 1024),
    listing=100_000,
    az_large=(2, 128 * MiB),
    az_medium=(8, 16 * MiB),
    az_small=(1_500, 4 * 1024, 256 * 1024),
    rounds=3,
)
QUICK = Scale(
    "quick",
    large=(2, 64 * MiB),
    small=(2_000, 16 * 1024),
    listing=10_000,
    az_large=(1, 64 * MiB),
    az_medium=(4, 8 * MiB),
    az_small=(300, 4 * 1024, 256 * 1024),
    rounds=1,
)

SCENARIOS = {
    1: "large S3->S3",
    2: "small S3->S3",
    3: "Azure->S3 mixed",
    4: "no-op re-run",
    5: "listing",
}


@dataclass
class Row:
    scenario: int
    tool: str
    round: int
    objects: int
    bytes: int
    wall: float
    cpu_user: float = 0.0
    cpu_sys: float = 0.0
    peak_rss: int = 0
    server_cpu: float = 0.0
    ok: bool = True
    note: str = ""
    # server_cpu, per server: the tools may cost each server differently.
    server_seaweedfs: float = 0.0
    server_azurite: float = 0.0

    @property
    def cpu(self) -> float:
        return self.cpu_user + self.cpu_sys

    @property
    def mb_s(self) -> float:
        return self.bytes / 1e6 / self.wall if self.wall else 0.0

    @property
    def obj_s(self) -> float:
        return self.objects / self.wall if self.wall else 0.0


@dataclass
class Bench:
    scale: Scale
    workdir: Path
    concurrency: int
    part_size: int
    sw: SeaweedFS
    az: Azurite
    env: dict[str, str]
    servers: list[psutil.Process]
    migrate_env: dict[str, str] = field(default_factory=dict)  # env of migrate's runs
    driver: str = "cli"  # cli: the migrate commands; script: bench/migrate_copy.py
    with_pilot: bool = False  # cli: plan a pilot and run it before bulk-1, forced past its gate
    rows: list[Row] = field(default_factory=list)

    # -- helpers ---------------------------------------------------------------------------

    def s3(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.sw.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.sw.access_key,
            aws_secret_access_key=self.sw.secret_key,
            config=Config(max_pool_connections=16, s3={"addressing_style": "path"}),
        )

    def logs(self, name: str) -> Path:
        path = self.workdir / "logs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def measured(
        self, cmd: list[str], name: str, env: dict[str, str] | None = None, settle: bool = True
    ) -> measure.Measured:
        """Run and measure cmd; settled first (measure.settle) unless it continues a timed
        sequence whose first step was (a user runs migrate's steps one after the other)."""
        if settle:
            took, idle = measure.settle(self.servers)
            if not idle:
                say(f"  ({name}: the servers were not idle after {took:.1f} s of settling)")
        result = measure.run(cmd, env=env or self.env, logs=self.logs(name), servers=self.servers)
        if result.returncode != 0:
            say(f"  ! {name} exited {result.returncode}: {result.stderr.strip()[-800:]}")
        return result

    def add(
        self,
        scenario: int,
        tool: str,
        rnd: int,
        objects: int,
        size: int,
        m: measure.Measured,
        ok: bool,
        note: str = "",
        wall: float | None = None,
    ) -> Row:
        spent = dict(m.server_by)
        row = Row(
            scenario,
            tool,
            rnd,
            objects,
            size,
            wall if wall is not None else m.wall,
            m.cpu_user,
            m.cpu_sys,
            m.peak_rss,
            m.server_cpu,
            ok and m.returncode == 0,
            note,
            server_seaweedfs=spent.get("weed", 0.0),
            server_azurite=spent.get("node", 0.0),
        )
        self.rows.append(row)
        say(
            f"  {SCENARIOS[scenario]:<16} {tool:<12} round {rnd}: {row.wall:7.2f} s "
            f"{row.mb_s:8.1f} MB/s {row.obj_s:9.0f} obj/s  cpu {row.cpu:6.2f} s  "
            f"rss {row.peak_rss / MiB:6.0f} MiB  server cpu {row.server_cpu:6.2f} s "
            f"(SeaweedFS {row.server_seaweedfs:.2f}, Azurite {row.server_azurite:.2f})"
            + ("" if row.ok else "  FAILED")
            + (f"  ({note})" if note else "")
        )
        return row

    def bucket_totals(self, bucket: str) -> tuple[int, int]:
        objects, size = 0, 0
        for page in self.s3().get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                objects += 1
                size += int(item["Size"])
        return objects, size

    def empty_bucket(self, bucket: str) -> None:
        """Delete a destination's objects (outside the timing), 1,000 per request."""
        s3 = self.s3()
        batches: list[list[dict[str, str]]] = []
        try:
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                keys = [{"Key": i["Key"]} for i in page.get("Contents", [])]
                if keys:
                    batches.append(keys)
        except s3.exceptions.NoSuchBucket:
            return
        with ThreadPoolExecutor(4) as pool:
            list(
                pool.map(
                    lambda b: s3.delete_objects(
                        Bucket=bucket, Delete={"Objects": b, "Quiet": True}
                    ),
                    batches,
                )
            )
        s3.delete_bucket(Bucket=bucket)

    def putloop(
        self, bucket: str, prefix: str, count: int, size: int, threads: int, procs: int = 1
    ) -> tuple[measure.Measured, dict[str, Any]]:
        args = {
            "endpoint": self.sw.endpoint,
            "bucket": bucket,
            "prefix": prefix,
            "count": count,
            "size": size,
            "part_size": self.part_size,
            "threads": threads,
            "procs": procs,
        }
        m = self.measured(
            [sys.executable, str(ROOT / "bench" / "putloop.py"), json.dumps(args)],
            f"putloop-{bucket}-{time.monotonic_ns()}",
        )
        if m.returncode != 0:
            raise SystemExit(f"the PUT loop failed: {m.stderr[-800:]}")
        return m, json.loads(m.stdout.strip().splitlines()[-1])

    # -- migrate ---------------------------------------------------------------------------

    def sites_file(
        self, name: str, s3_buckets: list[str], az_containers: list[str], dest_prefix: str = ""
    ) -> Path:
        """A sites file of its own per migrate run: its state_dir is fresh, and the
        destination's bucket_prefix gives the run fresh destination buckets."""
        folder = self.workdir / "migrate" / name
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        s3_list = ", ".join(f'"{b}"' for b in s3_buckets)
        az_list = ", ".join(f'"{c}"' for c in az_containers)
        s3_common = seaweedfs_site(self.sw.endpoint, S3_KEY, S3_SECRET)
        path = folder / "sites.toml"
        path.write_text(
            f"""# Written by bench/run.py; credentials by environment variable only.
state_dir = "state"
policy = "eu-residency"
runner = {{ location = "FR" }}

[sites.src-s3]
{s3_common}buckets = [{s3_list}]

[sites.dst-s3]
{s3_common}bucket_prefix = "{dest_prefix}"

[sites.src-az]
provider = "azure"
region = "francecentral"
account = "{self.az.account}"
endpoint = "{self.az.endpoint}"
containers = [{az_list}]
credentials = {{ connection_string_env = "{AZ_CONN}" }}
""",
            encoding="utf-8",
        )
        return path

    def migrate_copy(
        self, mode: str, sites: Path, source: str, buckets: dict[str, str], name: str
    ) -> tuple[measure.Measured, dict[str, Any]]:
        """A first copy (`copy`) or the re-run of a finished one (`resume`), timed as the
        sum of the steps that move or list data."""
        if self.driver == "cli":
            return self._migrate_cli(mode, sites, source, name)
        args = {
            "sites": str(sites),
            "source": source,
            "destination": "dst-s3",
            "buckets": buckets,
            "concurrency": self.concurrency,
            "part_size": self.part_size,
        }
        cmd = [sys.executable, str(ROOT / "bench" / "migrate_copy.py"), mode, json.dumps(args)]
        m = self.measured(cmd, name, self.migrate_env)
        return m, _last_json(m.stdout)

    def _cli(self, args: list[str], name: str, settle: bool = False) -> measure.Measured:
        cmd = [sys.executable, "-m", "migrate", *args]
        return self.measured(cmd, name, self.migrate_env, settle=settle)

    def _migrate_cli(
        self, mode: str, sites: Path, source: str, name: str
    ) -> tuple[measure.Measured, dict[str, Any]]:
        """The commands a user runs: inventory, plan, approve, run bulk-1. Making and
        approving the plan is review, not transfer: not counted. The plan has no pilot
        (`--no-pilot`), as rclone tries nothing first; `with_pilot` plans one and runs it
        before bulk-1, which is then forced past its gate (the pilot is not verified in a
        benchmark; the reason is recorded). The re-run is `migrate run --phase bulk-1`."""
        plan = sites.parent / "plan.yaml"
        where = ["--sites", str(sites)]
        run_opts = [
            "--json",
            f"--concurrency={self.concurrency}",
            f"--part-size-mib={self.part_size // MiB}",
            *where,
        ]
        if self.with_pilot:
            run_opts += ["--force", "--reason=benchmark: the pilot is not verified"]
        steps: list[tuple[str, measure.Measured]] = []
        if mode == "copy":
            steps.append(
                (
                    "inventory",
                    self._cli(
                        ["inventory", source, "--json", *where], f"{name}-inventory", settle=True
                    ),
                )
            )
            for label, args in (
                ("plan", ["plan", "--from", source, "--to", "dst-s3", "--policy",
                          "eu-residency", "--pilot-share", "0", "-o", str(plan), "--json",
                          *([] if self.with_pilot else ["--no-pilot"]), *where]),
                ("approve", ["plan", "approve", str(plan), "--by", "bench", "--json", *where]),
            ):  # fmt: skip
                m = self._cli(args, f"{name}-{label}")
                if m.returncode != 0:
                    return m, {}
            if self.with_pilot:
                steps.append(
                    (
                        "pilot",
                        self._cli(
                            ["run", str(plan), "--phase", "pilot", *run_opts], f"{name}-pilot"
                        ),
                    )
                )
        steps.append(
            (
                "bulk-1",
                self._cli(
                    ["run", str(plan), "--phase", "bulk-1", *run_opts],
                    f"{name}-bulk",
                    settle=mode != "copy",  # a re-run starts here
                ),
            )
        )
        info = _last_json(steps[-1][1].stdout)
        info["steps"] = ", ".join(f"{label} {m.wall:.1f} s" for label, m in steps)
        return measure.combine([m for _, m in steps]), info

    # -- rclone ----------------------------------------------------------------------------

    def rclone_flags(self) -> list[str]:
        """The same concurrency budget as migrate: `concurrency` objects at once, one part
        in flight per object, the same part size and the same single-PUT cut-off."""
        part = f"{self.part_size // MiB}Mi"
        return [
            "--checksum",
            f"--transfers={self.concurrency}",
            f"--checkers={self.concurrency}",
            "--multi-thread-streams=1",
            "--s3-upload-concurrency=1",
            f"--s3-chunk-size={part}",
            f"--s3-upload-cutoff={part}",
        ]

    def rclone(self, args: list[str], name: str) -> measure.Measured:
        return self.measured([str(BIN / "rclone"), *args, "-q"], name)

    def rclone_copy(
        self, source: str, dest: str, name: str, extra: tuple[str, ...] = ()
    ) -> measure.Measured:
        return self.rclone(["copy", source, dest, *self.rclone_flags(), *extra], name)

    # -- scenarios -------------------------------------------------------------------------

    def profile(self, scenario: int, src: str, slug: str) -> list[str]:
        """One more migrate run of a copy scenario (4: its re-run) under py-spy, untimed.
        Always through bench/migrate_copy.py: one process holds the whole copy."""
        if scenario == 5:  # the inventory command itself
            sites5 = self.sites_file("p5", [src], [])
            cmd5 = [sys.executable, "-m", "migrate", "inventory", "src-s3", "--sites", str(sites5)]
            out5 = OUT / f"profile-{slug}-s5.txt"
            say("  profiling scenario 5 (listing) with py-spy ...")
            code = prof.record([*cmd5, "--json"], self.env, out5)
            if code != 0 or not out5.exists():
                return [f"(py-spy exited {code})"]
            return prof.summarize(out5)
        az = scenario == 3
        dest = f"p{scenario}-m"
        sites = self.sites_file(f"p{scenario}", [] if az else [src], [src] if az else [])
        args = {
            "sites": str(sites),
            "source": "src-az" if az else "src-s3",
            "destination": "dst-s3",
            "buckets": {src: dest},
            "concurrency": self.concurrency,
            "part_size": self.part_size,
        }
        script = [sys.executable, str(ROOT / "bench" / "migrate_copy.py")]
        mode = "copy"
        if scenario == 4:
            self.measured(
                [*script, "copy", json.dumps(args)], "p4-copy", self.migrate_env, settle=False
            )
            mode = "resume"
        out = OUT / f"profile-{slug}-s{scenario}.txt"
        cmd = [*script, mode, json.dumps(args)]
        say(f"  profiling scenario {scenario} ({SCENARIOS[scenario]}) with py-spy ...")
        code = prof.record(cmd, self.migrate_env or self.env, out)
        self.empty_bucket(dest)
        if code != 0 or not out.exists():
            return [f"(py-spy exited {code})"]
        return prof.summarize(out)

    def order(self, rnd: int) -> list[str]:
        return ["migrate", "rclone"] if rnd % 2 == 1 else ["rclone", "migrate"]

    def check(self, bucket: str, want: tuple[int, int]) -> tuple[bool, str]:
        got = self.bucket_totals(bucket)
        return (got == want, "" if got == want else f"destination has {got}, want {want}")

    def copy_s3(
        self, scenario: int, rnd: int, src: str, want: tuple[int, int], keep: bool = False
    ) -> dict[str, Any]:
        """One round of an S3 -> S3 copy scenario; returns what scenario 4 re-runs."""
        kept: dict[str, Any] = {}
        for tool in self.order(rnd):
            prefix = f"s{scenario}-{tool[0]}-r{rnd}-"
            dest = f"{prefix}{src}"
            if tool == "migrate":
                sites = self.sites_file(f"s{scenario}-r{rnd}", [src], [], prefix)
                m, info = self.migrate_copy(
                    "copy", sites, "src-s3", {src: dest}, f"s{scenario}-migrate-r{rnd}"
                )
                note = _steps(info)
                kept["migrate"] = (sites, dest)
            else:
                m = self.rclone_copy(f"SRC:{src}", f"DST:{dest}", f"s{scenario}-rclone-r{rnd}")
                note = ""
                kept["rclone"] = dest
            ok, why = self.check(dest, want)
            self.add(scenario, tool, rnd, want[0], want[1], m, ok, why or note)
            if not keep:
                self.empty_bucket(dest)
        return kept

    def noop_rerun(self, rnd: int, src: str, kept: dict[str, Any], want: tuple[int, int]) -> None:
        # About a second each, where the host's noise is ±20 %: several runs per round.
        for _ in range(NOOP_REPEATS):
            self._noop_once(rnd, src, kept, want)

    def _noop_once(self, rnd: int, src: str, kept: dict[str, Any], want: tuple[int, int]) -> None:
        # The limit of a re-run that does nothing: the interpreter starting and importing
        # what answers from a receipt, nothing run. What the re-run spends above it is its
        # own work. (The script driver's re-run is not the command: no such limit for it.)
        if self.driver == "cli":
            m = self.measured(
                [sys.executable, "-c", "import migrate.rerun"],
                f"s4-startup-r{rnd}",
                self.migrate_env,
            )
            self.add(4, "start-up", rnd, *want, m, m.returncode == 0, "import migrate.rerun")
        for tool in self.order(rnd):
            if tool == "migrate":
                sites, dest = kept["migrate"]
                m, info = self.migrate_copy(
                    "resume", sites, "src-s3", {src: dest}, f"s4-migrate-r{rnd}"
                )
                ok = info.get("copied") == 0 and not info.get("failed") and m.returncode == 0
                note = _steps(info) if ok else f"the re-run did work: {info}"
            else:
                dest = kept["rclone"]
                m = self.rclone_copy(f"SRC:{src}", f"DST:{dest}", f"s4-rclone-r{rnd}")
                ok, note = True, ""
            self.add(4, tool, rnd, want[0], want[1], m, ok, note)

    def listing(self, rnd: int, bucket: str, count: int) -> None:
        for tool in self.order(rnd):
            if tool == "migrate":
                sites = self.sites_file(f"s5-r{rnd}", [bucket], [])
                m = self.measured(
                    [
                        sys.executable,
                        "-m",
                        "migrate",
                        "inventory",
                        "src-s3",
                        "--sites",
                        str(sites),
                        "--json",
                    ],
                    f"s5-migrate-r{rnd}",
                )
                try:
                    info = json.loads(m.stdout)
                    datasets = info.get("datasets", [])
                    listed = sum(d["objects"] for d in datasets)
                except (ValueError, KeyError, TypeError):
                    listed = -1
                self.add(
                    5,
                    "migrate",
                    rnd,
                    count,
                    0,
                    m,
                    listed == count,
                    "" if listed == count else f"listed {listed}",
                )
            else:
                m = self.rclone(
                    [
                        "lsjson",
                        "-R",
                        "--files-only",
                        # What the listing says, as migrate's inventory records it. Without
                        # these two, lsjson sends a HEAD per object (content type, mtime).
                        "--use-server-modtime",
                        "--no-mimetype",
                        f"--checkers={self.concurrency}",
                        f"SRC:{bucket}",
                    ],
                    f"s5-rclone-r{rnd}",
                )
                listed = _count_lsjson(self.logs(f"s5-rclone-r{rnd}").with_suffix(".out"))
                self.add(
                    5,
                    "rclone",
                    rnd,
                    count,
                    0,
                    m,
                    listed == count,
                    "lsjson -R" if listed == count else f"listed {listed}",
                )
                m = self.rclone(
                    ["size", f"--checkers={self.concurrency}", f"SRC:{bucket}"],
                    f"s5-rclone-size-r{rnd}",
                )
                self.add(5, "rclone-size", rnd, count, 0, m, True, "rclone size")


def seaweedfs_site(endpoint: str, key_env: str, secret_env: str) -> str:
    """The body of a SeaweedFS site's table in a sites file; credentials by environment
    variable only."""
    return f"""provider = "self-hosted"
software = "seaweedfs"
endpoint = "{endpoint}"
region = "local"
addressing = "path"
country = "FR"
credentials = {{ access_key_env = "{key_env}", secret_key_env = "{secret_env}" }}
"""


def _steps(info: dict[str, Any]) -> str:
    if "steps" in info:
        return str(info["steps"])
    if "inventory_seconds" in info:
        return f"inventory {info['inventory_seconds']} s, run {info.get('run_seconds')} s"
    return ""


def _last_json(stdout: str) -> dict[str, Any]:
    """The JSON document a command printed last (a one-line one, or an indented one)."""
    text = stdout.strip()
    for start in (text.rfind("\n{"), 0):
        try:
            value = json.loads(text[start:] if start >= 0 else text)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return {}


def _count_lsjson(path: Path) -> int:
    try:
        return len(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return -1


def say(text: str) -> None:
    print(text, flush=True)


# -- seeding -------------------------------------------------------------------------------


def azure_estate(scale: Scale) -> Iterator[tuple[str, int, int]]:
    """(name, size, seed) of the mixed Azure set: large, medium and small blobs."""
    n, size = scale.az_large
    for i in range(n):
        yield f"scans/large-{i:02d}.tar", size, i
    n, size = scale.az_medium
    for i in range(n):
        yield f"series/medium-{i:02d}.bin", size, 100 + i
    n, lo, hi = scale.az_small
    rng = random.Random(2026)
    for i in range(n):
        yield f"records/{i % 20:02d}/r-{i:05d}.json", rng.randint(lo, hi), 1000 + i


def seed_listing(bench: Bench, bucket: str, count: int, fanout: int = 100) -> float:
    """Empty objects, through the SeaweedFS filer's HTTP API: an S3 PUT costs the server
    ~2-4 ms of CPU (100,000 would take minutes on 2 cores), a filer entry ~0.3 ms. S3
    lists them like any object (size 0, ETag the MD5 of nothing). Returns the seconds."""
    import http.client
    import threading

    weed = next(p for p in bench.servers if p.name() == "weed")
    port = int(next(a for a in weed.cmdline() if a.startswith("-filer.port=")).split("=")[1])
    bench.s3().create_bucket(Bucket=bucket)
    local = threading.local()

    def put(i: int) -> int:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("PUT", f"/buckets/{bucket}/inv/{i % fanout:03d}/{i:07d}", body=b"")
        response = conn.getresponse()
        response.read()
        return response.status

    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        bad = [s for s in pool.map(put, range(count)) if s >= 300]
    if bad:
        raise SystemExit(f"seeding the listing bucket: {len(bad)} entries refused")
    return time.monotonic() - started


def seed_azure(az: Azurite, container: str, scale: Scale) -> tuple[int, int]:
    """Blobs over 32 MiB are committed from blocks, as most tools write them: they have no
    Content-MD5, so the copy must compute one in flight; the others get one from Put Blob."""
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(
        az.connection_string, max_single_put_size=32 * MiB, max_block_size=8 * MiB
    )
    client = service.get_container_client(container)
    client.create_container()
    pool_bytes = os.urandom(8 * MiB + 4096)

    def body(size: int, seed: int) -> bytes:
        out = io.BytesIO()
        left, i = size, 0
        while left:
            n = min(left, 8 * MiB)
            start = (seed * 131 + i * 17) % 4096
            out.write(pool_bytes[start : start + n])
            left -= n
            i += 1
        data = out.getvalue()
        return seed.to_bytes(8, "big") + data[8:] if size >= 8 else data

    estate = list(azure_estate(scale))

    def upload(item: tuple[str, int, int]) -> None:
        name, size, seed = item
        client.upload_blob(name, body(size, seed), overwrite=True, max_concurrency=2)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(upload, estate))
    return len(estate), sum(s for _, s, _ in estate)


# -- report --------------------------------------------------------------------------------


def med(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def spread(values: list[float]) -> str:
    if len(values) < 2:
        return "-"
    m = med(values)
    return f"±{(max(values) - min(values)) / 2 / m * 100:.0f}%" if m else "-"


def rate(row: Row, scenario: int) -> float:
    return row.mb_s if scenario in (1, 3) else row.obj_s


UNIT = {1: "MB/s", 2: "obj/s", 3: "MB/s", 4: "obj/s", 5: "obj/s"}


@dataclass
class Summary:
    scenario: int
    tool: str
    rounds: int
    wall: float
    wall_spread: str
    rate: float
    rate_spread: str
    cpu: float
    peak_rss_mib: float
    server_cpu: float
    ok: bool
    server_seaweedfs: float = 0.0
    server_azurite: float = 0.0


def summarize(rows: list[Row]) -> list[Summary]:
    out = []
    keys = sorted({(r.scenario, r.tool) for r in rows}, key=lambda k: (k[0], _tool_rank(k[1])))
    for scenario, tool in keys:
        mine = [r for r in rows if r.scenario == scenario and r.tool == tool]
        rates = [rate(r, scenario) for r in mine]
        out.append(
            Summary(
                scenario,
                tool,
                len(mine),
                med([r.wall for r in mine]),
                spread([r.wall for r in mine]),
                med(rates),
                spread(rates),
                med([r.cpu for r in mine]),
                max(r.peak_rss for r in mine) / MiB,
                med([r.server_cpu for r in mine]),
                all(r.ok for r in mine),
                med([r.server_seaweedfs for r in mine]),
                med([r.server_azurite for r in mine]),
            )
        )
    return out


def servers_by_tool(summaries: list[Summary]) -> list[str]:
    """For each scenario, each server's CPU beside each tool (medians): whether a gap is
    the client's or the work it asks of the servers. A re-run that asks nothing of them
    shows as such; the start-up row never talks to them."""
    lines = []
    for scenario in sorted({s.scenario for s in summaries}):
        mine = [s for s in summaries if s.scenario == scenario and s.tool != "start-up"]
        each = "; ".join(
            f"{s.tool} SeaweedFS {s.server_seaweedfs:.2f}, Azurite {s.server_azurite:.2f}"
            for s in mine
        )
        lines.append(f"{scenario} {SCENARIOS[scenario]}: {each}")
    return lines


def _tool_rank(tool: str) -> int:
    return {"migrate": 0, "rclone": 1, "rclone-size": 2, "put-loop": 3, "start-up": 4}.get(tool, 9)


TARGETS: dict[int, tuple[float, float | None]] = {
    # scenario: (minimum migrate/rclone throughput ratio, minimum share of the PUT loop)
    1: (1.0, 0.8),
    2: (1.2, 0.8),
    3: (1.0, None),
    4: (5.0, None),
}
RSS_TARGET_MIB = 300
# The limit a scenario's rates are read against ("share of the limit"): the bare PUT loop
# for copies, the interpreter's start-up and imports for the re-run that does nothing.
LIMIT_TOOL = {1: "put-loop", 2: "put-loop", 4: "start-up"}


def paired_ratios(rows: list[Row], scenario: int) -> list[float]:
    """migrate's rate over rclone's, round by round. The two tools of a round run one after
    the other, so a slow hour slows both: these ratios say how much of the medians' ratio
    is the tools' and how much the noise between rounds."""
    each: dict[tuple[int, str], list[float]] = {}
    for r in rows:
        if r.scenario == scenario:  # a re-run is timed several times a round: its median
            each.setdefault((r.round, r.tool), []).append(rate(r, scenario))
    rates = {k: med(v) for k, v in each.items()}
    return [
        rates[(rnd, "migrate")] / rates[(rnd, "rclone")]
        for rnd in sorted({rnd for rnd, _ in rates})
        if rates.get((rnd, "migrate")) and rates.get((rnd, "rclone"))
    ]


def report(
    summaries: list[Summary], cores: int, rows: list[Row] | None = None
) -> tuple[list[str], list[str]]:
    """The results table (markdown lines) and the verdict on each target (with the ratio
    round by round when `rows` are given); a missed throughput target also says what it
    leaves migrate on `cores` (see `_budget`)."""
    by = {(s.scenario, s.tool): s for s in summaries}
    lines = [
        "| scenario | tool | rounds | wall s (median, spread) | rate (median, spread) | "
        "CPU s | peak RSS MiB | server CPU s | migrate/rclone rate | CPU ratio | RSS ratio "
        "| share of the limit |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for s in summaries:
        base = by.get((s.scenario, "rclone"))
        limit = by.get((s.scenario, LIMIT_TOOL.get(s.scenario, "")))
        ratio = cpu_ratio = rss_ratio = share = ""
        if s.tool == "migrate" and base and base.rate:
            ratio = f"**{s.rate / base.rate:.2f}x**"
            cpu_ratio = f"{s.cpu / base.cpu:.2f}x" if base.cpu else ""
            rss_ratio = f"{s.peak_rss_mib / base.peak_rss_mib:.2f}x" if base.peak_rss_mib else ""
        # rclone is read against the PUT loop too; the start-up is migrate's own.
        compared = ("migrate", "rclone") if limit and limit.tool == "put-loop" else ("migrate",)
        if s.tool in compared and limit and limit.rate:
            share = f"{s.rate / limit.rate * 100:.0f} %"
        lines.append(
            f"| {s.scenario} {SCENARIOS[s.scenario]} | {s.tool} | {s.rounds} | "
            f"{s.wall:.2f} ({s.wall_spread}) | {s.rate:,.1f} {UNIT[s.scenario]} "
            f"({s.rate_spread}) | {s.cpu:.2f} | {s.peak_rss_mib:.0f} | {s.server_cpu:.2f} | "
            f"{ratio} | {cpu_ratio} | {rss_ratio} | {share} |" + ("" if s.ok else " FAILED")
        )
    for scenario, (min_ratio, min_share) in TARGETS.items():
        mig, base = by.get((scenario, "migrate")), by.get((scenario, "rclone"))
        if not mig or not base or not base.rate:
            continue
        speed = mig.rate / base.rate
        verdict = "met" if speed >= min_ratio else "MISSED"
        name = f"{scenario} {SCENARIOS[scenario]}"
        text = f"{name}: {speed:.2f}x rclone (target >= {min_ratio}x) {verdict}"
        paired = paired_ratios(rows or [], scenario)
        if len(paired) > 1:
            each = ", ".join(f"{r:.2f}x" for r in paired)
            text += f" (round by round: {each}; their median {med(paired):.2f}x)"
        limit = by.get((scenario, "put-loop"))
        if min_share is not None and limit and limit.rate:
            part = mig.rate / limit.rate
            ok = "met" if part >= min_share else "MISSED"
            text += f"; {part * 100:.0f} % of the PUT loop (target >= {min_share * 100:.0f} %) {ok}"
        if speed < min_ratio:
            text += _budget(mig, base, by.get((scenario, "start-up")), min_ratio, cores)
        verdicts.append(text)
    worst = max(
        (s for s in summaries if s.tool == "migrate"), key=lambda s: s.peak_rss_mib, default=None
    )
    if worst:
        ok = "met" if worst.peak_rss_mib <= RSS_TARGET_MIB else "MISSED"
        verdicts.append(
            f"peak RSS: at most {worst.peak_rss_mib:.0f} MiB (scenario {worst.scenario}; "
            f"target <= {RSS_TARGET_MIB} MiB) {ok}"
        )
    return lines, verdicts


def _budget(
    mig: Summary, base: Summary, startup: Summary | None, min_ratio: float, cores: int
) -> str:
    """What meeting the target would leave migrate, from this run's own figures. The target
    is a wall time (rclone's, divided by the ratio). For a copy, the servers' CPU for the
    same data is about the same whoever sends it (compare the two tools' server CPU; the
    lower of the two is taken), so at best the client has the machine's cores for that
    long, less what the servers need. For the re-run, the start-up row is what no re-run
    can go below."""
    wall = base.wall / min_ratio
    if startup is not None:
        return (
            f"; the target allows {wall:.2f} s, and starting the interpreter and importing "
            f"the receipt's module alone takes {startup.wall:.2f} s (migrate's re-run: "
            f"{mig.wall:.2f} s)"
        )
    servers = min(mig.server_cpu, base.server_cpu)  # the servers' need, not their idling
    client = cores * wall - servers
    return (
        f"; the target's {wall:.1f} s on {cores} cores leaves the client at most "
        f"{max(client, 0.0):.1f} CPU s beside the servers' {servers:.1f} "
        f"(migrate used {mig.cpu:.1f}, rclone {base.cpu:.1f})"
    )


def versions(sw: SeaweedFS) -> dict[str, str]:
    def out(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            return "?"

    import botocore

    rclone = out([str(BIN / "rclone"), "version"]).splitlines()
    weed = out([str(BIN / "weed"), "version"]).strip().splitlines()
    azurite_pkg = ROOT / "tools" / "azurite" / "node_modules" / "azurite" / "package.json"
    try:
        azurite_version = json.loads(azurite_pkg.read_text())["version"]
    except (OSError, ValueError, KeyError):
        azurite_version = "?"
    commit = out(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]).strip()
    dirty = out(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"])
    return {
        "migrate": f"{commit}{' + uncommitted changes' if dirty.strip() else ''}",
        "python": platform.python_version(),
        "boto3/botocore": f"{boto3.__version__}/{botocore.__version__}",
        "rclone": rclone[0].split()[-1] if rclone else "?",
        "seaweedfs": weed[0].split()[2] if weed and len(weed[0].split()) > 2 else "?",
        "azurite": azurite_version,
    }


# -- main ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small scale, to debug the bench")
    parser.add_argument("--rounds", type=int, help="rounds per scenario (full: 3, quick: 1)")
    parser.add_argument("--only", default="1,2,3,4,5", help="scenarios to run, e.g. 1,2")
    parser.add_argument("--concurrency", type=int, default=8, help="objects at once, both tools")
    parser.add_argument("--part-size-mib", type=int, default=16, help="part size, both tools")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    parser.add_argument("--note", default="", help="a line for the RESULTS.md section")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--driver",
        choices=("cli", "script"),
        default="cli",
        help="migrate's copies: the CLI (inventory, plan --no-pilot, approve, run bulk-1) or "
        "bench/migrate_copy.py (inventory and run_phase of a one-phase plan, one process)",
    )
    parser.add_argument(
        "--with-pilot",
        action="store_true",
        help="the CLI driver plans a pilot and runs it before bulk-1 (forced past its gate): "
        "the workflow the runs before 2026-12-02 15:48 measured",
    )
    parser.add_argument(
        "--budget-minutes",
        type=float,
        default=14.0,
        help="skip later rounds of a scenario that would take the run past this",
    )
    parser.add_argument(
        "--try-unsigned-payload",
        action="store_true",
        help="experiment: migrate's boto3 sends UNSIGNED-PAYLOAD (as it does over HTTPS when a "
        "checksum header is sent) instead of hashing every body again to sign it over HTTP",
    )
    parser.add_argument(
        "--profile", action="store_true", help="after the rounds, profile migrate with py-spy"
    )
    args = parser.parse_args(argv)
    # Said before the servers start and the data is seeded, not minutes later as a traceback.
    missing = [] if (BIN / "rclone").exists() else ["rclone"]
    if args.profile and prof.py_spy() is None:
        missing.append("py-spy")
    if missing:
        say(
            f"bench: {', '.join(missing)} not found in {BIN}: run `make bench`, which installs "
            "them (pip install -e '.[bench]')"
        )
        return 2
    scale = QUICK if args.quick else FULL
    rounds = scale.rounds if args.rounds is None else args.rounds
    only = {int(x) for x in args.only.split(",") if x}
    if 4 in only:
        only.add(2)  # the re-run needs scenario 2's finished copy
    # migrate's processes start from compiled modules, as after an install: with an
    # editable install and PYTHONDONTWRITEBYTECODE set, every module edited since the last
    # compile would otherwise be compiled again by every process the bench starts.
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "migrate", "providers"], cwd=ROOT, check=True
    )
    started = time.monotonic()
    budget = args.budget_minutes * 60
    skipped: list[str] = []
    load_before = os.getloadavg()
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M")

    with ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="migrate-bench-"))
        if not args.keep:
            stack.callback(shutil.rmtree, workdir, True)
        say(f"Work directory {workdir}; scale {scale.name}, {rounds} round(s); starting servers")
        sw = stack.enter_context(seaweedfs(workdir / "seaweedfs"))
        az = stack.enter_context(azurite(workdir / "azurite"))
        env = dict(os.environ)
        env.update(
            {
                S3_KEY: sw.access_key,
                S3_SECRET: sw.secret_key,
                AZ_CONN: az.connection_string,
                "RCLONE_CONFIG": str(workdir / "rclone.conf"),  # none: remotes are below
                "PYTHONPATH": str(ROOT),
            }
        )
        for remote in ("SRC", "DST"):  # two remotes on one server: a streamed copy
            env.update(
                {
                    f"RCLONE_CONFIG_{remote}_TYPE": "s3",
                    f"RCLONE_CONFIG_{remote}_PROVIDER": "SeaweedFS",
                    f"RCLONE_CONFIG_{remote}_ACCESS_KEY_ID": sw.access_key,
                    f"RCLONE_CONFIG_{remote}_SECRET_ACCESS_KEY": sw.secret_key,
                    f"RCLONE_CONFIG_{remote}_ENDPOINT": sw.endpoint,
                }
            )
        env.update(
            {
                "RCLONE_CONFIG_AZ_TYPE": "azureblob",
                "RCLONE_CONFIG_AZ_ACCOUNT": az.account,
                "RCLONE_CONFIG_AZ_KEY": az.key,
                "RCLONE_CONFIG_AZ_ENDPOINT": az.endpoint,
            }
        )
        bench = Bench(
            scale,
            workdir,
            args.concurrency,
            args.part_size_mib * MiB,
            sw,
            az,
            env,
            measure.server_processes(),
        )
        bench.migrate_env = dict(env)
        bench.driver = args.driver
        bench.with_pilot = args.with_pilot
        if args.try_unsigned_payload:
            # botocore merges the config file's s3 section into the client's Config.
            aws_config = workdir / "aws-config"
            aws_config.write_text("[default]\ns3 =\n    payload_signing_enabled = false\n")
            bench.migrate_env["AWS_CONFIG_FILE"] = str(aws_config)
            say("Experiment: migrate runs with payload_signing_enabled = false (AWS_CONFIG_FILE)")
        say(f"Servers: SeaweedFS {sw.endpoint}, Azurite {az.endpoint}")
        say("rclone flags (copies): " + " ".join(bench.rclone_flags()))
        say("  + Azure -> S3: --s3-storage-class=STANDARD")
        say("  listing: lsjson -R --files-only --use-server-modtime --no-mimetype; size")
        say(
            f"migrate: TransferConfig(concurrency={args.concurrency}, "
            f"part_size={args.part_size_mib} MiB)"
        )

        hashes = measure.hash_speeds()
        say(
            f"Single-core hashing: SHA-256 {hashes['sha256'] / 1e9:.2f} GB/s, "
            f"MD5 {hashes['md5'] / 1e9:.2f} GB/s"
        )

        large, small = scale.large, scale.small
        want_large = (large[0], large[0] * large[1])
        want_small = (small[0], small[0] * small[1])
        if 3 in only:
            t = time.monotonic()
            az_want = seed_azure(az, "mixed", scale)
            say(
                f"Seeded Azurite: {az_want[0]:,} blobs, {az_want[1] / MiB:,.0f} MiB "
                f"in {time.monotonic() - t:.1f} s"
            )
        if 5 in only:
            seconds = seed_listing(bench, "s5-list", scale.listing)
            say(f"Seeded s5-list: {scale.listing:,} empty objects in {seconds:.1f} s (filer)")

        def large_copies(rnd: int) -> None:
            # The PUT loop is the limit, each round; in the first it also seeds the source.
            m, info = bench.putloop("s1-src", "large/", large[0], large[1], args.concurrency)
            bench.add(1, "put-loop", rnd, *want_large, m, True, "loop time", wall=info["seconds"])
            bench.copy_s3(1, rnd, "s1-src", want_large)

        def small_copies(rnd: int) -> None:
            if not small_seeded:
                # The limit, measured once: this loop is also the seeding (20,000 PUTs).
                m, info = bench.putloop("s2-src", "small/", small[0], small[1], 8, procs=2)
                bench.add(
                    2, "put-loop", rnd, *want_small, m, True, "loop time, 2 processes x 8 threads",
                    wall=info["seconds"],
                )  # fmt: skip
                small_seeded.append(True)
            kept = bench.copy_s3(2, rnd, "s2-src", want_small, keep=4 in only)
            if 4 in only:
                bench.noop_rerun(rnd, "s2-src", kept, want_small)
                bench.empty_bucket(kept["migrate"][1])
                bench.empty_bucket(kept["rclone"])

        def azure_copies(rnd: int) -> None:
            for tool in bench.order(rnd):
                prefix = f"s3-{tool[0]}-r{rnd}-"
                dest = f"{prefix}mixed"
                note = ""
                if tool == "migrate":
                    sites = bench.sites_file(f"s3-r{rnd}", [], ["mixed"], prefix)
                    m, info = bench.migrate_copy(
                        "copy", sites, "src-az", {"mixed": dest}, f"s3-migrate-r{rnd}"
                    )
                    note = _steps(info)
                else:
                    m = bench.rclone_copy(
                        "AZ:mixed", f"DST:{dest}", f"s3-rclone-r{rnd}",
                        ("--s3-storage-class=STANDARD",),
                    )  # fmt: skip
                ok, why = bench.check(dest, az_want)
                bench.add(3, tool, rnd, *az_want, m, ok, why or note)
                bench.empty_bucket(dest)

        small_seeded: list[bool] = []
        groups: dict[int, Callable[[int], None]] = {
            1: large_copies,
            2: small_copies,  # and 4, the re-run of its finished copies
            3: azure_copies,
            5: lambda rnd: bench.listing(rnd, "s5-list", scale.listing),
        }
        # The slowest scenario last: the budget check keeps rounds of the others.
        todo = [g for g in (1, 3, 5, 2) if g in only]
        took: dict[int, float] = {}
        for rnd in range(1, rounds + 1):
            say(f"Round {rnd}/{rounds} (first: {bench.order(rnd)[0]})")
            for i, group in enumerate(todo):
                # Past round 1, a round of a scenario is skipped if it would take the run
                # over its budget, keeping time for the scenarios after it in this round.
                later = sum(took.get(g, 0.0) for g in todo[i + 1 :])
                if rnd > 1 and time.monotonic() - started + took[group] + later > budget:
                    skipped.append(f"{SCENARIOS[group]} round {rnd}")
                    say(f"  skipped {SCENARIOS[group]} round {rnd}: over the time budget")
                    continue
                t = time.monotonic()
                groups[group](rnd)
                took[group] = time.monotonic() - t

        slug = datetime.now().strftime("%Y%m%d-%H%M%S") + f"-{scale.name}"
        profiles: dict[int, list[str]] = {}
        if args.profile:
            OUT.mkdir(parents=True, exist_ok=True)
            if rounds == 0 and 1 in only:
                bench.putloop("s1-src", "large/", large[0], large[1], args.concurrency)
            if rounds == 0 and 2 in only:
                bench.putloop("s2-src", "small/", small[0], small[1], 8, procs=2)
            sources = {1: "s1-src", 2: "s2-src", 3: "mixed", 4: "s2-src", 5: "s5-list"}
            for scenario, src in sources.items():
                if scenario in only:
                    profiles[scenario] = bench.profile(scenario, src, slug)
                    say("\n".join(profiles[scenario][:12]))

    total = time.monotonic() - started
    summaries = summarize(bench.rows)
    table, verdicts = report(summaries, len(os.sched_getaffinity(0)), bench.rows)
    by_server = servers_by_tool(summaries)
    say("")
    for line in table:
        say(line)
    say("")
    say("Servers' CPU s, by server (medians):")
    for line in by_server:
        say("  " + line)
    say("")
    for v in verdicts:
        say("  " + v)
    say(f"Whole run: {total / 60:.1f} min")

    OUT.mkdir(parents=True, exist_ok=True)
    with (OUT / f"bench-{slug}.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        names = [k for k in asdict(bench.rows[0])] if bench.rows else []
        writer.writerow([*names, "cpu", "mb_s", "obj_s"])
        for r in bench.rows:
            writer.writerow(
                [*asdict(r).values(), f"{r.cpu:.3f}", f"{r.mb_s:.2f}", f"{r.obj_s:.1f}"]
            )
    with (OUT / f"summary-{slug}.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        if summaries:
            writer.writerow(asdict(summaries[0]).keys())
            for s in summaries:
                writer.writerow(asdict(s).values())
    say(f"CSV: {OUT / f'bench-{slug}.csv'}")

    if not args.no_record:
        record(
            skipped,
            profiles,
            stamp,
            scale,
            rounds,
            args,
            hashes,
            versions(sw),
            table,
            by_server,
            verdicts,
            total,
            load_before,
            bench.rclone_flags(),
        )
        say(f"Appended to {RESULTS}")
    return 0 if all(r.ok for r in bench.rows) else 1


def record(
    skipped: list[str],
    profiles: dict[int, list[str]],
    stamp: str,
    scale: Scale,
    rounds: int,
    args: argparse.Namespace,
    hashes: dict[str, float],
    vers: dict[str, str],
    table: list[str],
    by_server: list[str],
    verdicts: list[str],
    total: float,
    load_before: tuple[float, float, float],
    flags: list[str],
) -> None:
    mem = psutil.virtual_memory().total / 2**30
    load_after = os.getloadavg()
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\nEach `make bench` run appends a section.\n")
    lines = [
        "",
        f"## {stamp}: {scale.name} scale, {rounds} round(s)",
        "",
        f"- Machine: {os.cpu_count()} cores, {mem:.1f} GiB memory, {platform.platform()}; "
        f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}.",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()) + ".",
        f"- Limits: single-core SHA-256 {hashes['sha256'] / 1e9:.2f} GB/s, "
        f"MD5 {hashes['md5'] / 1e9:.2f} GB/s; PUT loop and start-up rows below.",
        f"- Budget: migrate concurrency {args.concurrency}, part size {args.part_size_mib} MiB; "
        f"rclone `copy {' '.join(flags)}` (+ `--s3-storage-class=STANDARD` from Azure).",
        "- migrate's copies: "
        + (
            "bench/migrate_copy.py, one process (`--driver script`)."
            if args.driver == "script"
            else "inventory, then `run --phase pilot` and `bulk-1` (`--with-pilot`)."
            if args.with_pilot
            else "inventory, then `run --phase bulk-1` of a plan made with `--no-pilot`."
        ),
        f"- Whole run: {total / 60:.1f} min (budget {args.budget_minutes:.0f} min"
        + (f"; skipped to keep it: {', '.join(skipped)}" if skipped else "")
        + ")."
        + (f" {args.note}" if args.note else ""),
        *(
            ["- Experiment: migrate ran with payload_signing_enabled = false (not the default)."]
            if args.try_unsigned_payload
            else []
        ),
        "",
        *table,
        "",
        "Servers' CPU s, by server (medians):",
        "",
        *[f"- {line}" for line in by_server],
        "",
        "Targets:",
        "",
        *[f"- {v}" for v in verdicts],
        "",
    ]
    for scenario, found in profiles.items():
        lines += [f"Profile of migrate, scenario {scenario} ({SCENARIOS[scenario]}), py-spy:", ""]
        lines += ["```", *found, "```", ""]
    with RESULTS.open("a", encoding="utf-8") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
