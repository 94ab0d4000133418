"""What the S3 adapter guarantees beyond the shared contract: the RequestGuard sees every
request before a byte leaves, redirects are never followed, and listings are in byte order
even on a store that walks directories (SeaweedFS)."""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from migrate.errors import (
    ConfigError,
    CredentialsRejected,
    EndpointUnreachable,
    ListingOutOfOrder,
    MigrateError,
    Permanent,
    Retryable,
    RouteRefused,
)
from migrate.localservers import SeaweedFS, free_port
from migrate.routing import RoutingGuard
from migrate.sites import CredentialRef, Site
from providers.base import WriteAttrs
from providers.s3 import S3Adapter
from tests import helpers
from tests.conftest import unique_name
from tests.faultproxy import Faults, fault_proxy
from tests.helpers import (
    NOT_A_LISTING,
    RANGE_ANSWERS,
    RANGE_BODY,
    FixedAnswer,
    fake_s3_site,
    read_bytes_50_to_59,
)

pytestmark = pytest.mark.integration


class RecordingGuard:
    """Allows every host but `refused_port`; remembers what it was asked."""

    def __init__(self, refused_port: int | None = None) -> None:
        self.refused_port = refused_port
        self.checked: list[tuple[str, str]] = []
        self.recorded: list[tuple[str, str, int, int | None]] = []

    def check(self, method: str, url: str) -> None:
        self.checked.append((method, url))
        if urlsplit(url).port == self.refused_port:
            raise RouteRefused(f"route to {urlsplit(url).netloc} refused")

    def record(self, method: str, url: str, sent_bytes: int, status: int | None) -> None:
        self.recorded.append((method, url, sent_bytes, status))


def _fake_site(port: int, monkeypatch: pytest.MonkeyPatch) -> Site:
    return fake_s3_site(f"http://127.0.0.1:{port}", monkeypatch)


@pytest.fixture
def elsewhere() -> Iterator[FixedAnswer]:
    """Where redirects point: it must never be contacted."""
    server = FixedAnswer(200, {})
    yield server
    server.close()


def _redirect_body(target: int) -> bytes:
    return (
        "<?xml version='1.0' encoding='UTF-8'?><Error><Code>PermanentRedirect</Code>"
        "<Message>The bucket you are attempting to access must be addressed using the "
        f"specified endpoint.</Message><Endpoint>127.0.0.1:{target}</Endpoint>"
        "<Bucket>b</Bucket></Error>"
    ).encode()


@pytest.mark.parametrize("status", [301, 307, 400])
def test_redirects_are_never_followed(
    status: int, elsewhere: FixedAnswer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What botocore's region redirector acts on: a 301/307/400 naming another region.
    headers = {
        "Location": f"http://127.0.0.1:{elsewhere.port}/b/k",
        "x-amz-bucket-region": "eu-central-1",
        "Content-Type": "application/xml",
    }
    server = FixedAnswer(status, headers, _redirect_body(elsewhere.port))
    try:
        guard = RecordingGuard()
        adapter = S3Adapter(_fake_site(server.port, monkeypatch), guard=guard)
        try:
            with pytest.raises(Permanent):
                adapter.head("b", "k")
            with pytest.raises(Permanent):
                adapter.open_range("b", "k").read()
        finally:
            adapter.close()
        # One request each, no retry in another region, nothing sent elsewhere.
        assert [m for m, _ in server.requests] == ["HEAD", "GET"]
        assert elsewhere.requests == []
        assert [m for m, _ in guard.checked] == ["HEAD", "GET"]
        assert [(r[0], r[3]) for r in guard.recorded] == [("HEAD", status), ("GET", status)]
    finally:
        server.close()


def test_refused_route_sends_nothing(
    elsewhere: FixedAnswer, monkeypatch: pytest.MonkeyPatch
) -> None:
    guard = RecordingGuard(refused_port=elsewhere.port)
    adapter = S3Adapter(_fake_site(elsewhere.port, monkeypatch), guard=guard)
    try:
        with pytest.raises(RouteRefused):
            adapter.put_object("b", "k", io.BytesIO(b"secret data"), 11, WriteAttrs(), {})
        with pytest.raises(RouteRefused):
            adapter.check("b")
        # Small in-memory bodies and reads take the lean path (providers/s3_lean.py).
        with pytest.raises(RouteRefused):
            adapter.put_object("b", "k", b"secret data", 11, WriteAttrs(), {})
        with pytest.raises(RouteRefused):
            adapter.open_range("b", "k", 0, 5)
    finally:
        adapter.close()
    assert elsewhere.requests == []
    assert len(guard.checked) == 4
    assert guard.recorded == []


def test_guard_sees_every_request(s3_site: Site) -> None:
    guard = RecordingGuard()
    adapter = S3Adapter(s3_site, guard=guard)
    bucket = unique_name("guard")
    try:
        adapter.create_container(bucket)
        data = b"x" * 12345
        adapter.put_object(bucket, "k", io.BytesIO(data), len(data), WriteAttrs(), {})
        adapter.head(bucket, "k")
        stream = adapter.open_range(bucket, "k")
        assert stream.read() == data
        stream.close()
        adapter.put_object(bucket, "small", memoryview(data)[:100], 100, WriteAttrs(), {})
        stream = adapter.open_range(bucket, "small", 10, 20)
        assert stream.read() == data[10:20]
        stream.close()
    finally:
        adapter.close()
    methods = [m for m, _ in guard.checked]
    assert methods == ["PUT", "PUT", "HEAD", "GET", "PUT", "GET"]
    assert [(r[0], r[2], r[3]) for r in guard.recorded] == [
        ("PUT", 0, 200),
        ("PUT", len(data), 200),
        ("HEAD", 0, 200),
        ("GET", 0, 200),
        ("PUT", 100, 200),
        ("GET", 0, 206),
    ]
    assert all(url.startswith(s3_site.endpoint or "?") for _, url in guard.checked)


def test_every_request_the_server_receives_was_checked_by_the_guard(
    s3_site: Site, seaweed: SeaweedFS
) -> None:
    """Every kind of call of the adapter, through a proxy that counts what reaches the
    server: as many requests as the guard checked, each to the site's endpoint."""
    guard = RecordingGuard()
    with fault_proxy(seaweed.endpoint) as proxy:
        adapter = S3Adapter(s3_site.model_copy(update={"endpoint": proxy.endpoint}), guard=guard)
        try:
            helpers.every_kind_of_call(adapter, unique_name("every"))
        finally:
            adapter.close()
    assert len(guard.checked) == proxy.faults.requests > 10
    assert all(url.startswith(proxy.endpoint + "/") for _, url in guard.checked)
    assert len(guard.recorded) == len(guard.checked)


def test_a_proxy_that_asks_for_credentials_gets_them_from_the_environment(
    s3_site: Site, seaweed: SeaweedFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An egress proxy with a password: the site declares the proxy's URL and, in
    credentials, the variable holding `user:password`, which never shows in a message."""
    monkeypatch.setenv("EGRESS_PROXY_AUTH", helpers.PROXY_AUTH)
    with fault_proxy(seaweed.endpoint, Faults(proxy_auth=helpers.PROXY_AUTH)) as proxy:
        with_auth = helpers.through_proxy(s3_site, proxy.endpoint)
        adapter = S3Adapter(with_auth)
        bucket = unique_name("proxied")
        try:
            helpers.round_trip(adapter, bucket)
        finally:
            adapter.close()
        assert proxy.faults.forwarded >= 4 and proxy.faults.refused_auth == 0
        # Wrong credentials: refused, and the error says so without them.
        monkeypatch.setenv("EGRESS_PROXY_AUTH", "egress-user:wr0ng-p@ss-canary")
        wrong = S3Adapter(with_auth)
        try:
            with pytest.raises(MigrateError) as refused:
                wrong.head(bucket, "k")
        finally:
            wrong.close()
        assert proxy.faults.refused_auth >= 1
        line = refused.value.one_line()
        assert "407" in line and "wr0ng-p" not in line and "p%40ss" not in line
        # The proxy's refusal, said as credentials refused (exit 5), and which to set.
        assert refused.value.exit_code == 5 and "proxy_auth_env" in line, line
    # A proxy that is not there: named, with what to check.
    gone = f"http://127.0.0.1:{free_port()}"
    down = S3Adapter(helpers.through_proxy(s3_site, gone))
    try:
        with pytest.raises(EndpointUnreachable) as unreachable:
            down.head(bucket, "k")
    finally:
        down.close()
    assert f"the declared proxy {gone} does not answer" in unreachable.value.one_line()


def test_a_proxy_refusing_the_tunnel_to_an_https_endpoint_is_credentials_refused(
    s3_site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through a proxy, an https endpoint is reached by CONNECT: a 407 to it is the proxy
    asking for credentials (exit 5), not a proxy that does not answer."""
    monkeypatch.setenv("EGRESS_PROXY_AUTH", "egress-user:wr0ng-canary")
    proxy = helpers.FixedAnswer(407, {"Proxy-Authenticate": 'Basic realm="egress"'})
    site = s3_site.model_copy(update={"endpoint": f"https://127.0.0.1:{free_port()}"})
    adapter = S3Adapter(helpers.through_proxy(site, f"http://127.0.0.1:{proxy.port}"))
    try:
        with pytest.raises(CredentialsRejected) as refused:
            adapter.head("b", "k")
    finally:
        adapter.close()
        proxy.close()
    assert [m for m, _ in proxy.requests][:1] == ["CONNECT"]
    line = refused.value.one_line()
    assert "(407)" in line and "proxy_auth_env" in line and "wr0ng" not in line, line


@pytest.mark.parametrize(
    ("status", "said"),
    [(403, "refused the connection to the endpoint (HTTP 403)"),
     (502, "could not reach the endpoint (HTTP 502)")],
)  # fmt: skip
def test_a_proxy_refusing_the_endpoints_host_is_said_to_refuse_not_to_be_down(
    s3_site: Site, monkeypatch: pytest.MonkeyPatch, status: int, said: str
) -> None:
    """A proxy whose rules do not let the host through answers the CONNECT with 403, one
    that cannot reach it with 502: it answered, so "does not answer" sent the reader to
    check it was up (a review)."""
    monkeypatch.setenv("EGRESS_PROXY_AUTH", "egress-user:secret")
    proxy = helpers.FixedAnswer(status, {})
    site = s3_site.model_copy(update={"endpoint": f"https://127.0.0.1:{free_port()}"})
    adapter = S3Adapter(helpers.through_proxy(site, f"http://127.0.0.1:{proxy.port}"))
    try:
        with pytest.raises(EndpointUnreachable) as refused:
            adapter.head("b", "k")
    finally:
        adapter.close()
        proxy.close()
    line = refused.value.one_line()
    assert said in line, line


_TRUNCATED_NO_TOKEN = (
    b'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult '
    b'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><IsTruncated>true'
    b"</IsTruncated><Contents><Key>a</Key><Size>1</Size><ETag>&quot;x&quot;</ETag>"
    b"</Contents><NextMarker>a</NextMarker></ListBucketResult>"
)


@pytest.mark.parametrize("body", [NOT_A_LISTING, _TRUNCATED_NO_TOKEN])
def test_a_listing_that_cannot_be_followed_fails_instead_of_ending_short(
    body: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page that is not a listing (a portal's HTML) or that says "more" without a way to
    ask for it (a store answering ListObjects V1) would leave keys out of the inventory."""
    server = FixedAnswer(200, {"Content-Type": "application/xml"}, body)
    adapter = S3Adapter(_fake_site(server.port, monkeypatch))
    try:
        with pytest.raises(Permanent, match="listing"):
            list(adapter.list_objects("b"))
    finally:
        adapter.close()
        server.close()


@pytest.mark.parametrize("signature", ["s3v4", "s3"])  # the lean path; botocore's
@pytest.mark.parametrize(("status", "headers", "right"), RANGE_ANSWERS)
def test_a_read_answered_with_other_bytes_than_the_range_asked_fails(
    signature: str,
    status: int,
    headers: dict[str, str],
    right: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A part's bytes are the part's: a store whose Range support is broken would otherwise
    have its object's first bytes copied in place of every part, at the right length."""
    server = FixedAnswer(status, {"ETag": '"e"', **headers}, RANGE_BODY)
    site = _fake_site(server.port, monkeypatch).model_copy(update={"signature_version": signature})
    adapter = S3Adapter(site)
    try:
        read_bytes_50_to_59(adapter, "b", right)
    finally:
        adapter.close()
        server.close()


def test_a_part_the_store_refuses_at_once_is_not_uploaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A large body waits for the store's "100 Continue", as botocore's does: a store that
    answers 503 SlowDown (or 403) on seeing the headers gets no 16 MiB upload for nothing,
    and the answer is the store's, not a broken connection. That connection is not used
    again: the store may still be waiting for the body its headers announced, and would
    take the next request for it."""
    slow_down = (
        b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
        b"<Message>Please reduce your request rate.</Message></Error>"
    )
    server = FixedAnswer(503, {"Content-Type": "application/xml"}, slow_down, answer_first=True)
    guard = RoutingGuard([f"127.0.0.1:{server.port}"], http_allowed=[f"127.0.0.1:{server.port}"])
    adapter = S3Adapter(_fake_site(server.port, monkeypatch), guard=guard)
    data = bytes(16 * 1024 * 1024)
    sums = {"md5": hashlib.md5(data).hexdigest(), "sha256": hashlib.sha256(data).hexdigest()}
    try:
        for number in (1, 2):
            with pytest.raises(Retryable, match="SlowDown"):
                adapter.upload_part("b", "k", "up", number, memoryview(data), len(data), sums)
    finally:
        adapter.close()
        server.close()
    assert [m for m, _ in server.requests] == ["PUT", "PUT"]
    assert server.body_bytes == 0
    assert server.connections == 2
    # The route attestation counts the two requests, and no byte of a body that never left.
    assert [(requests, sent) for _h, _s, requests, sent, *_ in guard.drain()] == [(2, 0)]


def test_a_store_that_does_not_do_100_continue_still_gets_the_part(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """417 Expectation Failed: the part is sent again at once, without the Expect header."""
    data = bytes(2 * 1024 * 1024)
    md5 = hashlib.md5(data).hexdigest()
    server = FixedAnswer(200, {"ETag": f'"{md5}"'}, refuse_expect=True)
    guard = RoutingGuard([f"127.0.0.1:{server.port}"], http_allowed=[f"127.0.0.1:{server.port}"])
    adapter = S3Adapter(_fake_site(server.port, monkeypatch), guard=guard)
    sums = {"md5": md5, "sha256": hashlib.sha256(data).hexdigest()}
    try:
        part = adapter.upload_part("b", "k", "up", 1, memoryview(data), len(data), sums)
    finally:
        adapter.close()
        server.close()
    assert part.etag == md5
    assert [path for _, path in server.requests][:1] == ["417"]  # then the part, whole
    assert len(server.requests) == 2
    # Two requests; the body left once (the 417 came before it).
    assert [(requests, sent) for _h, _s, requests, sent, *_ in guard.drain()] == [(2, len(data))]


@pytest.mark.parametrize("removal", ["hides the object", "says delete marker wrongly"])
def test_a_version_removal_the_store_gets_wrong_fails_only_if_the_object_is_gone(
    removal: str, s3_site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the SHA-256 copy, the duplicate version is removed by its id. A store that
    ignores the id hides the object behind a delete marker: that must fail, not pass as
    copied. A store that only flags its answer oddly, the object intact, must not fail."""
    adapter = S3Adapter(s3_site)
    bucket = unique_name("vdel")
    adapter.create_container(bucket)
    client = adapter._client  # the adapter's own boto3 client: versioning is set up outside
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    data = bytes(range(256)) * 4096
    upload = adapter.create_multipart(bucket, "k", WriteAttrs())
    sums = {"md5": hashlib.md5(data).hexdigest()}
    part = adapter.upload_part(bucket, "k", upload, 1, memoryview(data), len(data), sums)
    done = adapter.complete_multipart(bucket, "k", upload, [part], WriteAttrs())
    real = client.delete_object

    def ignores_the_version(**kwargs: object) -> object:
        kwargs.pop("VersionId")
        return real(**kwargs)

    def flags_a_marker(**kwargs: object) -> object:
        return {**real(**kwargs), "DeleteMarker": True}

    odd = ignores_the_version if removal == "hides the object" else flags_a_marker
    monkeypatch.setattr(client, "delete_object", odd)
    new = WriteAttrs(metadata={"migrate-sha256": "0" * 64})
    try:
        if removal == "hides the object":
            with pytest.raises(Permanent, match="no longer the copy"):
                adapter.replace_metadata(
                    bucket, "k", new, if_match=done.etag or "", size=len(data),
                    version_id=done.version_id,
                )  # fmt: skip
        else:
            result = adapter.replace_metadata(
                bucket, "k", new, if_match=done.etag or "", size=len(data),
                version_id=done.version_id,
            )  # fmt: skip
            assert adapter.head(bucket, "k").etag == result.etag
    finally:
        adapter.close()


def test_a_store_refusing_connections_for_a_moment_is_tried_again(
    s3_site: Site, seaweed: SeaweedFS
) -> None:
    """A connection that could not be opened (nothing was sent) is tried once more, on the
    lean paths as on botocore's: a store restarting does not fail the objects read then."""
    direct = S3Adapter(s3_site)
    bucket = unique_name("retry")
    direct.create_container(bucket)
    direct.put_object(bucket, "k", b"still here", 10, WriteAttrs(), {})
    direct.close()
    refused = threading.Event()  # the proxy starts listening once a connection failed

    class Guard(RecordingGuard):
        def record(self, method: str, url: str, sent_bytes: int, status: int | None) -> None:
            super().record(method, url, sent_bytes, status)
            if status is None:
                refused.set()

    with fault_proxy(seaweed.endpoint, listen_after=refused) as proxy:
        guard = Guard()
        adapter = S3Adapter(s3_site.model_copy(update={"endpoint": proxy.endpoint}), guard=guard)
        try:
            stream = adapter.open_range(bucket, "k", 0, 10)
            assert stream.read(100) == b"still here"
            stream.close()
        finally:
            adapter.close()
    # Both attempts went past the guard; the first had no answer.
    assert [(m, status) for m, _, _, status in guard.recorded] == [("GET", None), ("GET", 206)]


def test_a_listing_page_answered_503_is_asked_again(s3_site: Site, seaweed: SeaweedFS) -> None:
    """The inventory has no retry layer of its own: a throttled page is asked again."""
    direct = S3Adapter(s3_site)
    bucket = unique_name("throttled")
    direct.create_container(bucket)
    for key in ("a", "b/c", "d"):
        direct.put_object(bucket, key, b"x", 1, WriteAttrs(), {})
    direct.close()
    with fault_proxy(seaweed.endpoint, Faults(slowdown_first=1)) as proxy:
        adapter = S3Adapter(s3_site.model_copy(update={"endpoint": proxy.endpoint}))
        try:
            assert sorted(o.key for o in adapter.list_objects(bucket)) == ["a", "b/c", "d"]
        finally:
            adapter.close()
    assert proxy.faults.throttled == 1


def test_a_store_that_never_listens_is_unreachable(s3_site: Site) -> None:
    adapter = S3Adapter(s3_site.model_copy(update={"endpoint": f"http://127.0.0.1:{free_port()}"}))
    try:
        with pytest.raises(EndpointUnreachable):
            adapter.open_range("any-bucket", "k", 0, 10)
    finally:
        adapter.close()


# Keys where path order and byte order disagree: ' ', '-', '.' sort below '/'.
TRICKY = [
    "a", "a b", "a/b", "a/b/c", "a-b/x", "a.b", "a0", "a/b-c", "a/b.d/e", "b", "b-/x",
    "b/y", "c/d/e/f", "c/d-e", "c-d",
]  # fmt: skip


@pytest.mark.parametrize(("software", "lean"), [("seaweedfs", True), (None, True), (None, False)])
def test_walk_listing_is_byte_ordered_and_resumes_at_every_key(
    s3_site: Site, software: str | None, lean: bool
) -> None:
    """Declared, or not declared and told by the store's Server header (on the lean path
    and botocore's): SeaweedFS's own listing is in path order, and its StartAfter skips
    keys after it in byte order."""
    adapter = S3Adapter(s3_site.model_copy(update={"software": software}))
    if not lean:
        adapter._lean = None
    bucket = unique_name("walk")
    try:
        adapter.create_container(bucket)
        for key in TRICKY:
            adapter.put_object(bucket, key, io.BytesIO(b"1"), 1, WriteAttrs(), {})
        expected = sorted(TRICKY, key=lambda k: k.encode())
        assert [o.key for o in adapter.list_objects(bucket)] == expected
        for i, key in enumerate(expected):
            resumed = [o.key for o in adapter.list_objects(bucket, start_after=key)]
            assert resumed == expected[i + 1 :], key
        assert [o.key for o in adapter.list_objects(bucket, prefix="a/b")] == [
            k for k in expected if k.startswith("a/b")
        ]
    finally:
        adapter.close()


def test_a_listing_out_of_key_order_is_refused_not_trusted(s3_site: Site) -> None:
    """SeaweedFS behind a proxy that hides its Server header, undeclared: its path order
    would make a resume or the conflict check skip keys; the listing stops with a reason."""
    adapter = S3Adapter(s3_site.model_copy(update={"software": None}))
    adapter._walk_listing = False
    bucket = unique_name("order")
    try:
        adapter.create_container(bucket)
        for key in ("a/b", "a b"):
            adapter.put_object(bucket, key, io.BytesIO(b"1"), 1, WriteAttrs(), {})
        with pytest.raises(Permanent, match=r"out of order .* declare its software"):
            list(adapter.list_objects(bucket))
        # Resumed after a page that ended at 'a/b': path order gives 'a b' next, a key
        # below the start, not one to skip (the inventory would call it deleted).
        with pytest.raises(ListingOutOfOrder):
            list(adapter.list_objects(bucket, start_after="a/b"))
    finally:
        adapter.close()


def test_flat_listing_on_unambiguous_keys(s3_site: Site) -> None:
    """The flat (AWS) listing path, on keys where SeaweedFS's order is byte order."""
    adapter = S3Adapter(s3_site)
    adapter._walk_listing = False
    bucket = unique_name("flat")
    keys = [f"d{i % 3}/k{i:03d}" for i in range(30)]
    try:
        adapter.create_container(bucket)
        for key in keys:
            adapter.put_object(bucket, key, io.BytesIO(b""), 0, WriteAttrs(), {})
        assert [o.key for o in adapter.list_objects(bucket)] == sorted(keys)
        assert [o.key for o in adapter.list_objects(bucket, "d1/", start_after="d1/k010")] == [
            k for k in sorted(keys) if k.startswith("d1/") and k > "d1/k010"
        ]
    finally:
        adapter.close()


def test_older_versions_of_a_versioned_bucket_are_counted(s3_site: Site) -> None:
    adapter = S3Adapter(s3_site)
    bucket = unique_name("vers")
    adapter.create_container(bucket)
    client = adapter._client  # the adapter's own boto3 client: versioning is set up outside
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for n in range(3):
        client.put_object(Bucket=bucket, Key="k", Body=f"version {n}".encode())
    client.put_object(Bucket=bucket, Key="other", Body=b"x")
    found = adapter.protection(bucket)
    assert found.versioning == "enabled"
    assert found.older_versions == 2 and found.counted_all


def test_a_site_can_take_its_keys_from_an_aws_profile(
    s3_site: Site, seaweed: SeaweedFS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "credentials"
    shared.write_text(
        f"[hds-seaweed]\naws_access_key_id = {seaweed.access_key}\n"
        f"aws_secret_access_key = {seaweed.secret_key}\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(shared))
    # A config file's `s3` settings do not reach the site: accelerate broke every one.
    (tmp_path / "config").write_text(
        "[default]\ns3 =\n  use_accelerate_endpoint = true\n  use_dualstack_endpoint = true\n"
        "[profile hds-seaweed]\ns3 =\n  use_accelerate_endpoint = true\n"
        "  use_dualstack_endpoint = true\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    site = s3_site.model_copy(update={"credentials": CredentialRef(profile="hds-seaweed")})
    adapter = S3Adapter(site)
    settings = adapter._client.meta.config.s3 or {}
    assert not settings.get("use_accelerate_endpoint"), settings
    assert not settings.get("use_dualstack_endpoint"), settings
    bucket = unique_name("profile")
    adapter.create_container(bucket)
    data = b"written with the profile's keys"
    helpers.put(adapter, bucket, "k", data)
    assert adapter.head(bucket, "k").size == len(data)

    missing = s3_site.model_copy(update={"credentials": CredentialRef(profile="not-there")})
    with pytest.raises(ConfigError, match="AWS profile 'not-there' not found"):
        S3Adapter(missing).check(bucket)
    # In a shell whose AWS_PROFILE names a missing profile, a site with its own profile
    # still works, and a site with keys is told which variable is wrong, even as the
    # process's first S3 site.
    monkeypatch.setenv("AWS_PROFILE", "stale")
    monkeypatch.setattr("providers.s3._LOADER", [])
    assert S3Adapter(site).head(bucket, "k").size == len(data)
    monkeypatch.setattr("providers.s3._LOADER", [])
    with pytest.raises(ConfigError, match="AWS_PROFILE names profile 'stale'"):
        S3Adapter(s3_site).check(bucket)
    monkeypatch.delenv("AWS_PROFILE")
    # A credentials file that cannot be parsed: said as the site's configuration (exit 3),
    # not an unexpected error, and its content (a secret) not repeated (a review).
    shared.write_text("[hds-seaweed]\naws_secret_access_key QQnotparsed\n")
    with pytest.raises(ConfigError) as err:
        S3Adapter(site).check(bucket)
    assert "Unable to parse config file" in err.value.one_line()
    assert err.value.exit_code == 3 and "QQ" not in err.value.one_line()


def test_a_profile_that_would_fetch_its_credentials_is_refused_before_any_request(
    s3_site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """botocore's credential chain, for a profile without keys, asks STS, SSO, a container
    endpoint or the instance metadata service: requests outside the routing guard, to hosts
    no plan lists. Such a profile is refused, and nothing is contacted."""
    (tmp_path / "config").write_text(
        "[profile role]\nrole_arn = arn:aws:iam::123456789012:role/r\nsource_profile = keys\n"
        "[profile bare]\nregion = eu-west-3\n"
        "[profile keys]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = s3cr3t-value\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "https://creds.example.org/x")
    contacted: list[object] = []

    def no_connection(address: object, *args: object, **kwargs: object) -> None:
        contacted.append(address)
        raise OSError("no connection in this test")

    monkeypatch.setattr("socket.create_connection", no_connection)
    monkeypatch.setattr("urllib3.util.connection.create_connection", no_connection)
    for profile, why in (("role", r"fetches its credentials \(role_arn\)"), ("bare", "has no")):
        site = s3_site.model_copy(update={"credentials": CredentialRef(profile=profile)})
        with pytest.raises(ConfigError, match=f"AWS profile '{profile}' {why}"):
            S3Adapter(site)
    # botocore's "auto" defaults mode asks the metadata service for the region too.
    monkeypatch.setenv("AWS_DEFAULTS_MODE", "auto")
    S3Adapter(s3_site).close()
    assert contacted == []


@pytest.mark.parametrize("provider", ["outscale", "scaleway"])
def test_a_site_with_an_endpoint_and_auto_addressing_is_addressed_by_path_on_the_lean_path(
    provider: str, s3_site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default `addressing = "auto"` on a site with an endpoint names the bucket in the
    path (as botocore does for an endpoint it is given), never in a host name
    (`bucket.host`) the plan does not list, and its small requests take the lean path."""
    from providers.catalog import builtin_catalog
    from providers.factory import build_adapter
    from providers.s3_lean import LeanS3

    lean_requests: list[str] = []
    request = LeanS3.request

    def counted(self: LeanS3, operation: str, *args: object, **kwargs: object) -> object:
        lean_requests.append(operation)
        return request(self, operation, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(LeanS3, "request", counted)
    region = builtin_catalog().provider(provider).regions[0].code
    port = urlsplit(s3_site.endpoint or "").port
    site = s3_site.model_copy(
        update={
            "provider": provider,
            "software": None,
            "region": region,
            "addressing": "auto",
            "endpoint": f"http://localhost:{port}",
        }
    )
    guard = RoutingGuard([f"localhost:{port}"])
    adapter = build_adapter(site, guard=guard)
    bucket = unique_name("path")
    try:
        adapter.create_container(bucket)
        adapter.put_object(bucket, "a/b.txt", b"hello", 5, WriteAttrs(), {})
        assert [o.key for o in adapter.list_objects(bucket)] == ["a/b.txt"]
        stream = adapter.open_range(bucket, "a/b.txt", 0, 5)
        assert stream.read() == b"hello"
        stream.close()
    finally:
        adapter.close()
    assert {host for host, *_ in guard.drain()} == {f"localhost:{port}"}
    assert {"PutObject", "GetObject"} <= set(lean_requests)


def _scaleway_site_without_endpoint(monkeypatch: pytest.MonkeyPatch, region: str) -> Site:
    monkeypatch.setenv("SCW_TEST_KEY", "AKIAEXAMPLE")
    monkeypatch.setenv("SCW_TEST_SECRET", "secret")
    return Site(
        name=f"scw-{region}",
        provider="scaleway",
        region=region,
        credentials=CredentialRef(access_key_env="SCW_TEST_KEY", secret_key_env="SCW_TEST_SECRET"),
    )


def test_a_site_without_an_endpoint_is_sent_to_its_regions_endpoint_from_the_catalog(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As the README's `scw-par` example: no `endpoint`, the catalog's for the region, the
    one the planner puts on the allowlist; the bucket in the path. Refused here by a guard
    that allows nothing else, before any byte leaves."""
    from providers.factory import build_adapter

    site = _scaleway_site_without_endpoint(monkeypatch, "fr-par")
    adapter = build_adapter(site, guard=RoutingGuard(["127.0.0.1:9"]))
    try:
        with pytest.raises(RouteRefused, match=r"to s3\.fr-par\.scw\.cloud refused"):
            adapter.put_object("hdh-snds", "k", b"x", 1, WriteAttrs(), {})
        with pytest.raises(RouteRefused, match=r"to s3\.fr-par\.scw\.cloud refused"):
            adapter.check("hdh-snds")
    finally:
        adapter.close()


def test_a_region_the_catalog_does_not_know_is_named_with_the_ones_it_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No `endpoint` and a region missing from the catalog: the error says which region,
    and which the catalog knows, not only that there is no endpoint."""
    from providers.factory import build_adapter

    site = _scaleway_site_without_endpoint(monkeypatch, "mars-1")
    with pytest.raises(ConfigError, match=r"region 'mars-1' is not in the catalog.*fr-par"):
        build_adapter(site, guard=RoutingGuard(["127.0.0.1:9"]))


def test_parts_are_listed_on_from_the_last_one_where_the_store_gives_no_marker(
    s3_site: Site,
) -> None:
    """A ListParts page marked truncated without NextPartNumberMarker: the listing goes on
    after its last part, not from the first page again (for ever)."""
    adapter = S3Adapter(s3_site)
    asked: list[int] = []

    def list_parts(**kwargs: Any) -> dict[str, Any]:
        marker = int(kwargs.get("PartNumberMarker", 0))
        asked.append(marker)
        assert len(asked) < 5, f"listed again from {asked}"
        numbers = [1, 2] if marker == 0 else [3]
        return {
            "Parts": [{"PartNumber": n, "ETag": f'"{n:032x}"', "Size": 5} for n in numbers],
            "IsTruncated": marker == 0,
        }

    adapter._client.list_parts = list_parts  # type: ignore[method-assign]
    try:
        assert [p.part_number for p in adapter.list_parts("b", "k", "u")] == [1, 2, 3]
        assert asked == [0, 2]
    finally:
        adapter.close()


def test_credentials_that_may_not_create_buckets_use_one_made_beforehand(
    s3_site: Site, seaweed: SeaweedFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys scoped to objects (the buckets made beforehand, in a console) are refused a
    CreateBucket even of a bucket that is there: that bucket is used. A bucket that is not
    there is named as refused to be created, with what to do (it read as a generic
    'credentials rejected': a newcomer's review)."""
    monkeypatch.setenv("MIGRATE_TEST_RO_KEY", seaweed.readonly_access_key)
    monkeypatch.setenv("MIGRATE_TEST_RO_SECRET", seaweed.readonly_secret_key)
    scoped = S3Adapter(
        s3_site.model_copy(
            update={
                "credentials": CredentialRef(
                    access_key_env="MIGRATE_TEST_RO_KEY", secret_key_env="MIGRATE_TEST_RO_SECRET"
                )
            }
        )
    )
    made = unique_name("made")
    S3Adapter(s3_site).create_container(made)
    scoped.create_container(made)  # there, and readable: no error
    with pytest.raises(CredentialsRejected) as refused:
        scoped.create_container(unique_name("absent"))
    assert "creating it was refused (AccessDenied)" in refused.value.one_line()
    assert "create the plan's buckets beforehand" in refused.value.one_line()


def test_a_gateways_502_or_504_is_no_answer_but_a_stores_503_is_one(s3_site: Site) -> None:
    """A load balancer before a store that is gone answers 502 or 504 (an HTML page, no S3
    error code): no answer of the store's, which the run's stall watchdog counts (a
    review); a 503 SlowDown is the store's own answer."""
    import botocore.exceptions as bce

    from migrate.errors import NoAnswer

    adapter = S3Adapter(s3_site)

    def answer(status: int, code: str) -> MigrateError:
        error = {
            "Error": {"Code": code, "Message": ""},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }
        return adapter._map_error(bce.ClientError(error, "PutObject"), "b", "k")  # type: ignore[arg-type]

    assert isinstance(answer(502, "502"), NoAnswer)
    assert isinstance(answer(504, "GatewayTimeout"), NoAnswer)
    slow = answer(503, "SlowDown")
    assert isinstance(slow, Retryable) and not isinstance(slow, NoAnswer)


def test_a_proxy_port_holding_407_is_not_a_proxy_asking_for_credentials() -> None:
    """A proxy on port 40711 that refused the connection was taken for one answering 407
    (its text held "407"): credentials refused, not unreachable (a flaky conformance test)."""
    from providers.base import tunnel_refused_407

    refused = "HTTPConnection(host='127.0.0.1', port=40711): Failed to establish a new connection"
    assert not tunnel_refused_407(f"Unable to connect to proxy {refused}: [Errno 111]")
    assert tunnel_refused_407("Tunnel connection failed: 407 Proxy Authentication Required")
    assert tunnel_refused_407("OSError('Tunnel connection failed: 407 authenticationrequired')")
