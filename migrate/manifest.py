"""The manifest: one JSON line per copied object, and Merkle roots an auditor can re-check.

File: `manifest.jsonl.gz`, gzip with mtime 0 and no file name, so the same ledger always
gives the same bytes. Each line is the canonical JSON (keys sorted, separators `,` and
`:`, UTF-8, no escaping of non-ASCII) of one done object:

    dataset, source_container, source_key, source_etag, source_version, source_proof,
    destination_bucket, destination_key, destination_etag, size, sha256

`source_proof` names the source's own checksum the bytes read matched: "md5", else a
whole-object one (migrate/sourcesum.py: "sha256", "crc64nvme", "crc32c", "crc32", "sha1");
"none" when the source stated none (the proof is then the bytes read). Lines are sorted by
(dataset, destination_bucket, destination_key), comparing UTF-8 bytes.

Merkle roots (the construction of RFC 6962, section 2.1, over SHA-256):
- leaf hash = SHA-256(0x00 || line), `line` being the UTF-8 bytes of one JSON line without
  its newline;
- node hash = SHA-256(0x01 || left || right);
- the root of n leaves: n = 0, SHA-256 of nothing; n = 1, the leaf hash; else, with k the
  largest power of two below n, node(root(first k leaves), root(the other n - k)).
  Equivalently: hash adjacent pairs level by level, an odd last node is promoted as is.
- A dataset's root is over its lines, in file order; the plan's root over every line.
tools/check_manifest.py recomputes them with the standard library alone.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from migrate.atomic import replacing
from migrate.ledger import Ledger, ManifestRow
from migrate.plan import Plan

MANIFEST_FILE = "manifest.jsonl.gz"
CONSTRUCTION = (
    "RFC 6962 Merkle tree over SHA-256: leaf = SHA-256(0x00 || line), node = "
    "SHA-256(0x01 || left || right), line = UTF-8 canonical JSON line without newline; "
    "split at the largest power of two below n (an odd last node is promoted); empty = "
    "SHA-256(''). Dataset roots over the dataset's lines, the plan root over all lines, "
    "in file order."
)


class Merkle:
    """A streaming Merkle root (see the module doc): O(log n) memory."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, bytes]] = []  # (height, hash) of complete subtrees
        self.count = 0

    def add(self, line: bytes) -> None:
        node = hashlib.sha256(b"\x00" + line).digest()
        height = 0
        while self._stack and self._stack[-1][0] == height:
            _, left = self._stack.pop()
            node = hashlib.sha256(b"\x01" + left + node).digest()
            height += 1
        self._stack.append((height, node))
        self.count += 1

    def root(self) -> str:
        if not self._stack:
            return hashlib.sha256(b"").hexdigest()
        node = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            node = hashlib.sha256(b"\x01" + left + node).digest()
        return node.hex()


def manifest_line(row: ManifestRow) -> bytes:
    """The canonical JSON line of one object (without newline)."""
    record = {
        "dataset": row.dataset,
        "source_container": row.container,
        "source_key": row.key,
        "source_etag": row.source_etag,
        "source_version": row.source_version,
        "source_proof": row.source_proof,
        "destination_bucket": row.destination_bucket,
        "destination_key": row.destination_key,
        "destination_etag": row.destination_etag,
        "size": row.size,
        "sha256": row.sha256,
    }
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True)
class DatasetRoot:
    dataset: str
    objects: int
    bytes: int
    root: str


@dataclass(frozen=True, slots=True)
class ManifestInfo:
    path: Path | None  # None: computed without writing a file
    objects: int
    bytes: int
    sha256: str  # of the gzip file's bytes
    plan_root: str
    datasets: tuple[DatasetRoot, ...]
    construction: str = CONSTRUCTION


class _HashSink:
    """A write-only file that keeps only the SHA-256 of what it is given (and forwards it)."""

    def __init__(self, out: BinaryIO | None) -> None:
        self.digest = hashlib.sha256()
        self._out = out

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        if self._out is not None:
            self._out.write(data)
        return len(data)

    def flush(self) -> None:
        if self._out is not None:
            self._out.flush()


def _build(plan: Plan, ledger: Ledger, out: BinaryIO | None, path: Path | None) -> ManifestInfo:
    sink = _HashSink(out)
    whole = Merkle()
    datasets: list[DatasetRoot] = []
    current: str | None = None
    tree = Merkle()
    size = total = 0
    # mtime=0 and no name: the same rows always give the same bytes.
    with gzip.GzipFile(filename="", mode="wb", fileobj=sink, mtime=0) as gz:
        for row in ledger.manifest_rows(plan.name):
            if row.dataset != current:
                if current is not None:
                    datasets.append(DatasetRoot(current, tree.count, size, tree.root()))
                current, tree, size = row.dataset, Merkle(), 0
            line = manifest_line(row)
            gz.write(line + b"\n")
            whole.add(line)
            tree.add(line)
            size += row.size
            total += row.size
        if current is not None:
            datasets.append(DatasetRoot(current, tree.count, size, tree.root()))
    return ManifestInfo(
        path=path,
        objects=whole.count,
        bytes=total,
        sha256=sink.digest.hexdigest(),
        plan_root=whole.root(),
        datasets=tuple(datasets),
    )


def manifest_info(plan: Plan, ledger: Ledger) -> ManifestInfo:
    """What `write_manifest` would write (roots, counts, the file's SHA-256), without a file."""
    return _build(plan, ledger, None, None)


def write_manifest(plan: Plan, ledger: Ledger, path: Path) -> ManifestInfo:
    """Write the manifest of the plan's done objects to `path` (atomically: a temporary file
    renamed into place) and return its roots. Streams: memory does not grow with the number
    of objects."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as out:
        info = _build(plan, ledger, out, path)
    return info
