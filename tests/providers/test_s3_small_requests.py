"""Small requests on the lean S3 path go through libcurl (providers/curl_http.py): what
urllib3 guaranteed there must still hold. TLS is verified against the CA bundle botocore
uses, the environment's proxies are not used, a store that never answers times out, and
a failure is botocore's exception for the adapter's one error mapping."""

from __future__ import annotations

import gc
import hashlib
import threading
import time
import weakref
from pathlib import Path

import botocore.exceptions as bce
import pytest
from botocore.credentials import Credentials

from migrate.errors import EndpointUnreachable, Permanent
from migrate.localservers import free_port
from migrate.sites import Site
from providers.base import WriteAttrs
from providers.curl_http import CurlSender
from providers.s3 import S3Adapter
from providers.s3_lean import LeanS3
from tests.conftest import unique_name
from tests.helpers import FixedAnswer, fake_s3_site, self_signed_tls

DATA = b"a small object" * 100
SUMS = {"md5": hashlib.md5(DATA).hexdigest(), "sha256": hashlib.sha256(DATA).hexdigest()}
STORED = {"ETag": f'"{SUMS["md5"]}"'}


def _put(adapter: S3Adapter) -> None:
    adapter.put_object("b", "k", memoryview(DATA), len(DATA), WriteAttrs(), SUMS)


@pytest.mark.parametrize("certificate", ["trusted", "not trusted", "for another name"])
def test_a_small_put_over_https_reaches_only_a_store_whose_certificate_is_trusted(
    certificate: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    named = "127.0.0.1" if certificate != "for another name" else "elsewhere.example"
    tls, cert_file = self_signed_tls(tmp_path, named)
    if certificate != "not trusted":
        monkeypatch.setenv("AWS_CA_BUNDLE", str(cert_file))  # botocore's own setting
    server = FixedAnswer(200, STORED, tls=tls)
    adapter = S3Adapter(fake_s3_site(f"https://127.0.0.1:{server.port}", monkeypatch))
    try:
        if certificate == "trusted":
            _put(adapter)
        else:
            with pytest.raises(EndpointUnreachable, match="TLS failed"):
                _put(adapter)
    finally:
        adapter.close()
        server.close()
    sent = [("PUT", "/b/k")] if certificate == "trusted" else []
    assert server.requests == sent


def test_a_small_put_ignores_the_environments_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """libcurl reads proxies from the environment unless told not to; a proxy nobody
    declared must not carry a request (nothing listens on this one: it would fail)."""
    nowhere = f"http://127.0.0.1:{free_port()}"
    for name in ("http_proxy", "https_proxy", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, nowhere)
    server = FixedAnswer(200, STORED)
    adapter = S3Adapter(fake_s3_site(f"http://127.0.0.1:{server.port}", monkeypatch))
    try:
        _put(adapter)
    finally:
        adapter.close()
        server.close()
    assert server.requests == [("PUT", "/b/k")]


def _lean(port: int, read_timeout: float = 60) -> LeanS3:
    return LeanS3(
        f"http://127.0.0.1:{port}",
        "eu-west-1",
        Credentials("fake-access-key", "fake-secret-key-value"),
        None,
        read_timeout=read_timeout,
    )


def _small(lean: LeanS3, method: str, key: str = "k") -> None:
    url = lean.url("b", key)
    if method == "GET":
        lean.request("GetObject", "GET", url, {"Range": "bytes=0-99"}, small_answer=100)
    else:
        lean.request("PutObject", "PUT", url, {"Content-Length": "3"}, b"abc")


@pytest.mark.parametrize("connection", ["new", "kept alive"])
@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_a_small_request_the_store_never_answers_times_out_as_a_read(
    method: str, connection: str
) -> None:
    """A read timeout, whether the connection was just made or kept from the request
    before: the request went out (a retry is the executor's, and the route record counts
    it), which a connect timeout would deny."""
    answered = 0 if connection == "new" else 1
    server = FixedAnswer(200, STORED, silent_after=answered)
    lean = _lean(server.port, read_timeout=1)
    try:
        if answered:
            _small(lean, method)
        started = time.monotonic()
        with pytest.raises(bce.ReadTimeoutError):
            _small(lean, method)
        assert time.monotonic() - started < 10
    finally:
        lean.close()
        server.close()
    assert server.requests == [(method, "/b/k")] * (answered + 1)
    assert server.connections == 1


@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_a_key_with_dot_segments_is_sent_as_signed(method: str) -> None:
    """S3 keys may hold "." and ".." segments; the path must reach the store as it was
    signed, or another key would be written or read (or the signature refused)."""
    server = FixedAnswer(200, STORED)
    lean = _lean(server.port)
    try:
        _small(lean, method, key="x/./y/../z")
    finally:
        lean.close()
        server.close()
    assert server.requests == [(method, "/b/x/./y/../z")]


def test_a_range_answered_with_the_whole_large_object_fails_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A store that ignores Range answers 200 with the whole object: held up to a bound,
    and refused by the range check at once (Permanent), not retried as a broken read."""
    server = FixedAnswer(200, {}, bytes(300_000))
    adapter = S3Adapter(fake_s3_site(f"http://127.0.0.1:{server.port}", monkeypatch))
    try:
        with pytest.raises(Permanent, match="asked for bytes 50-59"):
            adapter.open_range("b", "k", 50, 60)
    finally:
        adapter.close()
        server.close()
    assert len(server.requests) == 1


def test_a_small_put_with_an_empty_metadata_value_is_stored(s3_site: Site) -> None:
    """An empty header value is sent as one (libcurl drops "Name: " lines), so the signed
    headers are the ones sent."""
    adapter = S3Adapter(s3_site)
    bucket = unique_name("empty-meta")
    try:
        adapter.create_container(bucket)
        attrs = WriteAttrs(metadata={"empty": "", "full": "yes"})
        adapter.put_object(bucket, "k", memoryview(DATA), len(DATA), attrs, SUMS)
        stream = adapter.open_range(bucket, "k", 0, len(DATA))
        assert stream.read(len(DATA) + 1) == DATA
        stream.close()
        assert (adapter.head(bucket, "k").metadata or {}).get("full") == "yes"
    finally:
        adapter.close()


def _connections_to(port: int) -> int:
    import psutil

    mine = psutil.Process().net_connections(kind="tcp")
    return sum(1 for c in mine if c.raddr and c.raddr.port == port and c.status == "ESTABLISHED")


def test_a_thread_that_ends_leaves_no_connection_open_and_a_closed_sender_is_freed() -> None:
    """Each thread keeps its own connection; a copy pool's threads end with their phase,
    and their connections must not pile up until the process ends. A sender closed and
    dropped is freed (its threads' finalizers do not keep it)."""
    server = FixedAnswer(200, STORED)
    sender = CurlSender(None, 5, 5)
    url = f"http://127.0.0.1:{server.port}/b/k"
    try:
        worker = threading.Thread(target=sender.send, args=("GET", url, {}, b"", 100))
        worker.start()
        worker.join()
        sender.send("GET", url, {}, b"", 100)  # this thread's own, kept alive
        assert _connections_to(server.port) == 2
        del worker
        gc.collect()
        assert _connections_to(server.port) == 1
        sender.close()
        assert _connections_to(server.port) == 0
    finally:
        server.close()
    freed = weakref.ref(sender)
    del sender
    gc.collect()
    assert freed() is None
