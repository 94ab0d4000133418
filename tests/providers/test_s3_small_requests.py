"""Small requests on the lean S3 path go through libcurl (providers/curl_http.py): what
urllib3 guaranteed there must still hold. TLS is verified against the CA bundle botocore
uses, the environment's proxies are not used, a store that never answers times out, and
a failure is botocore's exception for the adapter's one error mapping."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import botocore.exceptions as bce
import pytest
from botocore.credentials import Credentials

from migrate.errors import EndpointUnreachable
from migrate.localservers import free_port
from migrate.sites import CredentialRef, Site
from providers.base import WriteAttrs
from providers.s3 import S3Adapter
from providers.s3_lean import LeanS3
from tests.helpers import FixedAnswer, self_signed_tls

DATA = b"a small object" * 100
SUMS = {"md5": hashlib.md5(DATA).hexdigest(), "sha256": hashlib.sha256(DATA).hexdigest()}
STORED = {"ETag": f'"{SUMS["md5"]}"'}


def _site(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Site:
    monkeypatch.setenv("MIGRATE_TEST_FAKE_KEY", "fake-access-key")
    monkeypatch.setenv("MIGRATE_TEST_FAKE_SECRET", "fake-secret-key-value")
    return Site(
        name="fake",
        provider="self-hosted",
        region="eu-west-1",
        endpoint=endpoint,
        addressing="path",
        credentials=CredentialRef(
            access_key_env="MIGRATE_TEST_FAKE_KEY", secret_key_env="MIGRATE_TEST_FAKE_SECRET"
        ),
    )


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
    adapter = S3Adapter(_site(f"https://127.0.0.1:{server.port}", monkeypatch))
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
    adapter = S3Adapter(_site(f"http://127.0.0.1:{server.port}", monkeypatch))
    try:
        _put(adapter)
    finally:
        adapter.close()
        server.close()
    assert server.requests == [("PUT", "/b/k")]


@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_a_small_request_the_store_never_answers_times_out(method: str) -> None:
    server = FixedAnswer(200, STORED, silent=True)
    lean = LeanS3(
        f"http://127.0.0.1:{server.port}",
        "eu-west-1",
        Credentials("fake-access-key", "fake-secret-key-value"),
        None,
        read_timeout=1,
    )
    url = lean.url("b", "k")
    started = time.monotonic()
    try:
        with pytest.raises(bce.ReadTimeoutError):
            if method == "GET":
                lean.request("GetObject", "GET", url, {"Range": "bytes=0-99"}, small_answer=100)
            else:
                lean.request("PutObject", "PUT", url, {"Content-Length": "3"}, b"abc")
    finally:
        lean.close()
        server.close()
    assert time.monotonic() - started < 10
    assert server.requests == [(method, "/b/k")]
