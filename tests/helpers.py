"""Small helpers the tests share: seed objects through an adapter, wrap one with faults."""

from __future__ import annotations

import hashlib
import io
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from migrate.errors import Retryable
from providers.base import ObjectInfo, StoreAdapter, WriteAttrs


def body(i: int, size: int) -> bytes:
    """Distinct, reproducible, non-repeating bytes for object number i (no two parts of an
    object alike, so a part put in the wrong place cannot go unnoticed)."""
    return random.Random(i).randbytes(size)


def put(
    adapter: StoreAdapter, container: str, key: str, data: bytes, attrs: WriteAttrs | None = None
) -> None:
    """Seed one object. Retries what the store calls transient (a loaded SeaweedFS answers
    an occasional 500): seeding is not what the tests measure; the product retries too."""
    for attempt in range(4):
        try:
            adapter.put_object(
                container,
                key,
                io.BytesIO(data),
                len(data),
                attrs or WriteAttrs(),
                {"md5": hashlib.md5(data).hexdigest()},
            )
            return
        except Retryable:
            if attempt == 3:
                raise


def seed(
    adapter: StoreAdapter, container: str, count: int, size: int = 64, prefix: str = "obj/"
) -> dict[str, bytes]:
    """Write `count` objects (keys prefix + number, sizes vary) and return key -> bytes."""
    objects = {f"{prefix}{i:06d}": body(i, size + i % 7) for i in range(count)}
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda kv: put(adapter, container, kv[0], kv[1]), objects.items()))
    return objects


class FailingListing:
    """An adapter whose listing breaks after `fail_after` objects, like a dropped connection."""

    def __init__(self, inner: StoreAdapter, fail_after: int) -> None:
        self._inner = inner
        self._fail_after = fail_after

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def list_objects(
        self, container: str, prefix: str = "", start_after: str | None = None
    ) -> Iterator[ObjectInfo]:
        for n, obj in enumerate(self._inner.list_objects(container, prefix, start_after)):
            if n == self._fail_after:
                raise ConnectionResetError("listing interrupted (injected)")
            yield obj
