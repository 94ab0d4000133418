"""Files written whole or not at all: a plan, a report's files, its manifest. A temporary
file beside the target, renamed over it once complete; removed when the write fails (a full
disk left `manifest.jsonl.gz.tmp` behind, and a plan written in place would be left cut)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def replacing(path: Path) -> Iterator[BinaryIO]:
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("wb") as out:
            yield out
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: Path, data: bytes) -> None:
    with replacing(path) as out:
        out.write(data)
