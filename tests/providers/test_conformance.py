"""The one conformance suite: every guarantee of providers/base.py, checked against every
adapter (local directory, S3 on SeaweedFS, GCS's XML API on SeaweedFS, Azure Blob on
Azurite) over real stores.

An adapter whose module is not there yet, or a local server that cannot start, is a
visible skip, never a silent pass. Each test works in a fresh container.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import hashlib
import importlib
import importlib.util
import io
import os
import random
import re
import time
import unicodedata
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from migrate.errors import (
    ChecksumMismatch,
    ConfigError,
    CredentialsRejected,
    EndpointUnreachable,
    NotFound,
    PreconditionFailed,
    SourceChanged,
    Unsupported,
)
from migrate.localservers import free_port
from migrate.sites import Site
from providers.base import ABSENT, PartResult, StoreAdapter, WriteAttrs
from providers.factory import build_adapter
from tests.conftest import SiteFactory, unique_name

# azure_sdk, s3_sdk: through a declared proxy, where requests take the SDK's path (the
# Azure SDK's downloader; botocore, as for every AWS site) instead of the lean one.
KINDS = ["local", "s3", "s3_sdk", "gcs", "azure", "azure_sdk"]
_MODULES = {
    "local": "providers.local",
    "s3": "providers.s3",
    "s3_sdk": "providers.s3",
    "gcs": "providers.gcs",
    "azure": "providers.azure",
    "azure_sdk": "providers.azure",
}

# Keys that break naive encoders: spaces, accents, %, +, #, a trailing dot, deep prefixes,
# and strings that look already URL-encoded (decoding twice would change them).
AWKWARD_KEYS = [
    "space/with space.txt",
    "accent/café-naïve-ñ-ü.txt",
    "percent/100%.txt",
    "percent/%2F%20%25.txt",
    "plus/a+b+c.txt",
    "plus/+leading and trailing+",
    "hash/#1 and #2.txt",
    "dot/trailing.",
    "deep/a/b/c/d/e/f/g/h/i/j/leaf.bin",
    "mixed/ä ö+ü %41#?&=;,.txt",
    "cjk/数据/ファイル.txt",
]


def _data(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _sums(data: bytes) -> dict[str, str]:
    return {"md5": _md5(data), "sha256": hashlib.sha256(data).hexdigest()}


def _read_all(adapter: StoreAdapter, container: str, key: str, **kw: object) -> bytes:
    stream = adapter.open_range(container, key, **kw)  # type: ignore[arg-type]
    try:
        chunks = []
        while chunk := stream.read(64 * 1024):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        stream.close()


def _put(
    adapter: StoreAdapter,
    container: str,
    key: str,
    data: bytes,
    attrs: WriteAttrs | None = None,
) -> str | None:
    result = adapter.put_object(
        container, key, io.BytesIO(data), len(data), attrs or WriteAttrs(), {"md5": _md5(data)}
    )
    return result.etag


def _utf8_order(keys: list[str]) -> list[str]:
    return sorted(keys, key=lambda k: k.encode("utf-8"))


# -- fixtures --------------------------------------------------------------------------


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name != "local":
        request.applymarker(pytest.mark.integration)
    return name


@pytest.fixture
def site(kind: str, site_for: SiteFactory) -> Site:
    module = _MODULES[kind]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not written yet")
    try:
        importlib.import_module(module)
    except ImportError as exc:
        pytest.skip(f"{module} is not importable: {exc}")
    try:
        return site_for(kind)
    except ConfigError as exc:  # the local server's binary is not installed
        pytest.skip(f"{kind} test server unavailable: {exc.one_line()}")


@pytest.fixture
def adapter(site: Site) -> Iterator[StoreAdapter]:
    store = build_adapter(site)
    yield store
    store.close()


@pytest.fixture
def container(adapter: StoreAdapter) -> str:
    name = unique_name("conf")
    adapter.create_container(name)
    return name


# -- reads and writes ------------------------------------------------------------------


def test_put_head_get_round_trip(adapter: StoreAdapter, container: str) -> None:
    data = _data(100_000)
    # An Expires header where the store keeps one (S3): sent as given, read back the same.
    expires = "Tue, 01 Jan 2030 00:00:00 GMT" if adapter.capabilities.expires_header else None
    attrs = WriteAttrs(
        content_type="application/x-test",
        cache_control="max-age=60",
        content_disposition='attachment; filename="one.bin"',
        content_language="fr-FR",
        expires=expires,
        metadata={"origin": "conformance", "case": "lower"},
    )
    result = adapter.put_object(
        container, "obj/one.bin", io.BytesIO(data), len(data), attrs, {"md5": _md5(data)}
    )
    assert result.etag

    info = adapter.head(container, "obj/one.bin")
    assert info.key == "obj/one.bin"
    assert info.container == container
    assert info.size == len(data)
    assert info.etag == result.etag
    assert info.content_type == "application/x-test"
    assert info.cache_control == "max-age=60"
    assert info.content_disposition == 'attachment; filename="one.bin"'
    assert info.content_language == "fr-FR"
    assert info.expires == expires
    assert info.metadata == {"origin": "conformance", "case": "lower"}
    if adapter.capabilities.metadata_in_listing:  # a listing that describes the object
        (listed,) = [o for o in adapter.list_objects(container, "obj/") if o.key == "obj/one.bin"]
        assert (listed.content_disposition, listed.content_language) == (
            'attachment; filename="one.bin"',
            "fr-FR",
        )
    assert info.checksums.get("md5", _md5(data)) == _md5(data)
    if "md5" in adapter.capabilities.native_checksums:
        assert info.checksums["md5"] == _md5(data)
    assert _read_all(adapter, container, "obj/one.bin") == data


def test_an_empty_metadata_value_reads_as_empty_or_absent(
    adapter: StoreAdapter, container: str
) -> None:
    """Stores differ on an entry with an empty value (Azure keeps it, SeaweedFS drops it),
    but every adapter gives text: a HEAD and a listing that carries metadata agree."""
    data = b"a note"
    attrs = WriteAttrs(content_type="text/plain", metadata={"empty": "", "full": "v"})
    adapter.put_object(
        container, "meta/empty.txt", io.BytesIO(data), len(data), attrs, {"md5": _md5(data)}
    )
    listed = [o for o in adapter.list_objects(container, "meta/") if o.key == "meta/empty.txt"]
    for meta in (adapter.head(container, "meta/empty.txt").metadata, listed[0].metadata):
        if meta is None:  # a listing without metadata (S3)
            continue
        assert meta.get("full") == "v"
        assert meta.get("empty", "") == ""
        assert all(isinstance(v, str) for v in meta.values()), meta


def test_encoded_objects_are_read_as_stored(adapter: StoreAdapter, container: str) -> None:
    """A gzip-encoded object is bytes like any other: never inflated on the way."""
    data = gzip.compress(_data(50_000))
    _put(adapter, container, "page.html.gz", data, WriteAttrs(content_encoding="gzip"))
    assert _read_all(adapter, container, "page.html.gz") == data
    assert _read_all(adapter, container, "page.html.gz", start=10, end=100) == data[10:100]
    assert adapter.head(container, "page.html.gz").content_encoding == "gzip"


def test_listing_and_head_give_the_same_aware_modification_time(
    adapter: StoreAdapter, container: str
) -> None:
    before = datetime.now(UTC) - timedelta(minutes=5)
    _put(adapter, container, "dated", b"x")
    (listed,) = list(adapter.list_objects(container))
    head = adapter.head(container, "dated")
    assert listed.last_modified is not None and head.last_modified is not None
    assert listed.last_modified.utcoffset() is not None  # aware, never naive
    assert before < listed.last_modified < datetime.now(UTC) + timedelta(minutes=5)
    # The header has whole seconds; a listing may have milliseconds.
    assert abs((listed.last_modified - head.last_modified).total_seconds()) < 1


def test_empty_object(adapter: StoreAdapter, container: str) -> None:
    _put(adapter, container, "empty", b"")
    assert adapter.head(container, "empty").size == 0
    assert _read_all(adapter, container, "empty") == b""


def test_put_reads_only_length_bytes(adapter: StoreAdapter, container: str) -> None:
    """The body may hold more than `length` (a part cut from a larger file)."""
    data = _data(5000)
    body = io.BytesIO(data)
    body.seek(1000)
    part = data[1000:3000]
    adapter.put_object(container, "slice", body, len(part), WriteAttrs(), {"md5": _md5(part)})
    assert _read_all(adapter, container, "slice") == part


def test_ranged_reads(adapter: StoreAdapter, container: str) -> None:
    data = _data(10_000, seed=1)
    _put(adapter, container, "ranged", data)
    for start, end in [(0, 10), (10, 20), (9_999, 10_000), (1234, 5678), (0, 10_000)]:
        assert _read_all(adapter, container, "ranged", start=start, end=end) == data[start:end]
    assert _read_all(adapter, container, "ranged", start=7_000) == data[7_000:]
    assert _read_all(adapter, container, "ranged", start=5, end=5) == b""


def test_overwrite_replaces_whole_object(adapter: StoreAdapter, container: str) -> None:
    _put(adapter, container, "k", _data(3000, seed=1))
    _put(adapter, container, "k", b"short")
    assert _read_all(adapter, container, "k") == b"short"
    assert adapter.head(container, "k").size == 5


def test_if_match_stale_etag_is_source_changed(adapter: StoreAdapter, container: str) -> None:
    old = _put(adapter, container, "versioned", b"first version")
    assert old
    assert _read_all(adapter, container, "versioned", if_match=old) == b"first version"
    new = _put(adapter, container, "versioned", b"second version, longer")
    assert new and new != old
    with pytest.raises(SourceChanged):
        _read_all(adapter, container, "versioned", if_match=old)
    with pytest.raises(SourceChanged):
        _read_all(adapter, container, "versioned", start=0, end=4, if_match=old)
    assert _read_all(adapter, container, "versioned", if_match=new) == b"second version, longer"


def test_a_conditional_read_of_an_object_deleted_since_is_not_found(
    adapter: StoreAdapter, container: str
) -> None:
    """Deleted between the listing and its copy, the object is gone (NotFound), as every
    store says it, not "changed since it was listed": Azure answers the read's condition
    with 412 for a blob that is no more."""
    listed = _put(adapter, container, "deleted-since", b"listed, then deleted")
    assert listed
    adapter.delete(container, "deleted-since")
    for where in ({}, {"start": 0, "end": 4}):
        with pytest.raises(NotFound):
            _read_all(adapter, container, "deleted-since", if_match=listed, **where)


def test_conditional_put_writes_only_over_what_it_expects(
    adapter: StoreAdapter, container: str
) -> None:
    """A write that expects the key free, or one object there, never replaces another's
    object: it fails with PreconditionFailed and the object stays as it was."""

    def put(key: str, data: bytes, expect: str) -> str | None:
        return adapter.put_object(
            container, key, data, len(data), WriteAttrs(), _sums(data), expect=expect
        ).etag

    first = put("k", b"first writer", ABSENT)
    assert _read_all(adapter, container, "k") == b"first writer"
    with pytest.raises(PreconditionFailed):
        put("k", b"second writer", ABSENT)
    assert _read_all(adapter, container, "k") == b"first writer"
    assert first
    other = _put(adapter, container, "k", b"another writer since")  # unconditional
    assert other and other != first
    with pytest.raises(PreconditionFailed):
        put("k", b"over the first", first)
    assert _read_all(adapter, container, "k") == b"another writer since"
    assert put("k", b"over the one expected", other)
    assert _read_all(adapter, container, "k") == b"over the one expected"
    with pytest.raises(PreconditionFailed):  # an ETag expected, and nothing there
        put("gone", b"data", other)
    with pytest.raises(NotFound):
        adapter.head(container, "gone")


def test_conditional_complete_keeps_the_object_and_the_upload(
    adapter: StoreAdapter, container: str
) -> None:
    size = _part_size(adapter)
    chunks = [_data(size, seed=4), _data(100, seed=5)]
    upload = adapter.create_multipart(container, "mp/taken", WriteAttrs())
    parts = [
        adapter.upload_part(container, "mp/taken", upload, n, chunk, len(chunk), _sums(chunk))
        for n, chunk in enumerate(chunks, start=1)
    ]
    _put(adapter, container, "mp/taken", b"another writer's object")
    with pytest.raises(PreconditionFailed):
        adapter.complete_multipart(container, "mp/taken", upload, parts, expect=ABSENT)
    assert _read_all(adapter, container, "mp/taken") == b"another writer's object"
    # The upload is still there: once the key is free, or the object is the one expected,
    # it completes.
    theirs = adapter.head(container, "mp/taken").etag
    assert theirs
    result = adapter.complete_multipart(container, "mp/taken", upload, parts, expect=theirs)
    assert result.etag
    assert _read_all(adapter, container, "mp/taken") == b"".join(chunks)


# -- write verification ----------------------------------------------------------------


def test_wrong_md5_on_put_stores_nothing(adapter: StoreAdapter, container: str) -> None:
    data = b"the real bytes"
    wrong = {"md5": _md5(b"other bytes")}
    with pytest.raises(ChecksumMismatch):
        adapter.put_object(container, "bad", io.BytesIO(data), len(data), WriteAttrs(), wrong)
    with pytest.raises(NotFound):
        adapter.head(container, "bad")
    assert list(adapter.list_objects(container)) == []

    # Over an existing object: the old one stays whole.
    _put(adapter, container, "kept", b"old content")
    with pytest.raises(ChecksumMismatch):
        adapter.put_object(container, "kept", io.BytesIO(data), len(data), WriteAttrs(), wrong)
    assert _read_all(adapter, container, "kept") == b"old content"


def test_wrong_sha256_on_put_stores_nothing(adapter: StoreAdapter, container: str) -> None:
    if "sha256" not in adapter.capabilities.verifies_checksums:
        pytest.skip("this store does not verify SHA-256 on write")
    data = b"the real bytes"
    sums = {"md5": _md5(data), "sha256": hashlib.sha256(b"other").hexdigest()}
    with pytest.raises(ChecksumMismatch):
        adapter.put_object(container, "bad", io.BytesIO(data), len(data), WriteAttrs(), sums)
    with pytest.raises(NotFound):
        adapter.head(container, "bad")


def test_put_with_right_sha256(adapter: StoreAdapter, container: str) -> None:
    data = _data(2048, seed=4)
    result = adapter.put_object(
        container, "sha", io.BytesIO(data), len(data), WriteAttrs(), _sums(data)
    )
    assert result.checksums.get("sha256", _sums(data)["sha256"]) == _sums(data)["sha256"]
    info = adapter.head(container, "sha")
    assert info.checksums.get("sha256", _sums(data)["sha256"]) == _sums(data)["sha256"]
    if {"sha256"} <= set(adapter.capabilities.verifies_checksums) & set(
        adapter.capabilities.native_checksums
    ):
        assert result.checksums["sha256"] == info.checksums["sha256"] == _sums(data)["sha256"]


def test_wrong_md5_on_upload_part(adapter: StoreAdapter, container: str) -> None:
    upload = adapter.create_multipart(container, "mp-bad", WriteAttrs())
    data = _data(1024)
    with pytest.raises(ChecksumMismatch):
        adapter.upload_part(
            container, "mp-bad", upload, 1, io.BytesIO(data), len(data), {"md5": _md5(b"x")}
        )
    adapter.abort_multipart(container, "mp-bad", upload)


# -- multipart -------------------------------------------------------------------------


def _part_size(adapter: StoreAdapter) -> int:
    return max(adapter.capabilities.min_part_size, 64 * 1024)


def test_multipart_round_trip(adapter: StoreAdapter, container: str) -> None:
    size = _part_size(adapter)
    chunks = [_data(size, seed=1), _data(size, seed=2), _data(1000, seed=3)]
    attrs = WriteAttrs(content_type="application/x-parts", metadata={"kind": "multipart"})
    upload = adapter.create_multipart(container, "mp/object", attrs)
    parts: list[PartResult] = []
    # Sent out of order, as concurrent part uploads finish.
    for number in (2, 1, 3):
        chunk = chunks[number - 1]
        parts.append(
            adapter.upload_part(
                container, "mp/object", upload, number, io.BytesIO(chunk), len(chunk),
                _sums(chunk),
            )
        )  # fmt: skip
    assert list(adapter.list_objects(container)) == []
    with pytest.raises(NotFound):
        adapter.head(container, "mp/object")

    result = adapter.complete_multipart(container, "mp/object", upload, parts)
    assert result.etag
    expected = b"".join(chunks)
    info = adapter.head(container, "mp/object")
    assert info.size == len(expected)
    assert info.content_type == "application/x-parts"
    assert info.metadata == {"kind": "multipart"}
    whole = hashlib.sha256(expected).hexdigest()
    if "sha256" in info.checksums:  # full-object, or COMPOSITE with its part count kept
        assert info.checksums["sha256"] == whole or info.checksums["sha256"].endswith("-3")
    if "sha256" in result.checksums and "sha256" in adapter.capabilities.native_checksums:
        assert result.checksums["sha256"] in (whole, info.checksums.get("sha256"))
    assert _read_all(adapter, container, "mp/object") == expected
    assert [o.key for o in adapter.list_objects(container)] == ["mp/object"]
    if adapter.capabilities.lists_uploads:
        assert list(adapter.list_multipart_uploads(container)) == []


@pytest.mark.parametrize("by_parts", [False, True], ids=["one-copy", "over-copy-limit"])
def test_replace_metadata_keeps_the_bytes_and_needs_the_same_object(
    adapter: StoreAdapter, container: str, by_parts: bool
) -> None:
    size = 2 * _part_size(adapter) + 1000
    if by_parts:  # as if the object were over the store's single-copy limit
        adapter.capabilities = dataclasses.replace(
            adapter.capabilities, max_copy_size=_part_size(adapter)
        )
    data = _data(size, seed=7)
    attrs = WriteAttrs(
        content_type="application/x-kept", cache_control="max-age=9", metadata={"a": "1"}
    )
    adapter.put_object(container, "meta/obj", io.BytesIO(data), size, attrs, {"md5": _md5(data)})
    before = adapter.head(container, "meta/obj")
    assert before.etag is not None
    sha = hashlib.sha256(data).hexdigest()
    new = dataclasses.replace(attrs, metadata={"a": "1", "migrate-sha256": sha})

    result = adapter.replace_metadata(container, "meta/obj", new, if_match=before.etag, size=size)

    after = adapter.head(container, "meta/obj")
    assert after.metadata == {"a": "1", "migrate-sha256": sha}
    assert (after.content_type, after.cache_control) == ("application/x-kept", "max-age=9")
    assert result.etag == after.etag
    assert _read_all(adapter, container, "meta/obj") == data
    if adapter.capabilities.lists_uploads:
        assert list(adapter.list_multipart_uploads(container)) == []

    # Rewritten by someone else: the stale ETag refuses, the new object keeps its metadata.
    time.sleep(0.01)  # a new mtime for the local store's ETag
    _put(adapter, container, "meta/obj", b"other bytes")
    with pytest.raises(SourceChanged):
        adapter.replace_metadata(container, "meta/obj", new, if_match=after.etag or "", size=size)
    assert adapter.head(container, "meta/obj").metadata == {}
    if adapter.capabilities.lists_uploads:
        assert list(adapter.list_multipart_uploads(container)) == []


def test_tags_are_written_read_back_and_kept_when_metadata_is_replaced(
    adapter: StoreAdapter, container: str
) -> None:
    if not adapter.capabilities.object_tags:
        assert adapter.read_tags(container, "absent") == {}  # none, and nothing asked
        pytest.skip("this store's objects bear no tags (GCS)")
    tags = {"classification": "health data", "retention": "2036-01-01", "a+b": "c/d=e"}
    data = _data(2000, seed=11)
    _put(adapter, container, "tagged/one", data, WriteAttrs(metadata={"m": "1"}, tags=tags))
    size = _part_size(adapter)
    chunk = _data(size, seed=12)
    upload = adapter.create_multipart(container, "tagged/parts", WriteAttrs(tags=tags))
    part = adapter.upload_part(
        container, "tagged/parts", upload, 1, io.BytesIO(chunk), size, _sums(chunk)
    )
    adapter.complete_multipart(container, "tagged/parts", upload, [part])
    _put(adapter, container, "plain", b"no tags")

    for key in ("tagged/one", "tagged/parts"):
        assert adapter.read_tags(container, key) == tags
        assert adapter.head(container, key).tags == len(tags)  # each store here says
        stream = adapter.open_range(container, key, 0, 10)
        assert stream.info is not None and stream.info.tags == len(tags)
        stream.close()
    assert adapter.read_tags(container, "plain") == {}
    assert adapter.head(container, "plain").tags == 0
    with pytest.raises(NotFound):
        adapter.read_tags(container, "absent")

    # The SHA-256 written after a multipart copy: the object keeps its tags.
    before = adapter.head(container, "tagged/one")
    assert before.etag is not None
    adapter.replace_metadata(
        container, "tagged/one", WriteAttrs(metadata={"m": "1", "n": "2"}),
        if_match=before.etag, size=len(data),
    )  # fmt: skip
    assert adapter.head(container, "tagged/one").metadata == {"m": "1", "n": "2"}
    assert adapter.read_tags(container, "tagged/one") == tags
    # Also where the store rewrites a large object by parts (a new object).
    big = _data(2 * size + 1000, seed=13)
    _put(adapter, container, "tagged/big", big, WriteAttrs(tags=tags))
    adapter.capabilities = dataclasses.replace(adapter.capabilities, max_copy_size=size)
    etag = adapter.head(container, "tagged/big").etag
    assert etag is not None
    adapter.replace_metadata(
        container, "tagged/big", WriteAttrs(metadata={"n": "3"}), if_match=etag, size=len(big)
    )
    assert adapter.head(container, "tagged/big").metadata == {"n": "3"}
    assert adapter.read_tags(container, "tagged/big") == tags


def test_unfinished_upload_is_listed_then_aborted(adapter: StoreAdapter, container: str) -> None:
    if not adapter.capabilities.lists_uploads:
        pytest.skip("this store cannot list unfinished uploads")
    size = _part_size(adapter)
    data = _data(size, seed=9)
    upload = adapter.create_multipart(container, "pending/big", WriteAttrs())
    sent = adapter.upload_part(
        container, "pending/big", upload, 1, io.BytesIO(data), len(data), _sums(data)
    )

    uploads = list(adapter.list_multipart_uploads(container, prefix="pending/"))
    assert [(u.key, u.upload_id) for u in uploads] == [("pending/big", upload)]
    assert list(adapter.list_multipart_uploads(container, prefix="other/")) == []
    parts = list(adapter.list_parts(container, "pending/big", upload))
    assert [(p.part_number, p.size, p.etag) for p in parts] == [(1, len(data), sent.etag)]

    adapter.abort_multipart(container, "pending/big", upload)
    assert list(adapter.list_multipart_uploads(container)) == []
    assert list(adapter.list_objects(container)) == []
    adapter.abort_multipart(container, "pending/big", upload)  # already gone: no error


# -- listing ---------------------------------------------------------------------------


def test_listing_order_prefix_and_start_after(adapter: StoreAdapter, container: str) -> None:
    names = [
        "B", "b", "a-b", "a/b", "a.b", "a_b", "a0", "aa", "é", "e", "z", "~",
        "Z", "a/c/d", "a b", "ab", "a+", "a%", "ä", "a/b-c", "a/b.d",
    ]  # fmt: skip
    keys = [f"list/{n}" for n in names]
    for key in random.Random(5).sample(keys, len(keys)):
        _put(adapter, container, key, key.encode())
    _put(adapter, container, "other/x", b"x")
    _put(adapter, container, "lisu", b"x")

    expected = _utf8_order(keys)
    listed = list(adapter.list_objects(container, prefix="list/"))
    assert [o.key for o in listed] == expected
    assert all(o.size == len(o.key.encode()) for o in listed)
    assert all(o.container == container for o in listed)

    everything = [o.key for o in adapter.list_objects(container)]
    assert everything == _utf8_order([*keys, "other/x", "lisu"])

    for pivot in (expected[0], expected[7], expected[-2]):
        after = [o.key for o in adapter.list_objects(container, "list/", start_after=pivot)]
        assert after == expected[expected.index(pivot) + 1 :]
    assert list(adapter.list_objects(container, "list/", start_after=expected[-1])) == []
    # start_after needs not be an existing key.
    after = [o.key for o in adapter.list_objects(container, "list/", start_after="list/a/")]
    assert after == [k for k in expected if k.encode() > b"list/a/"]
    assert list(adapter.list_objects(container, prefix="nothing/")) == []


def test_key_that_is_also_a_prefix(adapter: StoreAdapter, container: str) -> None:
    """'x' and 'x/y' are two objects on S3; a store that cannot hold both says so."""
    _put(adapter, container, "x", b"file")
    try:
        _put(adapter, container, "x/y", b"below")
    except Unsupported as exc:
        pytest.skip(f"this store cannot hold 'x' and 'x/y' together: {exc.one_line()}")
    assert [o.key for o in adapter.list_objects(container)] == ["x", "x/y"]
    assert [o.key for o in adapter.list_objects(container, start_after="x")] == ["x/y"]
    assert _read_all(adapter, container, "x") == b"file"
    assert _read_all(adapter, container, "x/y") == b"below"


@pytest.mark.slow
def test_listing_pages_past_1000(
    kind: str, adapter: StoreAdapter, container: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if kind == "local":
        pytest.skip("a directory is not listed in pages")
    count = 1050
    if kind.startswith("azure"):  # pages of 5,000 blobs: pages of 7 here, to cross many
        monkeypatch.setattr("providers.azure._PAGE", 7)
        count = 30
    keys = [f"many/{i:05d}" for i in range(count)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: _put(adapter, container, k, b""), keys))
    assert [o.key for o in adapter.list_objects(container, "many/")] == keys
    half = count // 2
    resumed = [o.key for o in adapter.list_objects(container, "many/", start_after=keys[half - 1])]
    assert resumed == keys[half:]


def test_awkward_keys_round_trip(adapter: StoreAdapter, container: str) -> None:
    for i, key in enumerate(AWKWARD_KEYS):
        _put(adapter, container, key, f"{i}:{key}".encode())
    listed = [o.key for o in adapter.list_objects(container)]
    assert listed == _utf8_order(AWKWARD_KEYS)
    for i, key in enumerate(AWKWARD_KEYS):
        body = f"{i}:{key}".encode()
        info = adapter.head(container, key)
        assert (info.key, info.size) == (key, len(body))
        assert _read_all(adapter, container, key) == body
        prefix = key.rsplit("/", 1)[0] + "/"
        assert key in [o.key for o in adapter.list_objects(container, prefix=prefix)]


def test_nfc_and_nfd_keys_are_two_objects(adapter: StoreAdapter, container: str) -> None:
    nfc = unicodedata.normalize("NFC", "norm/café.txt")
    nfd = unicodedata.normalize("NFD", "norm/café.txt")
    assert nfc != nfd
    _put(adapter, container, nfc, b"composed")
    _put(adapter, container, nfd, b"decomposed!")
    assert [o.key for o in adapter.list_objects(container)] == _utf8_order([nfc, nfd])
    assert adapter.head(container, nfc).size == len(b"composed")
    assert adapter.head(container, nfd).size == len(b"decomposed!")
    assert _read_all(adapter, container, nfc) == b"composed"
    assert _read_all(adapter, container, nfd) == b"decomposed!"


# -- deletes and absences --------------------------------------------------------------


def test_delete_is_idempotent(adapter: StoreAdapter, container: str) -> None:
    _put(adapter, container, "doomed", b"x")
    adapter.delete(container, "doomed")
    with pytest.raises(NotFound):
        adapter.head(container, "doomed")
    adapter.delete(container, "doomed")
    adapter.delete(container, "never-existed")
    assert list(adapter.list_objects(container)) == []


def test_a_folder_emptied_by_deletes_lists_nothing_and_a_folder_object_stays(
    adapter: StoreAdapter, container: str
) -> None:
    """The last object of a 'folder' deleted (a delta's removal): a store keeping objects
    as files (SeaweedFS) keeps the directory, and listed it as a 0-byte object, which
    verify then named `unexpected` for good (a newcomer's review). A folder object someone
    did write stays listed."""
    _put(adapter, container, "cohort/notes #3/only.csv", b"x")
    _put(adapter, container, "cohort/kept.csv", b"y")
    try:
        _put(adapter, container, "marker/", b"")
        markers = ["marker/"]
    except Unsupported:  # a local directory holds no such key
        markers = []
    adapter.delete(container, "cohort/notes #3/only.csv")
    assert [o.key for o in adapter.list_objects(container)] == ["cohort/kept.csv", *markers]
    assert [o.key for o in adapter.list_objects(container, "cohort/notes #3/")] == []


def test_missing_key_is_not_found(adapter: StoreAdapter, container: str) -> None:
    with pytest.raises(NotFound):
        adapter.head(container, "missing")
    with pytest.raises(NotFound):
        _read_all(adapter, container, "missing")


def test_check_and_missing_container(adapter: StoreAdapter, container: str) -> None:
    adapter.check(container)
    missing = unique_name("absent")
    for call in (lambda: adapter.check(missing), lambda: list(adapter.list_objects(missing))):
        with pytest.raises(NotFound) as absent:
            call()
        # The line a mistyped name gives: which container, and what to check next.
        assert missing in str(absent.value), absent.value
        assert "sites check" in (absent.value.hint or ""), absent.value.hint


def test_create_container_twice(adapter: StoreAdapter, container: str) -> None:
    adapter.create_container(container)
    adapter.check(container)


# -- credentials and reachability ------------------------------------------------------

_WRONG_SECRET = "wrong-secret-value-0123456789"
_WRONG_AZURE_KEY = base64.b64encode(b"\x01" * 64).decode()


def _with_wrong_secret(site: Site, monkeypatch: pytest.MonkeyPatch) -> tuple[Site, str]:
    """The same site, its credentials pointing at a wrong secret; returns (site, secret)."""
    ref = site.credentials
    if ref.secret_key_env:
        monkeypatch.setenv("MIGRATE_TEST_WRONG_SECRET", _WRONG_SECRET)
        creds = ref.model_copy(update={"secret_key_env": "MIGRATE_TEST_WRONG_SECRET"})
        return site.model_copy(update={"credentials": creds}), _WRONG_SECRET
    if ref.connection_string_env:
        conn = re.sub(
            r"AccountKey=[^;]+",
            f"AccountKey={_WRONG_AZURE_KEY}",
            os.environ[ref.connection_string_env],
        )
        monkeypatch.setenv("MIGRATE_TEST_WRONG_CONN", conn)
        creds = ref.model_copy(update={"connection_string_env": "MIGRATE_TEST_WRONG_CONN"})
        return site.model_copy(update={"credentials": creds}), _WRONG_AZURE_KEY
    if ref.account_key_env:
        monkeypatch.setenv("MIGRATE_TEST_WRONG_KEY", _WRONG_AZURE_KEY)
        creds = ref.model_copy(update={"account_key_env": "MIGRATE_TEST_WRONG_KEY"})
        return site.model_copy(update={"credentials": creds}), _WRONG_AZURE_KEY
    pytest.skip("this site has no credentials to get wrong")


def test_wrong_credentials_are_rejected(
    site: Site, adapter: StoreAdapter, container: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong_site, secret = _with_wrong_secret(site, monkeypatch)
    wrong = build_adapter(wrong_site)
    try:
        with pytest.raises(CredentialsRejected) as caught:
            wrong.check(container)
        assert secret not in str(caught.value) and secret not in caught.value.one_line()
        with pytest.raises(CredentialsRejected):
            list(wrong.list_objects(container))
        with pytest.raises(CredentialsRejected):
            wrong.put_object(container, "x", io.BytesIO(b"x"), 1, WriteAttrs(), {})
        # Without a container too (sites check of a destination whose buckets the run makes).
        with pytest.raises(CredentialsRejected):
            wrong.check_account()
    finally:
        wrong.close()
    assert list(adapter.list_objects(container)) == []
    assert adapter.check_account()  # what it showed, in words


def test_unreachable_endpoint(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    if site.endpoint is None:
        pytest.skip("this site has no network endpoint")
    dead = site.endpoint.replace(
        site.endpoint.split("//", 1)[1].split("/", 1)[0], f"127.0.0.1:{free_port()}", 1
    )
    update: dict[str, object] = {"endpoint": dead}
    if site.proxy:  # reached through its proxy: the proxy is what cannot be reached
        update["proxy"] = f"http://127.0.0.1:{free_port()}"
    ref = site.credentials
    if ref.connection_string_env:
        conn = re.sub(
            r"BlobEndpoint=[^;]+", f"BlobEndpoint={dead}", os.environ[ref.connection_string_env]
        )
        monkeypatch.setenv("MIGRATE_TEST_DEAD_CONN", conn)
        update["credentials"] = ref.model_copy(
            update={"connection_string_env": "MIGRATE_TEST_DEAD_CONN"}
        )
    unreachable = build_adapter(site.model_copy(update=update))
    started = time.monotonic()
    try:
        with pytest.raises(EndpointUnreachable):
            unreachable.check("any-bucket")
    finally:
        unreachable.close()
    assert time.monotonic() - started < 30


# -- what a container keeps besides its current objects ---------------------------------


def test_a_fresh_container_has_no_older_versions_and_no_lock(
    adapter: StoreAdapter, container: str
) -> None:
    _put(adapter, container, "one", b"1")
    found = adapter.protection(container)
    assert found.detail
    if not adapter.capabilities.reads_protection:  # GCS: unknown, never a guessed "none"
        assert (found.versioning, found.older_versions, found.object_lock) == (None,) * 3
    else:
        assert found.older_versions == 0 and found.counted_all
        assert found.object_lock is False
        assert found.versioning in ("off", None)  # Azure: an account setting it cannot read
    with pytest.raises(NotFound):
        adapter.protection(unique_name("absent"))
