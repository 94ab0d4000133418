"""Small helpers the tests share: seed objects through an adapter, wrap one with faults,
answer like a misbehaving server."""

from __future__ import annotations

import hashlib
import io
import os
import random
import re
import ssl
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from migrate.errors import Permanent, Retryable
from migrate.sites import CredentialRef, Site
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


class FixedAnswer:
    """A tiny HTTP server on loopback answering every request with one status, headers and
    body (a store that misbehaves, a portal, a redirect); counts the requests and the
    connections. With `answer_first`, it answers as soon as it has the headers, as a store
    refusing a request does, keeps the connection open as HTTP allows, and then reads the
    body the headers announced if the client sends it (counted in `body_bytes`). With
    `refuse_expect`, it answers 417 to a request that asks for "100 Continue". With
    `silent_after`, it answers that many requests, then takes the next ones and never
    answers. With `tls`, it speaks HTTPS."""

    def __init__(
        self,
        status: int,
        headers: dict[str, str],
        body: bytes = b"",
        *,
        answer_first: bool = False,
        refuse_expect: bool = False,
        tls: ssl.SSLContext | None = None,
        silent_after: int | None = None,
    ) -> None:
        self.requests: list[tuple[str, str]] = []
        self.body_bytes = 0
        self.connections = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # so that "Expect: 100-continue" is understood

            def setup(self) -> None:
                super().setup()
                fake.connections += 1

            def handle_expect_100(self) -> bool:
                if refuse_expect:  # a server that does not do "Expect: 100-continue"
                    fake.requests.append((self.command, "417"))
                    self.send_response_only(417)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return False
                if answer_first:
                    return True  # a refusing store answers at once, without "100 Continue"
                return super().handle_expect_100()

            def _answer(self) -> None:
                fake.requests.append((self.command, self.path))
                if silent_after is not None and len(fake.requests) > silent_after:
                    # A store that takes the request and never answers.
                    fake.stop.wait(30)
                    self.close_connection = True
                    return
                length = int(self.headers.get("Content-Length") or 0)
                if length and not answer_first:
                    self.rfile.read(length)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                payload = b"" if self.command == "HEAD" else body
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                if answer_first and length:
                    self.wfile.flush()
                    self.connection.settimeout(0.5)
                    got = b""
                    try:  # the announced body, if it comes; what comes next is a request
                        got = self.rfile.read(length)
                    except OSError:
                        self.close_connection = True
                    fake.body_bytes += len(got)
                    if len(got) < length:
                        self.close_connection = True

            # CONNECT too: a proxy refusing to open a tunnel (407, say)
            do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = do_CONNECT = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.stop = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:  # https: the handshake on accept (a refused one drops the client)
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


# A 200 answer to a listing request that is not a listing: a storage portal's page.
NOT_A_LISTING = b"<html><body>Welcome to the storage portal</body></html>"

# A fake store's answers to a read of bytes 50-59 of a 100-byte object, whose body is
# RANGE_BODY: (status, headers, whether that is the range asked).
RANGE_BODY = b"0123456789"
RANGE_ANSWERS = [
    (206, {"Content-Range": "bytes 50-59/100"}, True),
    (206, {"Content-Range": "bytes 0-9/100"}, False),  # another range, the same length
    (200, {}, False),  # the whole object (from byte 0) for a range further in
]


def read_bytes_50_to_59(adapter: StoreAdapter, container: str, right: bool) -> None:
    """The read gives RANGE_BODY when the answer is the range asked, fails otherwise."""
    if right:
        stream = adapter.open_range(container, "k", 50, 60)
        assert stream.read(100) == RANGE_BODY
        stream.close()
        return
    with pytest.raises(Permanent, match="asked for bytes 50-59"):
        adapter.open_range(container, "k", 50, 60)


def two_local_sites(tmp_path: Path, buckets: tuple[str, ...] = ("data",)) -> list[str]:
    """A sites file of two local sites, src (tmp_path/src, holding `buckets`) and dst
    (tmp_path/dst, made empty), with its state in tmp_path/state: the --sites option."""
    (tmp_path / "dst").mkdir(exist_ok=True)
    listed = ", ".join(f'"{b}"' for b in buckets)
    sites = tmp_path / "sites.toml"
    sites.write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        f'[sites.src]\nprovider = "local"\npath = "{tmp_path / "src"}"\nbuckets = [{listed}]\n'
        f'[sites.dst]\nprovider = "local"\npath = "{tmp_path / "dst"}"\n'
    )
    return ["--sites", str(sites)]


def finished_local_copy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], *, run: bool = True
) -> tuple[str, list[str]]:
    """A plan of 30 local files whose bulk-1 phase is copied (the pilot, not run, holds
    the thirtieth): the plan, and --sites. `run=False`: approved, nothing copied."""
    from migrate.cli import main  # not for every test that uses these helpers

    (tmp_path / "src" / "data").mkdir(parents=True)
    for n in range(30):
        (tmp_path / "src" / "data" / f"f{n}.txt").write_text(f"object {n}\n")
    where = two_local_sites(tmp_path)
    plan = str(tmp_path / "plan.yaml")
    for args in (
        ["inventory", "src"],
        ["plan", "--from", "src", "--to", "dst", "--policy", "eu-residency", "-o", plan],
        ["plan", "approve", plan],
        *([["run", plan, "--phase", "bulk-1", "--force", "--reason", "test"]] if run else []),
    ):
        code = main([*args, *where])
        err = capsys.readouterr().err  # and what the step printed is not left for the test
        assert code == 0, err
    return plan, where


def wait_for_rows(
    state_dir: Path,
    ready: Callable[[dict[str, str]], bool],
    query: str = "SELECT key, state FROM transfers",
    timeout: float = 60,
) -> dict[str, str]:
    """Poll the state another process is writing until `ready` holds for what `query` gives
    (two columns, as a mapping; by default key -> transfer state): a test that stops a run
    once it is under way waits for that, not for a fixed time (a slow machine's start-up
    took the whole sleep)."""
    import sqlite3
    import time

    from migrate.locations import STATE_FILE

    deadline = time.monotonic() + timeout
    rows: dict[str, str] = {}
    while True:
        # Read-only: a state not there yet is not made here, empty (nor one being made,
        # its tables not there yet, taken for an answer).
        try:
            db = sqlite3.connect(f"file:{state_dir / STATE_FILE}?mode=ro", uri=True, timeout=10)
            try:
                rows = dict(db.execute(query))
            finally:
                db.close()
        except sqlite3.OperationalError:
            rows = {}
        else:
            if ready(rows):
                return rows
        assert time.monotonic() < deadline, f"never came to pass: {rows}"
        time.sleep(0.05)


def self_signed_tls(folder: Path, name: str) -> tuple[ssl.SSLContext, Path]:
    """A server TLS context whose certificate, self-signed, names `name` (an IP address or
    a host name), and the certificate's file, for a client to trust."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        alt = x509.DNSName(name)
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / f"{name}.pem", folder / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context, cert_file


def fake_s3_site(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Site:
    """An S3 site on a fake store (FixedAnswer), path-style, with static keys: the lean
    path's."""
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


def every_kind_of_call(adapter: StoreAdapter, container: str) -> None:
    """One call of each kind of the adapter contract, on a fresh container: a test counting
    requests (the guard's, a proxy's) sees every code path an adapter sends by."""
    adapter.create_container(container)
    adapter.check(container)
    small = b"s" * 300
    sums = {"md5": hashlib.md5(small).hexdigest()}
    adapter.put_object(container, "small", small, len(small), WriteAttrs(), sums)
    big, cut = random.Random(6).randbytes(6 * 1024 * 1024), 5 * 1024 * 1024
    upload = adapter.create_multipart(container, "big", WriteAttrs())
    parts = [
        adapter.upload_part(container, "big", upload, 1, memoryview(big)[:cut], cut, {}),
        adapter.upload_part(container, "big", upload, 2, memoryview(big)[cut:], len(big) - cut, {}),
    ]
    assert [p.part_number for p in adapter.list_parts(container, "big", upload)] == [1, 2]
    done = adapter.complete_multipart(container, "big", upload, parts, WriteAttrs())
    if adapter.capabilities.lists_uploads:
        other = adapter.create_multipart(container, "dropped", WriteAttrs())
        assert [u.key for u in adapter.list_multipart_uploads(container)] == ["dropped"]
        adapter.abort_multipart(container, "dropped", other)
    assert sorted(o.key for o in adapter.list_objects(container)) == ["big", "small"]
    adapter.head(container, "big")
    stream = adapter.open_range(container, "big", 10, 20)
    assert stream.read() == big[10:20]
    stream.close()
    adapter.replace_metadata(
        container, "big", WriteAttrs(metadata={"k": "v"}), if_match=done.etag or "", size=len(big)
    )
    adapter.delete(container, "small")


PROXY_AUTH = "egress-user:p@ss:w/rd-canary"  # a proxy's user:password, with characters to quote


def through_proxy(site: Site, proxy: str, variable: str = "EGRESS_PROXY_AUTH") -> Site:
    """`site` through the declared `proxy`, which asks for the user:password `variable`
    holds (credentials.proxy_auth_env)."""
    credentials = site.credentials.model_copy(update={"proxy_auth_env": variable})
    return site.model_copy(update={"proxy": proxy, "credentials": credentials})


def round_trip(adapter: StoreAdapter, container: str) -> None:
    """Create a container, write one object, list it and read it back."""
    adapter.create_container(container)
    put(adapter, container, "k", b"round trip")
    assert [o.key for o in adapter.list_objects(container)] == ["k"]
    assert adapter.open_range(container, "k").read() == b"round trip"


def azure_at(site: Site, endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Site:
    """The Azure site reached at `endpoint` (a proxy in front of Azurite, say), its
    connection string's BlobEndpoint naming that host too: a site whose two differ is
    refused."""
    var = site.credentials.connection_string_env
    assert var, site
    conn = os.environ[var]
    monkeypatch.setenv(var, re.sub(r"BlobEndpoint=[^;]*", f"BlobEndpoint={endpoint}", conn))
    return site.model_copy(update={"endpoint": endpoint})
