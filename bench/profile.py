"""Where migrate spends its CPU in a scenario: py-spy samples every thread of the copy
process (run with `python -m bench.run --profile`; needs py-spy, `pip install py-spy`).

The collapsed stacks are kept under bench/out/; the summary is the functions with the most
samples on top of the stack (self) and anywhere in it (inclusive), the file paths cut to
the package, so that a hot spot reads as `migrate/ledger.py:transfer_done`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")
_CUT = ("site-packages/", "lib/python3.11/", str(Path(__file__).resolve().parent.parent) + "/")


def py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def record(cmd: Sequence[str], env: dict[str, str], out: Path, rate: int = 250) -> int:
    """Run cmd under py-spy; returns its exit code. Only the thread holding the GIL is
    sampled (--gil): the profile is where Python spends CPU, not where threads wait (native
    hashing releases the GIL, so it shows less than it costs)."""
    spy = py_spy()
    if spy is None:
        raise FileNotFoundError("py-spy is not installed (pip install py-spy)")
    args = [
        spy,
        "record",
        "--format",
        "raw",
        "--rate",
        str(rate),
        "--gil",
        "-o",
        str(out),
        "--nonblocking",
        "--",
        *cmd,
    ]
    done = subprocess.run(args, env=env, capture_output=True, timeout=1800)
    return done.returncode


def _name(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file")
    for cut in _CUT:
        if cut in path:
            path = path.split(cut, 1)[1]
            break
    return f"{path}:{m.group('func')}"


def summarize(collapsed: Path, top: int = 15) -> list[str]:
    """Top functions by self and inclusive share of the samples."""
    self_counts: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_name(f) for f in stack.split(";") if f.strip()]
        # the first frames are the process and thread names: keep Python frames only
        frames = [f for f in frames if ".py:" in f]
        if not frames:
            continue
        total += count
        self_counts[frames[-1]] += count
        for name in set(frames):
            incl[name] += count
    if not total:
        return ["(no samples)"]
    lines = [f"{total} samples; self (top of stack):"]
    lines += [f"  {n / total * 100:5.1f} %  {name}" for name, n in self_counts.most_common(top)]
    lines.append("inclusive (anywhere in the stack), project and SDK frames:")
    interesting = [
        (name, n)
        for name, n in incl.most_common()
        if name.startswith(
            (
                "migrate/",
                "providers/",
                "botocore/",
                "boto3/",
                "azure/",
                "libcloud/",
                "hashlib",
                "sqlite3",
                "ssl",
                "http/",
                "urllib3/",
            )
        )
    ]
    lines += [f"  {n / total * 100:5.1f} %  {name}" for name, n in interesting[: top + 10]]
    return lines
