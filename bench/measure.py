"""How one tool run is measured: a subprocess, its wall time, the CPU seconds of its whole
process tree (from wait4, which counts waited-for descendants too), its peak RSS (each
process's own high-water mark, VmHWM, polled every 50 ms and summed over the tree), and the
CPU the local servers spent meanwhile, in all and per server (on 2 cores, client CPU is
taken from the servers).
Also the machine's hashing limits, measured in this process."""

from __future__ import annotations

import hashlib
import os
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

MiB = 1024 * 1024


@dataclass(frozen=True)
class Measured:
    returncode: int
    wall: float
    cpu_user: float
    cpu_sys: float
    peak_rss: int  # bytes
    server_cpu: float  # CPU seconds of the local servers during the run
    stdout: str
    stderr: str
    # The same, per server process name ("weed" for SeaweedFS, "node" for Azurite).
    server_by: tuple[tuple[str, float], ...] = ()

    @property
    def cpu(self) -> float:
        return self.cpu_user + self.cpu_sys


def _hwm(pid: int) -> int:
    """The peak RSS of a process since its exec (VmHWM), in bytes; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


_SELF_CMDLINE = psutil.Process().cmdline()


def _tree_peak(proc: psutil.Process, peaks: dict[int, int]) -> int:
    """Each process's own high-water mark, summed over the tree: exact for one process
    (what every tool here is), an upper bound for several. A child not yet past exec
    still shows this process's memory (fork copies it, vfork shares it): not counted."""
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        procs = [proc]
    for p in procs:
        try:
            if p.cmdline() == _SELF_CMDLINE:
                continue
        except psutil.Error:
            continue
        peaks[p.pid] = max(peaks.get(p.pid, 0), _hwm(p.pid))
    return sum(peaks.values())


def _cpu_by(procs: Sequence[psutil.Process]) -> dict[str, float]:
    """CPU seconds so far of each server, by process name."""
    found: dict[str, float] = {}
    for p in procs:
        try:
            t = p.cpu_times()
            name = p.name()
        except psutil.Error:
            continue
        spent = t.user + t.system + t.children_user + t.children_system
        found[name] = found.get(name, 0.0) + spent
    return found


def _spent(before: dict[str, float], after: dict[str, float]) -> tuple[tuple[str, float], ...]:
    return tuple(sorted((name, after[name] - before.get(name, 0.0)) for name in after))


def server_processes() -> list[psutil.Process]:
    """The servers this process started (weed, node for Azurite), with their children."""
    me = psutil.Process()
    return [p for p in me.children(recursive=True) if p.name() in ("weed", "node")]


def settle(
    servers: Sequence[psutil.Process], *, idle: float = 0.05, most: float = 5.0
) -> tuple[float, bool]:
    """Before a timed run: write the page cache's dirty pages to disk, then wait (at most
    `most` s) until the servers spend under `idle` of a core. Without it, the run after a
    large copy may share the disk and the CPU with the writeback of that copy's bytes: in
    four of the five runs of 2026-12-02 before 05:45 with several rounds, rclone copied
    scenario 3 16-32 % slower in the round where it came right after scenario 1 (where it
    ran first) than in the others. Returns the seconds it took (not timed as the run's)
    and whether the servers were idle at its end; the disk's own activity is not watched."""
    started = time.monotonic()
    os.sync()
    window = 0.25
    before = sum(_cpu_by(servers).values())
    while True:
        time.sleep(window)
        after = sum(_cpu_by(servers).values())
        if after - before < idle * window:
            return time.monotonic() - started, True
        if time.monotonic() - started >= most:
            return time.monotonic() - started, False
        before = after


def run(
    cmd: Sequence[str],
    *,
    env: dict[str, str],
    logs: Path,
    servers: Sequence[psutil.Process] = (),
    timeout: float = 1800,
) -> Measured:
    """Run cmd to its end and measure it (see the module doc). Its stdout and stderr go to
    files (`logs`.out, `logs`.err): a pipe nobody reads could stall it. The caller
    settles the machine first where it should (see `settle`)."""
    server_before = _cpu_by(servers)
    out_path, err_path = logs.with_suffix(".out"), logs.with_suffix(".err")
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        watched = psutil.Process(proc.pid)
        peaks: dict[int, int] = {}
        peak = 0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                break
            peak = max(peak, _tree_peak(watched, peaks))
            if time.monotonic() - started > timeout:
                proc.kill()
            time.sleep(0.05)
        wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    server_after = _cpu_by(servers)
    server_by = _spent(server_before, server_after)
    return Measured(
        returncode=proc.returncode,
        wall=wall,
        cpu_user=usage.ru_utime,
        cpu_sys=usage.ru_stime,
        # Not wait4's ru_maxrss: on Linux it includes this (parent) process's size at fork.
        peak_rss=peak,
        server_cpu=sum(cpu for _, cpu in server_by),
        stdout=_head(out_path),
        stderr=_head(err_path, tail=True),
        server_by=server_by,
    )


def combine(steps: Sequence[Measured]) -> Measured:
    """Several commands run one after the other, as one: times and CPU add up, the peak
    is the highest, the exit code is the first that is not 0."""
    return Measured(
        returncode=next((m.returncode for m in steps if m.returncode), 0),
        wall=sum(m.wall for m in steps),
        cpu_user=sum(m.cpu_user for m in steps),
        cpu_sys=sum(m.cpu_sys for m in steps),
        peak_rss=max((m.peak_rss for m in steps), default=0),
        server_cpu=sum(m.server_cpu for m in steps),
        stdout=steps[-1].stdout if steps else "",
        stderr="\n".join(m.stderr for m in steps if m.stderr),
        server_by=_summed([m.server_by for m in steps]),
    )


def _summed(parts: Sequence[tuple[tuple[str, float], ...]]) -> tuple[tuple[str, float], ...]:
    total: dict[str, float] = {}
    for part in parts:
        for name, cpu in part:
            total[name] = total.get(name, 0.0) + cpu
    return tuple(sorted(total.items()))


def _head(path: Path, limit: int = 64 * 1024, tail: bool = False) -> str:
    """The first (or last) `limit` bytes of a log: enough for a JSON line or an error."""
    size = path.stat().st_size
    with path.open("rb") as f:
        if tail and size > limit:
            f.seek(size - limit)
        return f.read(limit).decode("utf-8", "replace")


def hash_speeds(size: int = 256 * MiB, repeat: int = 3) -> dict[str, float]:
    """Single-core hashing speed in bytes/s: the median of `repeat` passes over `size`."""
    data = os.urandom(64 * MiB)
    speeds: dict[str, float] = {}
    for name in ("sha256", "md5"):
        runs = []
        for _ in range(repeat):
            h = hashlib.new(name)
            started = time.perf_counter()
            for _ in range(size // len(data)):
                h.update(data)
            runs.append(size / (time.perf_counter() - started))
        speeds[name] = statistics.median(runs)
    return speeds
