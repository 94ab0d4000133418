"""Azure adapter specifics: the routing guard on both of its HTTP stacks (libcloud for
container calls, azure-storage-blob for blobs), redirects, SAS credentials, and the URLs
it builds for real Azure accounts (checked with a guard that refuses everything, so no
request leaves the machine)."""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from migrate.errors import (
    ConfigError,
    CredentialsRejected,
    EndpointUnreachable,
    NotFound,
    Permanent,
    RouteRefused,
    Unsupported,
)
from migrate.localservers import AZURITE_ACCOUNT, AZURITE_KEY, Azurite, free_port
from migrate.sites import CredentialRef, Site
from providers.azure import AzureAdapter
from providers.base import WriteAttrs
from tests import helpers
from tests.conftest import unique_name
from tests.faultproxy import Faults, fault_proxy
from tests.helpers import (
    NOT_A_LISTING,
    RANGE_ANSWERS,
    RANGE_BODY,
    FixedAnswer,
    every_kind_of_call,
    read_bytes_50_to_59,
)

pytestmark = pytest.mark.integration


class RecordingGuard:
    """Records every check and answer; refuses the hosts it is given."""

    def __init__(self, refused: tuple[str, ...] = ()) -> None:
        self.refused = refused
        self.checked: list[tuple[str, str]] = []
        self.recorded: list[tuple[str, str, int, int | None]] = []

    def check(self, method: str, url: str) -> None:
        self.checked.append((method, url))
        host = urlsplit(url).hostname or ""
        if host in self.refused:
            raise RouteRefused(f"request to {host} refused: not on the allowlist")

    def record(self, method: str, url: str, sent_bytes: int, status: int | None) -> None:
        self.recorded.append((method, url, sent_bytes, status))


def _put(adapter: AzureAdapter, container: str, key: str, data: bytes) -> None:
    md5 = hashlib.md5(data).hexdigest()
    adapter.put_object(container, key, io.BytesIO(data), len(data), WriteAttrs(), {"md5": md5})


def test_guard_sees_every_request_of_both_stacks(azure_site: Site) -> None:
    guard = RecordingGuard()
    adapter = AzureAdapter(azure_site, guard=guard)
    container = unique_name("guard")
    base = f"{azure_site.endpoint}/{container}"
    try:
        adapter.create_container(container)  # libcloud
        adapter.check(container)  # libcloud
        _put(adapter, container, "a b/c", b"12345")  # SDK
        assert [o.key for o in adapter.list_objects(container)] == ["a b/c"]  # SDK
    finally:
        adapter.close()
    assert guard.recorded == [
        ("PUT", base, 0, 201),
        ("HEAD", base, 0, 200),
        ("PUT", f"{base}/a%20b/c", 5, 201),
        ("GET", base, 0, 200),
    ]
    assert guard.checked == [(m, u) for m, u, _, _ in guard.recorded]


def test_every_request_the_server_receives_was_checked_by_the_guard(
    azure_site: Site, azurite_server: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every kind of call, on each of the three stacks (libcloud, the SDK, the lean path),
    through a proxy that counts what reaches Azurite: as many requests as the guard
    checked, each to the site's endpoint."""
    guard = RecordingGuard()
    with fault_proxy(azurite_server.endpoint) as proxy:
        endpoint = f"{proxy.endpoint}/{azurite_server.account}"
        adapter = AzureAdapter(helpers.azure_at(azure_site, endpoint, monkeypatch), guard=guard)
        try:
            every_kind_of_call(adapter, unique_name("every"))
        finally:
            adapter.close()
    assert len(guard.checked) == proxy.faults.requests > 10
    assert all(url.startswith(endpoint + "/") for _, url in guard.checked)
    assert len(guard.recorded) == len(guard.checked)


def test_a_proxy_refusing_the_tunnel_to_an_https_endpoint_is_credentials_refused(
    azure_site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EGRESS_PROXY_AUTH", "egress-user:wr0ng-canary")
    proxy = helpers.FixedAnswer(407, {"Proxy-Authenticate": 'Basic realm="egress"'})
    site = helpers.azure_at(
        azure_site, f"https://127.0.0.1:{free_port()}/{AZURITE_ACCOUNT}", monkeypatch
    )
    adapter = AzureAdapter(helpers.through_proxy(site, f"http://127.0.0.1:{proxy.port}"))
    try:
        for call in (lambda: adapter.head("cases", "k"), lambda: adapter.check("cases")):
            with pytest.raises(CredentialsRejected) as refused:  # the SDK's, libcloud's
                call()
            line = refused.value.one_line()
            assert "(407)" in line and "proxy_auth_env" in line and "wr0ng" not in line, line
    finally:
        adapter.close()
        proxy.close()
    assert {m for m, _ in proxy.requests} == {"CONNECT"}


def test_a_proxy_refusing_the_endpoints_host_is_said_to_refuse_not_to_be_down(
    azure_site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 403 to the CONNECT: the proxy answered (its rules), it is not down (a review)."""
    monkeypatch.setenv("EGRESS_PROXY_AUTH", "egress-user:secret")
    proxy = helpers.FixedAnswer(403, {})
    site = helpers.azure_at(
        azure_site, f"https://127.0.0.1:{free_port()}/{AZURITE_ACCOUNT}", monkeypatch
    )
    adapter = AzureAdapter(helpers.through_proxy(site, f"http://127.0.0.1:{proxy.port}"))
    try:
        for call in (lambda: adapter.head("cases", "k"), lambda: adapter.check("cases")):
            with pytest.raises(EndpointUnreachable) as refused:
                call()
            line = refused.value.one_line()
            assert "refused the connection to the endpoint (HTTP 403)" in line, line
    finally:
        adapter.close()
        proxy.close()


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_declared_proxy_that_is_not_there_is_named(
    scheme: str, azure_site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As for an S3 site: the proxy named, not "no connection to the endpoint" (a review)."""
    monkeypatch.setenv("EGRESS_PROXY_AUTH", "egress-user:secret")
    site = helpers.azure_at(
        azure_site, f"{scheme}://127.0.0.1:{free_port()}/{AZURITE_ACCOUNT}", monkeypatch
    )
    gone = f"http://127.0.0.1:{free_port()}"
    adapter = AzureAdapter(helpers.through_proxy(site, gone))
    try:
        for call in (lambda: adapter.head("cases", "k"), lambda: adapter.check("cases")):
            with pytest.raises(EndpointUnreachable) as unreachable:
                call()
            line = unreachable.value.one_line()
            assert f"the declared proxy {gone} does not answer" in line, line
    finally:
        adapter.close()


@pytest.mark.parametrize("name", ["Snds_Bad", "ab", "snds--x", "-snds"])
def test_a_container_name_azure_cannot_have_is_a_configuration_error_before_any_request(
    azure_site: Site, name: str
) -> None:
    guard = RecordingGuard()
    with pytest.raises(ConfigError) as err:
        AzureAdapter(azure_site.model_copy(update={"buckets": ("snds", name)}), guard=guard)
    line = err.value.one_line()
    assert err.value.exit_code == 3 and f"{name!r} cannot be an Azure container's name" in line
    assert guard.checked == []


def test_refused_host_raises_route_refused_and_sends_nothing(azure_site: Site) -> None:
    plain = AzureAdapter(azure_site)
    container = unique_name("refused")
    plain.create_container(container)
    guard = RecordingGuard(refused=("127.0.0.1",))
    guarded = AzureAdapter(azure_site, guard=guard)
    try:
        with pytest.raises(RouteRefused):
            guarded.check(container)  # libcloud
        with pytest.raises(RouteRefused):
            guarded.create_container(unique_name("never"))  # libcloud
        with pytest.raises(RouteRefused):
            _put(guarded, container, "k", b"data")  # SDK
        with pytest.raises(RouteRefused):
            list(guarded.list_objects(container))  # SDK
        with pytest.raises(RouteRefused):
            guarded.open_range(container, "k")  # SDK
        # Refused once, never retried, and nothing reached the server.
        assert len(guard.checked) == 5
        assert guard.recorded == []
        with pytest.raises(NotFound):
            plain.head(container, "k")
    finally:
        guarded.close()
        plain.close()


class _Redirector(BaseHTTPRequestHandler):
    """Answers every request with a redirect to another host."""

    def _redirect(self) -> None:
        self.send_response(307)
        self.send_header("Location", f"http://127.0.0.2:{self.server.server_port}{self.path}")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = do_PUT = do_DELETE = _redirect

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def redirecting_site(monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Redirector)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield _site_at(server.server_port, monkeypatch)
    server.shutdown()
    server.server_close()
    thread.join()


def test_redirects_are_not_followed(redirecting_site: Site) -> None:
    guard = RecordingGuard()
    adapter = AzureAdapter(redirecting_site, guard=guard)
    try:
        with pytest.raises(Permanent):
            adapter.check("c")  # libcloud
        with pytest.raises(Permanent):
            list(adapter.list_objects("c"))  # lean List Blobs
        with pytest.raises(Permanent):
            adapter.open_range("c", "k", 0, 5)  # lean Get Blob
        with pytest.raises(Permanent):
            _put(adapter, "c", "k", b"x")  # SDK
    finally:
        adapter.close()
    hosts = {urlsplit(url).hostname for _, url in guard.checked}
    assert hosts == {"127.0.0.1"}
    assert len(guard.checked) == 4


def _site_at(port: int, monkeypatch: pytest.MonkeyPatch, *, through_proxy: bool = False) -> Site:
    """An Azure site (account key) whose endpoint, and proxy if asked, is a fake store."""
    monkeypatch.setenv("MIGRATE_TEST_AZURE_KEY", AZURITE_KEY)
    fake = f"http://127.0.0.1:{port}"
    return Site(
        name="fake",
        provider="azure",
        account=AZURITE_ACCOUNT,
        endpoint=f"{fake}/{AZURITE_ACCOUNT}",
        credentials=CredentialRef(account_key_env="MIGRATE_TEST_AZURE_KEY"),
        proxy=fake if through_proxy else None,
    )


_SAME_MARKER = (
    b'<?xml version="1.0" encoding="utf-8"?><EnumerationResults ContainerName="c"><Blobs>'
    b"<Blob><Name>a</Name><Properties><Content-Length>1</Content-Length></Properties></Blob>"
    b"</Blobs><NextMarker>m</NextMarker></EnumerationResults>"
)


@pytest.mark.parametrize("body", [NOT_A_LISTING, _SAME_MARKER])
def test_a_listing_that_cannot_be_followed_fails_instead_of_ending_short(
    body: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 200 page that is not a listing (a portal's HTML), or one that points to itself as
    the next page, would leave blobs out of the inventory or never end."""
    server = FixedAnswer(200, {"Content-Type": "application/xml"}, body)
    adapter = AzureAdapter(_site_at(server.port, monkeypatch))
    try:
        with pytest.raises(Permanent, match="listing"):
            list(adapter.list_objects("c"))
    finally:
        adapter.close()
        server.close()


def test_a_listing_page_answered_503_is_asked_again(
    azure_site: Site, azurite_server: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The inventory has no retry layer of its own: a throttled page is asked again."""
    direct = AzureAdapter(azure_site)
    container = unique_name("throttled")
    direct.create_container(container)
    for key in ("a", "b/c", "d"):
        direct.put_object(container, key, b"x", 1, WriteAttrs(), {})
    direct.close()
    with fault_proxy(azurite_server.endpoint, Faults(slowdown_first=1)) as proxy:
        endpoint = f"{proxy.endpoint}/{azurite_server.account}"
        adapter = AzureAdapter(helpers.azure_at(azure_site, endpoint, monkeypatch))
        try:
            assert sorted(o.key for o in adapter.list_objects(container)) == ["a", "b/c", "d"]
        finally:
            adapter.close()
    assert proxy.faults.throttled == 1


@pytest.mark.parametrize("path", ["lean", "sdk"])
@pytest.mark.parametrize(("status", "headers", "right"), RANGE_ANSWERS)
def test_a_read_answered_with_other_bytes_than_the_range_asked_fails(
    path: str,
    status: int,
    headers: dict[str, str],
    right: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A part's bytes are the part's, whatever a broken store answers at the right length,
    on the lean read and on the SDK's (taken by a site with a proxy: here the fake store
    is the proxy too)."""
    server = FixedAnswer(status, {"ETag": '"e"', **headers}, RANGE_BODY)
    adapter = AzureAdapter(_site_at(server.port, monkeypatch, through_proxy=path == "sdk"))
    try:
        read_bytes_50_to_59(adapter, "c", right)
    finally:
        adapter.close()
        server.close()


def _sas_site(
    azurite: Azurite, monkeypatch: pytest.MonkeyPatch, name: str, types: Any, permission: Any
) -> tuple[Site, str]:
    """A site on Azurite whose credentials are an account SAS of these resource types and
    permissions (the token in MIGRATE_TEST_AZURE_SAS); and the token."""
    from azure.storage.blob import generate_account_sas

    sas = generate_account_sas(
        AZURITE_ACCOUNT,
        AZURITE_KEY,
        resource_types=types,
        permission=permission,
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    monkeypatch.setenv("MIGRATE_TEST_AZURE_SAS", sas)
    site = Site(
        name=name,
        provider="azure",
        account=AZURITE_ACCOUNT,
        endpoint=azurite.endpoint,
        credentials=CredentialRef(sas_token_env="MIGRATE_TEST_AZURE_SAS"),
    )
    return site, sas


def test_sas_token_works_on_both_stacks(
    azurite_server: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.storage.blob import AccountSasPermissions, ResourceTypes

    site, _ = _sas_site(
        azurite_server,
        monkeypatch,
        "sas",
        ResourceTypes(service=True, container=True, object=True),
        AccountSasPermissions(read=True, write=True, delete=True, list=True, add=True, create=True),
    )
    guard = RecordingGuard()
    adapter = AzureAdapter(site, guard=guard)
    container = unique_name("sas")
    try:
        assert adapter.check_account() == "credentials accepted (its containers listed)"
        adapter.create_container(container)
        adapter.check(container)
        _put(adapter, container, "k", b"via sas")
        head = adapter.head(container, "k")
        assert head.size == 7
        assert [o.key for o in adapter.list_objects(container)] == ["k"]
        stream = adapter.open_range(container, "k", 4, 7, if_match=head.etag)
        try:
            assert stream.read(100) == b"sas"
            assert stream.info is not None and stream.info.size == 7
        finally:
            stream.close()
    finally:
        adapter.close()
    assert all(status in (200, 201, 206) for *_, status in guard.recorded)
    # The guard sees no query string: the SAS signature travels there.
    assert all("?" not in url and "sig" not in url for _, url in guard.checked)


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        (None, "https://acct.blob.core.windows.net/c"),
        ("https://acct.blob.core.windows.net", "https://acct.blob.core.windows.net/c"),
        ("https://acct.blob.core.chinacloudapi.cn/", "https://acct.blob.core.chinacloudapi.cn/c"),
    ],
)
def test_real_azure_urls(
    endpoint: str | None, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIGRATE_TEST_AZURE_KEY", AZURITE_KEY)
    site = Site(
        name="real",
        provider="azure",
        account="acct",
        endpoint=endpoint,
        credentials=CredentialRef(account_key_env="MIGRATE_TEST_AZURE_KEY"),
    )
    guard = RecordingGuard(refused=(urlsplit(expected).hostname or "",))
    adapter = AzureAdapter(site, guard=guard)
    try:
        with pytest.raises(RouteRefused):
            adapter.check("c")  # libcloud
        with pytest.raises(RouteRefused):
            list(adapter.list_objects("c"))  # SDK
    finally:
        adapter.close()
    assert guard.checked == [("HEAD", expected), ("GET", expected)]


def test_credentials_that_may_not_create_containers_use_one_made_beforehand(
    azurite_server: Azurite, azure_site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SAS (or a data role) that may not create containers, the containers made
    beforehand as many teams do: a run's creation of one that exists uses it, as on S3; one
    that does not exist is said refused, with what to do; a wrong key is said as it is."""
    from azure.storage.blob import AccountSasPermissions, ResourceTypes

    made = unique_name("made")
    owner = AzureAdapter(azure_site)
    owner.create_container(made)
    owner.close()
    site, sas = _sas_site(
        azurite_server,
        monkeypatch,
        "readonly",
        ResourceTypes(container=True, object=True),
        AccountSasPermissions(read=True, list=True),  # no write: no creation
    )
    adapter = AzureAdapter(site)
    try:
        adapter.create_container(made)  # there already, and readable: used
        # sites check's proof of a site without containers: accepted, though it may not
        # list the account's containers (no service resource type in this SAS).
        assert "may not list containers" in adapter.check_account()
        with pytest.raises(CredentialsRejected) as refused:
            adapter.create_container(unique_name("absent"))
        assert "creating it was refused" in str(refused.value), refused.value
        assert "beforehand" in (refused.value.hint or "")
    finally:
        adapter.close()
    # A key refused outright is not said to be a refused creation.
    monkeypatch.setenv("MIGRATE_TEST_AZURE_SAS", sas.replace("sig=", "sig=AAAA", 1))
    wrong = AzureAdapter(site)
    try:
        with pytest.raises(CredentialsRejected) as rejected:
            wrong.create_container(made)
        assert "creating it was refused" not in str(rejected.value), rejected.value
        with pytest.raises(CredentialsRejected):
            wrong.check_account()
    finally:
        wrong.close()


# -- Azure specifics the conformance suite does not reach --------------------------------


def test_archive_tier_is_listed_and_refused_on_read(azure_site: Site) -> None:
    adapter = AzureAdapter(azure_site)
    container = unique_name("tier")
    try:
        adapter.create_container(container)
        data = b"cold bytes"
        md5 = {"md5": hashlib.md5(data).hexdigest()}
        archive = WriteAttrs(storage_class="Archive")
        adapter.put_object(container, "cold", io.BytesIO(data), len(data), archive, md5)
        _put(adapter, container, "hot", data)
        listed = {o.key: o for o in adapter.list_objects(container)}
        assert (listed["cold"].storage_class, listed["cold"].archived) == ("Archive", True)
        assert (listed["hot"].storage_class, listed["hot"].archived) == ("Hot", False)
        assert listed["hot"].checksums == md5
        with pytest.raises(Permanent, match="Archive"):
            adapter.open_range(container, "cold").read()
    finally:
        adapter.close()


def test_multipart_resumed_by_another_process(azure_site: Site) -> None:
    """Parts staged by one adapter are listed and committed by a new one, given the attrs."""
    container = unique_name("resume")
    first = AzureAdapter(azure_site)
    attrs = WriteAttrs(content_type="application/x-resumed", metadata={"step": "two"})
    chunks = [b"a" * 1000, b"b" * 10]
    try:
        first.create_container(container)
        upload = first.create_multipart(container, "obj", attrs)
        part = first.upload_part(
            container, "obj", upload, 1, io.BytesIO(chunks[0]), 1000,
            {"md5": hashlib.md5(chunks[0]).hexdigest()},
        )  # fmt: skip
    finally:
        first.close()
    second = AzureAdapter(azure_site)
    try:
        assert [(p.part_number, p.size) for p in second.list_parts(container, "obj", upload)] == [
            (1, 1000)
        ]
        other = second.create_multipart(container, "obj", WriteAttrs())
        assert list(second.list_parts(container, "obj", other)) == []
        last = second.upload_part(container, "obj", upload, 2, io.BytesIO(chunks[1]), 10, {})
        second.complete_multipart(container, "obj", upload, [last, part], attrs=attrs)
        info = second.head(container, "obj")
        assert (info.size, info.content_type, info.metadata) == (
            1010,
            attrs.content_type,
            {"step": "two"},
        )
        with pytest.raises(Unsupported):
            list(second.list_multipart_uploads(container))
    finally:
        second.close()


def test_keys_azure_would_rewrite_are_refused(azure_site: Site) -> None:
    adapter = AzureAdapter(azure_site)
    container = unique_name("keys")
    try:
        adapter.create_container(container)
        for key in ("a/./b", "a/../b", "back\\slash"):
            with pytest.raises(Unsupported):
                _put(adapter, container, key, b"x")
            with pytest.raises(NotFound):
                adapter.head(container, key)
            adapter.delete(container, key)
        assert list(adapter.list_objects(container)) == []
    finally:
        adapter.close()


def test_snapshots_are_counted_and_never_listed_as_objects(azure_site: Site) -> None:
    adapter = AzureAdapter(azure_site)
    container = unique_name("snap")
    adapter.create_container(container)
    data = b"current bytes"
    adapter.put_object(
        container, "k", data, len(data), WriteAttrs(), {"md5": hashlib.md5(data).hexdigest()}
    )
    for _ in range(2):
        adapter._blob(container, "k").create_snapshot()  # made outside migrate, as a user would
    found = adapter.protection(container)
    assert found.older_versions == 2 and found.counted_all
    assert found.object_lock is False and found.legal_hold is False
    assert [o.key for o in adapter.list_objects(container)] == ["k"]


def test_a_proxy_that_asks_for_credentials_gets_them_on_the_azure_paths(
    azure_site: Site, azurite_server: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SDK's requests and libcloud's (container calls) go through the declared proxy
    with the `user:password` of `proxy_auth_env`."""
    monkeypatch.setenv("EGRESS_PROXY_AUTH", helpers.PROXY_AUTH)
    with fault_proxy(azurite_server.endpoint, Faults(proxy_auth=helpers.PROXY_AUTH)) as proxy:
        adapter = AzureAdapter(helpers.through_proxy(azure_site, proxy.endpoint))
        container = unique_name("proxied")
        try:
            helpers.round_trip(adapter, container)
        finally:
            adapter.close()
        assert proxy.faults.forwarded >= 4 and proxy.faults.refused_auth == 0
        # Wrong ones: refused as credentials (exit 5), naming which to set, not repeated.
        monkeypatch.setenv("EGRESS_PROXY_AUTH", "egress-user:wr0ng-canary")
        wrong = AzureAdapter(helpers.through_proxy(azure_site, proxy.endpoint))
        try:
            with pytest.raises(CredentialsRejected) as refused:
                wrong.head(container, "k")
        finally:
            wrong.close()
    line = refused.value.one_line()
    assert "407" in line and "proxy_auth_env" in line and "wr0ng" not in line, line


def test_a_blob_deleted_while_its_later_chunks_are_read_is_not_found(
    azure_sdk_site: Site,
) -> None:
    """On the SDK's path (a proxied site), a read past its first chunk asks for each next
    one under the same condition: a blob deleted meanwhile is gone (NotFound), as on the
    lean path and every store, not "changed since it was listed" (a review)."""
    adapter = AzureAdapter(azure_sdk_site)
    container = unique_name("chunks")
    try:
        adapter.create_container(container)
        data = hashlib.sha256(b"seed").digest() * (9 * 1024 * 1024 // 32)  # 9 MiB: 3 chunks
        _put(adapter, container, "big.bin", data)
        etag = adapter.head(container, "big.bin").etag
        stream = adapter.open_range(container, "big.bin", if_match=etag)
        try:
            assert stream.read(1) == data[:1]
            adapter.delete(container, "big.bin")
            with pytest.raises(NotFound):
                while stream.read(1024 * 1024):
                    pass
        finally:
            stream.close()
    finally:
        adapter.close()
