"""One process at a time runs or verifies a plan: an advisory lock file in the state
directory, taken without waiting and released by the kernel when the process ends (a crash
or kill -9 leaves no stale lock). Reading commands (status, report, plan show) take none;
`status` asks whether it is held (`holder`). An inventory holds a lock of the same kind
on the run it lists (`ListingClaims`)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from migrate.errors import ConfigError, PlanBusy

LOCK_DIR = "locks"
_TRIES = 20  # 50 ms apart: a lock taken by `holder` for a moment is given back by then


def lock_path(state_dir: Path, plan: str) -> Path:
    # A plan's name may hold any character: the file is named by its digest.
    return state_dir / LOCK_DIR / f"{hashlib.sha256(plan.encode()).hexdigest()[:24]}.lock"


@contextmanager
def plan_lock(state_dir: Path, plan: str, doing: str, *, plan_file: str = "PLAN") -> Iterator[None]:
    """Hold the plan's lock while the block runs; PlanBusy at once if another process
    holds it, naming what that process does. `doing`: e.g. "run --phase bulk-1";
    `plan_file`: the plan as the hint's command names it."""
    path = lock_path(state_dir, plan)
    fd = _open_lock(path, state_dir, f"plan {plan}")
    try:
        for attempt in range(_TRIES):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip()
                # No line: a `status` probing the lock for a moment (see `holder`), or a
                # holder about to write its line: asked again, briefly.
                if holder or attempt == _TRIES - 1:
                    raise PlanBusy(
                        f"plan {plan} is in use by another process ({holder or 'unknown'})",
                        hint=f"wait for it to end (`migrate status {plan_file}` shows its "
                        "progress), then run this command again",
                    ) from None
                time.sleep(0.05)
            except OSError as exc:  # a file system without locks (some NFS): ENOLCK
                raise ConfigError(
                    f"state directory {state_dir}: the lock of plan {plan} cannot be taken "
                    f"there ({exc.strerror}): two runs of the plan could not be kept apart",
                    hint="put state_dir on a local file system (or one with file locks)",
                ) from None
        since = datetime.now(UTC).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}: {doing}, since {since}".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    """Whether `path` still names the file `fd` is open on."""
    try:
        there = os.stat(path)
    except OSError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (there.st_dev, there.st_ino)


def _open_lock(path: Path, state_dir: Path, of: str) -> int:
    """The lock file's descriptor, made if need be; ConfigError where it cannot be."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ConfigError(
            f"state directory {state_dir}: the lock of {of} cannot be made there ({exc.strerror})",
            hint="set state_dir in the sites file to a directory you can write to",
        ) from None


def holder(state_dir: Path, plan: str) -> str | None:
    """What the process holding the plan's lock does ("pid 12: run --phase bulk-1, since
    ..."), or None when no process holds it. Asked of the kernel: a shared lock taken and
    given back at once (a killed holder's line stays in the file; its pid may be another
    process's by now). A run starting in that moment asks again (`plan_lock`)."""
    path = lock_path(state_dir, plan)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None  # never run nor verified here
    except OSError as exc:
        return f"unknown: the plan's lock file {path} cannot be read here ({exc.strerror})"
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            line = os.pread(fd, 512, 0).decode("utf-8", "replace").strip()
            return line or "a process starting (it has not said what it does yet)"
        except OSError as exc:  # a file system without locks (some NFS)
            return f"unknown: the plan's lock file {path} cannot be locked here ({exc.strerror})"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class Holder:
    """`holder`'s line in fields, for scripts (`status --json`): each None when the line
    does not say (a process starting, a lock that cannot be read)."""

    pid: int | None
    command: str | None  # "run", "verify" or "demo"
    phase: str | None  # a run's phase
    since: str | None  # ISO 8601, UTC
    line: str


_LINE = re.compile(r"^pid (\d+): (.+), since (\S+)$")


def parse_holder(line: str | None) -> Holder | None:
    if line is None:
        return None
    found = _LINE.match(line)
    if found is None:
        return Holder(None, None, None, None, line)
    doing = found[2]
    phase = doing.removeprefix("run --phase ") if doing.startswith("run --phase ") else None
    return Holder(int(found[1]), doing.split(" ", 1)[0], phase, found[3], line)


def copying(line: str | None, phases: Sequence[str]) -> set[str]:
    """Of `phases`, those whose objects the lock's holder (`holder`'s line) may be copying
    now: its phase for a run, none for a verification, all when it does not say."""
    held = parse_holder(line)
    if held is None:
        return set()
    if held.command == "run":
        return {held.phase or ""} & set(phases)
    if held.command == "verify":
        return set()
    return set(phases)


def left_behind(line: str | None, phases: Sequence[str], waiting: Iterable[str]) -> list[str]:
    """Of the phases with objects `waiting` (pending, in progress), those no process is
    copying now (`holder`'s line), in the plan's order (`phases`)."""
    behind = set(waiting) - copying(line, phases)
    return [p for p in phases if p in behind]


class ListingClaims:
    """The inventory runs this process is listing: a lock file each, taken without waiting
    and released when the listing ends or the process does (kill -9 too). Another
    inventory of the same site so tells a run a process is still listing (which it
    supersedes: that one stops at its next page) from one a crash left (which it resumes);
    both resumed it, and listed the same pages twice (a review)."""

    def __init__(self, state_dir: Path) -> None:
        self._dir = state_dir / LOCK_DIR
        self._held: dict[int, int] = {}

    def _path(self, run_id: int) -> Path:
        return self._dir / f"inventory-run-{run_id}.lock"

    def take(self, run_id: int) -> bool:
        """Whether this process now holds the run (False: another process lists it)."""
        path = self._path(run_id)
        for _ in range(_TRIES):
            fd = _open_lock(path, path.parent.parent, "an inventory")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                # Held: by a process listing the run, or for a moment by another's sweep
                # about to remove the file (then made anew, and taken): asked again,
                # briefly, before the run is taken for one being listed.
                os.close(fd)
                time.sleep(0.01)
                continue
            except OSError:
                # A file system without locks (some NFS): liveness cannot be told there;
                # the run is taken, as before there were these locks.
                os.close(fd)
                return True
            if _same_file(fd, path):
                self._held[run_id] = fd
                return True
            # Swept between its opening and its locking (another process saw the run
            # not yet committed): a lock on a removed file holds nothing. Again.
            os.close(fd)
        return False

    def release(self) -> None:
        """Give every run back."""
        for fd in self._held.values():
            os.close(fd)
        self._held.clear()

    def sweep(self, resumable: Callable[[int], bool]) -> None:
        """Remove the lock files of runs no inventory will resume (finished, abandoned,
        superseded) that no process holds: each run would leave one for good."""
        try:
            paths = list(self._dir.glob("inventory-run-*.lock"))
        except OSError:
            return
        for path in paths:
            number = path.stem.removeprefix("inventory-run-")
            if not number.isdigit() or int(number) in self._held or resumable(int(number)):
                continue
            try:
                fd = os.open(path, os.O_RDWR)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if _same_file(fd, path):  # not one made anew since this one was opened
                    path.unlink(missing_ok=True)  # held: no process is listing that run
            except OSError:
                pass  # held by a process still stopping: it is swept next time
            finally:
                os.close(fd)
