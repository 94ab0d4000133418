"""What only Google Cloud Storage answers, read by the GCS adapter (providers/gcs.py).

No local server speaks GCS's XML API, so these tests run against a small one written here
that answers as Google documents it: hashes in `x-goog-hash`, an opaque ETag for a composed
object, `x-goog-meta-*`, and a gzip-stored object served decompressed (Range ignored) to a
client that does not accept gzip. The rest of the adapter (S3 as GCS speaks it) passes the
conformance suite on SeaweedFS."""

from __future__ import annotations

import base64
import gzip
import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

import anycrc
import pytest

from migrate.errors import ConfigError, NotFound, Permanent, SourceChanged
from migrate.executor import run_phase
from migrate.inventory import run_inventory
from migrate.ledger import Ledger
from migrate.plan import Plan, load_plan
from migrate.sites import CredentialRef, Site, SitesConfig
from migrate.summary import PhaseSummary
from migrate.verify import verify
from providers.base import StoreAdapter
from providers.factory import build_adapter
from providers.gcs import goog_hashes
from tests.conftest import S3_KEY_ENV, S3_SECRET_ENV, unique_name
from tests.helpers import body, put
from tests.test_executor import SMALL_PARTS, simple_plan

BUCKET = "hdh-gcs"
CRC32C_OF_ANY = "n8HMLg=="


@dataclass
class Stored:
    data: bytes
    content_type: str = "application/octet-stream"
    encoding: str | None = None
    composed: bool = False  # composed or multipart-uploaded: no MD5, an opaque ETag
    meta: dict[str, str] = field(default_factory=dict)
    storage_class: str = "STANDARD"
    # GCS: the ETag is the MD5 "only if several conditions hold"; x-goog-hash still has it.
    etag_is_md5: bool = True

    @property
    def etag(self) -> str:
        # Where the ETag is no MD5 it looks like one all the same: the trap to avoid.
        plain = self.etag_is_md5 and not self.composed
        return hashlib.md5(self.data if plain else b"opaque:" + self.data).hexdigest()

    @property
    def x_goog_hash(self) -> str:
        md5 = base64.b64encode(hashlib.md5(self.data).digest()).decode()
        crc = int(anycrc.Model("CRC32-ISCSI").calc(self.data)).to_bytes(4, "big")
        crc32c = base64.b64encode(crc).decode()
        return f"crc32c={crc32c}" + ("" if self.composed else f",md5={md5}")


class FakeGcs:
    """GCS's XML API as far as a source adapter uses it: list (V2, one page), HEAD, GET
    (Range, If-Match). Every request's headers are kept."""

    def __init__(self) -> None:
        self.objects: dict[str, Stored] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        # What Google does not document for the XML API, either way: If-Match on a GET,
        # and x-goog-hash on a ranged answer.
        self.honours_if_match = True
        self.hash_on_ranges = True
        self.etag_form = '"{}"'  # how a GET or HEAD gives the ETag; "" gives none
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _key(self) -> tuple[str, str]:
                path = urlsplit(self.path).path
                _, bucket, key = [*path.split("/", 2), "", ""][:3]
                return bucket, unquote(key)

            def _record(self) -> None:
                fake.requests.append((self.command, self.path, dict(self.headers.items())))

            def do_GET(self) -> None:
                self._record()
                if not self._key()[0]:  # the project's buckets: no project named
                    body = (
                        b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>InvalidArgument"
                        b"</Code><Message>Invalid argument.</Message></Error>"
                    )
                    self.send_response(400)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return None
                if not self._key()[1]:
                    return self._list(parse_qs(urlsplit(self.path).query))
                self._object(self._key()[1], body=True)

            def do_HEAD(self) -> None:
                self._record()
                bucket, key = self._key()
                if not key:  # the bucket is there
                    self.send_response(200 if bucket == BUCKET else 404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self._object(key, body=False)

            def _list(self, query: dict[str, list[str]]) -> None:
                prefix = query.get("prefix", [""])[0]
                rows = "".join(
                    f"<Contents><Key>{escape(k)}</Key><Size>{len(o.data)}</Size>"
                    f'<ETag>"{o.etag}"</ETag>'
                    "<LastModified>2026-11-02T10:00:00.000Z</LastModified></Contents>"
                    for k, o in sorted(fake.objects.items())
                    if k.startswith(prefix)
                )
                xml = (
                    '<?xml version="1.0" encoding="UTF-8"?><ListBucketResult>'
                    f"<Name>{BUCKET}</Name><Prefix>{escape(prefix)}</Prefix>"
                    f"<KeyCount>{len(fake.objects)}</KeyCount><MaxKeys>1000</MaxKeys>"
                    f"<IsTruncated>false</IsTruncated>{rows}</ListBucketResult>"
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(xml)))
                self.end_headers()
                self.wfile.write(xml)

            def _object(self, key: str, body: bool) -> None:
                o = fake.objects.get(key)
                if o is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                match = self.headers.get("If-Match")
                if fake.honours_if_match and match and match.strip('"') != o.etag:
                    self.send_response(412)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data, status, ranged = o.data, 200, None
                accepts_gzip = "gzip" in (self.headers.get("Accept-Encoding") or "")
                transcoded = o.encoding == "gzip" and not accepts_gzip
                if transcoded:  # decompressed, Range ignored, no length
                    data = gzip.decompress(o.data)
                elif rng := self.headers.get("Range"):
                    first, _, last = rng.removeprefix("bytes=").partition("-")
                    start, end = int(first), min(int(last or len(data) - 1), len(data) - 1)
                    data, status, ranged = o.data[start : end + 1], 206, (start, end)
                self.send_response(status)
                if fake.etag_form:
                    self.send_header("ETag", fake.etag_form.format(o.etag))
                self.send_header("Last-Modified", "Mon, 02 Nov 2026 10:00:00 GMT")
                self.send_header("Content-Type", o.content_type)
                if fake.hash_on_ranges or not ranged:
                    self.send_header("x-goog-hash", o.x_goog_hash)
                self.send_header("x-goog-storage-class", o.storage_class)
                self.send_header("x-goog-generation", "1762077600000000")
                self.send_header("x-goog-stored-content-length", str(len(o.data)))
                for name, value in o.meta.items():
                    self.send_header(f"X-Goog-Meta-{name.title()}", value)
                if o.encoding and not transcoded:
                    self.send_header("Content-Encoding", o.encoding)
                if ranged:
                    self.send_header(
                        "Content-Range", f"bytes {ranged[0]}-{ranged[1]}/{len(o.data)}"
                    )
                if transcoded:
                    self.send_header("Connection", "close")
                else:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)
                if transcoded:
                    self.close_connection = True

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def fake_gcs(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeGcs, Site]]:
    monkeypatch.setenv(S3_KEY_ENV, "GOOG1EXAMPLEHMACACCESSID")
    monkeypatch.setenv(S3_SECRET_ENV, "hmac-secret-for-tests")
    fake = FakeGcs()
    site = Site(
        name="gcs-src",
        provider="gcs",
        endpoint=fake.endpoint,
        buckets=(BUCKET,),
        credentials=CredentialRef(access_key_env=S3_KEY_ENV, secret_key_env=S3_SECRET_ENV),
    )
    try:
        yield fake, site
    finally:
        fake.close()


def _read(
    adapter: StoreAdapter, key: str, start: int = 0, end: int | None = None, container: str = BUCKET
) -> bytes:
    stream = adapter.open_range(container, key, start, end)
    try:
        return stream.read()
    finally:
        stream.close()


PLAIN = b"patient-0001;2025-03-01;I10\n" * 40
REPORT = b"cohort report, compressed at upload\n" * 500


def _estate(fake: FakeGcs) -> None:
    fake.objects["plain/a.csv"] = Stored(PLAIN, "text/csv", meta={"owner": "dpo"})
    fake.objects["composed/b.bin"] = Stored(b"composed from parts " * 300, composed=True)
    fake.objects["gz/report.txt"] = Stored(gzip.compress(REPORT), "text/plain", "gzip")
    fake.objects["cold/c.bin"] = Stored(b"archived yet readable", storage_class="ARCHIVE")
    fake.objects["kms/d.bin"] = Stored(b"encrypted with a managed key " * 50, etag_is_md5=False)
    fake.objects["empty/e.txt"] = Stored(b"", "text/plain")  # read without a request


def test_the_adapter_reads_hashes_metadata_and_classes_as_gcs_gives_them(
    fake_gcs: tuple[FakeGcs, Site],
) -> None:
    fake, site = fake_gcs
    _estate(fake)
    adapter = build_adapter(site)
    try:
        plain = adapter.head(BUCKET, "plain/a.csv")
        assert plain.checksums["md5"] == hashlib.md5(PLAIN).hexdigest()
        assert plain.checksums["crc32c"] == f"{anycrc.Model('CRC32-ISCSI').calc(PLAIN):08x}"
        assert plain.metadata == {"owner": "dpo"}
        # The composed object's ETag is MD5-shaped; GCS says it has no MD5, and that holds.
        composed = adapter.head(BUCKET, "composed/b.bin")
        assert "md5" not in composed.checksums and "crc32c" in composed.checksums
        cold = adapter.head(BUCKET, "cold/c.bin")
        assert (cold.storage_class, cold.archived) == ("ARCHIVE", False)  # no restore on GCS
        listed = {o.key: o for o in adapter.list_objects(BUCKET)}
        assert sorted(listed) == sorted(fake.objects) and not any(
            o.archived for o in listed.values()
        )
    finally:
        adapter.close()


def test_a_gzip_stored_object_is_read_as_stored_and_the_header_asking_for_it_is_unsigned(
    fake_gcs: tuple[FakeGcs, Site],
) -> None:
    """Read as stored: the bytes the hashes are of, and a Range honoured. Google's front end
    rewrites Accept-Encoding, so a signature over it would fail: it is sent, never signed."""
    fake, site = fake_gcs
    _estate(fake)
    stored = fake.objects["gz/report.txt"].data
    adapter = build_adapter(site)
    try:
        assert _read(adapter, "gz/report.txt") == stored
        assert _read(adapter, "gz/report.txt", 10, 30) == stored[10:30]
        assert adapter.head(BUCKET, "gz/report.txt").size == len(stored)
    finally:
        adapter.close()
    objects = [(m, p, h) for m, p, h in fake.requests if urlsplit(p).path.count("/") > 1]
    assert {m for m, _, _ in objects} == {"GET", "HEAD"}
    for method, path, headers in objects:
        assert headers.get("Accept-Encoding") == "gzip", (method, path)
        signed = headers["Authorization"].split("SignedHeaders=")[1].split(",")[0]
        assert "accept-encoding" not in signed.split(";"), (method, path)
        # GCS has no x-amz-checksum-* to give: not asked for.
        assert "x-amz-checksum-mode" not in {k.lower() for k in headers}, (method, path)
    # A listing's XML is read as it comes: it is not asked for compressed.
    adapter = build_adapter(site)
    try:
        list(adapter.list_objects(BUCKET))
    finally:
        adapter.close()
    listings = [h for m, p, h in fake.requests if "list-type=2" in p]
    assert listings and not any("gzip" in h.get("Accept-Encoding", "") for h in listings)


@pytest.mark.parametrize("hash_on_ranges", [True, False])
def test_a_gcs_estate_is_copied_byte_for_byte_each_object_proven_or_said_unproven(
    fake_gcs: tuple[FakeGcs, Site], tmp_path: Path, hash_on_ranges: bool
) -> None:
    """From GCS to a local destination through the executor: every object arrives as stored
    (the gzip one compressed, as its hashes are), metadata kept; an object with an MD5 is
    proven by it; the composed one, whose ETag is no MD5, is proven by its CRC32C, not
    failed as a mismatch; one whose ETag is no MD5 while GCS gives its MD5 is proven by
    that. Whether or not a ranged answer carries x-goog-hash (not documented either way),
    no copy fails: without it, each is proven by the CRC32C of its HEAD."""
    fake, site = fake_gcs
    _estate(fake)
    fake.hash_on_ranges = hash_on_ranges
    root = tmp_path / "dest"
    root.mkdir()
    dest_site = Site(name="dst", provider="local", region="local", path=str(root), country="FR")
    sites = {site.name: site, "dst": dest_site}
    source, destination = build_adapter(site), build_adapter(dest_site)

    def copy(state: Path) -> tuple[Plan, PhaseSummary]:
        """Inventory, plan and copy with the state in `state`."""
        config = SitesConfig(path=tmp_path / "sites.toml", state_dir=state, sites=sites)
        run_inventory(config, site.name, source)
        plan = simple_plan("gcs", site, dest_site, state, {BUCKET: "copy"})
        with Ledger(state) as ledger:
            summary = run_phase(
                plan, "bulk-1", ledger, source, destination,
                config=SMALL_PARTS, sleep=lambda s: None,
            )  # fmt: skip
        return plan, summary

    try:
        destination.create_container("copy")
        plan, summary = copy(tmp_path / "state")
        with Ledger(tmp_path / "state") as ledger:
            proofs = {r.key: r.source_proof for r in ledger.manifest_rows(plan.name)}
            # And verify, deep from both ends, finds every copy right.
            checked = [
                verify(
                    plan, ledger, source, destination, phase=None, deep=deep, sample=None, seed=0
                )
                for deep in (False, True, "both")
            ]
        assert (summary.copied, summary.failed) == (len(fake.objects), 0)
        for key, stored in fake.objects.items():
            assert _read(destination, key, container="copy") == stored.data, key
        assert (destination.head("copy", "plain/a.csv").metadata or {}).get("owner") == "dpo"
        assert destination.head("copy", "gz/report.txt").content_encoding == "gzip"
        assert all(result.passed for result in checked), [r.findings for r in checked]
        # The state lost (a kill -9 before its records were written, here all of them):
        # each object at the destination is this plan's copy whose record was lost, none
        # another content, though GCS's ETags of two of them only look like MD5s.
        _, rerun = copy(tmp_path / "state-again")
        assert (rerun.copied, rerun.failed) == (len(fake.objects), 0)
        if hash_on_ranges:
            assert proofs == {
                "plain/a.csv": "md5",
                "gz/report.txt": "md5",
                "cold/c.bin": "md5",
                "kms/d.bin": "md5",  # by x-goog-hash: its ETag is none
                "composed/b.bin": "crc32c",  # no MD5: the CRC32C GCS gives with the read
                "empty/e.txt": "md5",  # no bytes to read: the MD5 of none
            }
        else:  # an answer from GCS without x-goog-hash cannot say which ETag is an MD5:
            # the CRC32C of the object's HEAD proves it
            read = {k: v for k, v in proofs.items() if k != "empty/e.txt"}
            assert set(read.values()) == {"crc32c"} and len(proofs) == len(fake.objects)
    finally:
        source.close()
        destination.close()


class _Guard:
    """Records each request asked of it; refuses all of them once `refusing`."""

    def __init__(self) -> None:
        self.checked: list[tuple[str, str]] = []
        self.refusing = False

    def check(self, method: str, url: str) -> None:
        from migrate.errors import RouteRefused

        if self.refusing:
            raise RouteRefused(f"request to {urlsplit(url).netloc} refused: not allowed")
        self.checked.append((method, url))

    def record(self, method: str, url: str, sent_bytes: int, status: int | None) -> None:
        pass


def test_every_request_a_gcs_site_sends_is_asked_of_the_routing_guard(
    fake_gcs: tuple[FakeGcs, Site],
) -> None:
    """As for S3 and Azure sites: the GCS adapter is built with the plan's guard, and a
    refusal sends nothing (a mutation review: one built without a guard passed every
    test)."""
    from migrate.errors import RouteRefused

    fake, site = fake_gcs
    _estate(fake)
    guard = _Guard()
    adapter = build_adapter(site, guard=guard)  # type: ignore[arg-type]
    try:
        adapter.check(BUCKET)
        listed = list(adapter.list_objects(BUCKET))
        assert _read(adapter, "plain/a.csv", 0, 10) == PLAIN[:10]
        adapter.head(BUCKET, "composed/b.bin")
        assert len(fake.requests) == len(guard.checked) >= 4 and len(listed) == 6
        guard.refusing = True
        before = len(fake.requests)
        with pytest.raises(RouteRefused):
            adapter.head(BUCKET, "plain/a.csv")
        assert len(fake.requests) == before
    finally:
        adapter.close()


def test_x_goog_hash_values_that_are_not_hashes_are_dropped() -> None:
    md5 = base64.b64encode(hashlib.md5(b"x").digest()).decode()
    assert goog_hashes(f"crc32c={CRC32C_OF_ANY}, md5={md5}") == {
        "crc32c": base64.b64decode(CRC32C_OF_ANY).hex(),
        "md5": hashlib.md5(b"x").hexdigest(),
    }
    assert goog_hashes("md5=not base64!,crc32c=AAAAAA==,sha1=abc") == {"crc32c": "00000000"}
    assert goog_hashes(None) == {}


@pytest.mark.integration
def test_an_estate_on_gcs_moves_through_the_whole_command_flow(
    gcs_site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The user's flow from a GCS site (served here by SeaweedFS) to a local destination,
    its region added in a catalog file as the README says: the source is judged by it, and
    the copy verifies, deep."""
    from migrate.cli import main

    bucket = unique_name("gcs")
    seeder = build_adapter(gcs_site)
    try:
        seeder.create_container(bucket)
        for i in range(6):
            put(seeder, bucket, f"cohort/{i}.csv", body(i, 100 + i))
    finally:
        seeder.close()
    (tmp_path / "dst").mkdir()
    # The region added as the README says (the catalog has no GCS location yet).
    (tmp_path / "gcs.yaml").write_text(
        "name: gcs\nregions:\n  - code: europe-west9\n    city: Paris\n"
        "    country: {value: FR, source: https://example.org/our-check, as_of: 2026-12-04}\n"
    )
    sites = tmp_path / "sites.toml"
    sites.write_text(
        f'state_dir = "{tmp_path / "state"}"\nrunner = {{ location = "FR" }}\n'
        'catalog = ["gcs.yaml"]\n'
        f'[sites.gcs-eu]\nprovider = "gcs"\nregion = "europe-west9"\n'
        f'endpoint = "{gcs_site.endpoint}"\nsoftware = "seaweedfs"\nbuckets = ["{bucket}"]\n'
        f'credentials = {{ access_key_env = "{S3_KEY_ENV}", secret_key_env = "{S3_SECRET_ENV}" }}\n'
        f'[sites.dst]\nprovider = "local"\npath = "{tmp_path / "dst"}"\ncountry = "FR"\n'
    )
    where = ["--sites", str(sites)]
    plan = str(tmp_path / "plan.yaml")
    for args in (
        ["inventory", "gcs-eu"],
        ["plan", "--from", "gcs-eu", "--to", "dst", "--policy", "eu-residency", "-o", plan],
        ["plan", "approve", plan],
        ["run", plan, "--phase", "pilot"],
        ["verify", plan, "--phase", "pilot"],
        ["run", plan, "--phase", "bulk-1"],
        ["verify", plan, "--deep"],
    ):
        code = main([*args, *where])
        out, err = capsys.readouterr()
        assert code == 0, (args, out[-2000:], err)
    source = next(ref for ref in load_plan(Path(plan)).sites if ref.role == "source")
    assert (source.provider, source.region, source.verdict) == ("gcs", "europe-west9", "PASS")
    copied = sorted(p.name for p in (tmp_path / "dst").rglob("*.csv"))
    assert copied == [f"{i}.csv" for i in range(6)]


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://storage.googleapis.com",
        f"https://{BUCKET}.storage.googleapis.com",
        "https://commondatastorage.googleapis.com",
    ],
)
def test_a_gcs_site_on_the_global_endpoint_is_refused_before_any_request(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    endpoint: str,
) -> None:
    """storage.googleapis.com does not say where a request is served, in either of its
    forms (path or virtual-hosted): refused (exit 10)."""
    from migrate.cli import main

    monkeypatch.setenv(S3_KEY_ENV, "GOOG1EXAMPLEHMACACCESSID")
    monkeypatch.setenv(S3_SECRET_ENV, "hmac-secret-for-tests")
    sites = tmp_path / "sites.toml"
    sites.write_text(
        f'state_dir = "{tmp_path / "state"}"\n[sites.g]\nprovider = "gcs"\n'
        f'region = "europe-west9"\nendpoint = "{endpoint}"\n'
        f'buckets = ["{BUCKET}"]\n'
        f'credentials = {{ access_key_env = "{S3_KEY_ENV}", secret_key_env = "{S3_SECRET_ENV}" }}\n'
    )
    assert main(["inventory", "g", "--sites", str(sites)]) == 10
    said = capsys.readouterr().err
    assert said.count("\n") == 1, said
    err = " ".join(said.split())
    assert "site g: endpoint " in err and "is GCS's global endpoint" in err, err
    # What to write instead, for the site's own region.
    assert 'set endpoint = "https://storage.europe-west9.rep.googleapis.com"' in err, err
    assert "hmac-secret" not in err


def test_an_object_rewritten_during_its_copy_is_never_joined_even_if_gcs_ignores_if_match(
    fake_gcs: tuple[FakeGcs, Site],
) -> None:
    """If-Match on a GET is not among GCS's documented headers: a read whose answer is
    another object than the one asked for is SourceChanged, whatever the store did with
    the header."""
    fake, site = fake_gcs
    _estate(fake)
    fake.honours_if_match = False
    adapter = build_adapter(site)
    try:
        asked = adapter.head(BUCKET, "composed/b.bin").etag
        assert asked is not None
        fake.objects["composed/b.bin"] = Stored(b"rewritten since " * 375, composed=True)
        with pytest.raises(SourceChanged):
            adapter.open_range(BUCKET, "composed/b.bin", 3000, 6000, if_match=asked)
        # The object as it is now reads, asked for as it is now.
        now = adapter.head(BUCKET, "composed/b.bin").etag
        assert _read(adapter, "composed/b.bin", 0, 16) == b"rewritten since "
        stream = adapter.open_range(BUCKET, "composed/b.bin", 0, 16, if_match=now)
        stream.close()
    finally:
        adapter.close()


def test_what_gcs_does_not_say_through_s3_calls_is_unknown_never_none(
    fake_gcs: tuple[FakeGcs, Site],
) -> None:
    """Replication, versions and locks: GCS does not document S3's calls for them (this
    server answers them as a bucket listing). The plan must hear "unknown", not "none"."""
    fake, site = fake_gcs
    _estate(fake)
    adapter = build_adapter(site)
    try:
        replication = adapter.replication(BUCKET)
        assert not replication.known and "location" in replication.detail
        found = adapter.protection(BUCKET)
        assert (found.versioning, found.older_versions, found.object_lock) == (None, None, None)
        with pytest.raises(NotFound):
            adapter.protection("absent-bucket")
    finally:
        adapter.close()


@pytest.mark.parametrize(
    ("region", "endpoint"),
    [("europe-west9", "https://storage.us-central1.rep.googleapis.com"),
     ("europe-west9", "https://STORAGE.us-east1.rep.googleapis.com."),
     (None, "https://storage.europe-west9.rep.googleapis.com")],
)  # fmt: skip
def test_a_regional_endpoint_must_be_the_sites_region(
    region: str | None, endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plan judges the declared region; the endpoint's location is where every request
    would go: they must agree."""
    monkeypatch.setenv(S3_KEY_ENV, "GOOG1EXAMPLEHMACACCESSID")
    monkeypatch.setenv(S3_SECRET_ENV, "hmac-secret-for-tests")
    site = Site(
        name="g", provider="gcs", region=region, endpoint=endpoint,
        credentials=CredentialRef(access_key_env=S3_KEY_ENV, secret_key_env=S3_SECRET_ENV),
    )  # fmt: skip
    with pytest.raises(ConfigError, match="serves GCS location") as refused:
        build_adapter(site)
    # The fix offered: the endpoint of the region declared, or (none declared) that region.
    offered = f"storage.{region}.rep.googleapis.com" if region else 'region = "europe-west9"'
    assert offered in refused.value.one_line()
    location = endpoint.split(".")[1].lower()
    build_adapter(site.model_copy(update={"region": location})).close()  # built, nothing sent


def test_a_read_is_held_to_its_etag_in_whatever_form_the_answer_gives_it(
    fake_gcs: tuple[FakeGcs, Site],
) -> None:
    """A weak or upper-case ETag is the same ETag; an answer without one cannot be held to
    the object asked for: refused, not taken on trust."""
    fake, site = fake_gcs
    _estate(fake)
    fake.honours_if_match = False
    asked = fake.objects["plain/a.csv"].etag
    adapter = build_adapter(site)
    try:
        for form in ('W/"{}"', '"{}"'):
            fake.etag_form = form
            stream = adapter.open_range(BUCKET, "plain/a.csv", 0, 7, if_match=asked.upper())
            assert stream.read() == PLAIN[:7]
            stream.close()
        fake.etag_form = ""
        with pytest.raises(Permanent, match="without an ETag"):
            adapter.open_range(BUCKET, "plain/a.csv", 0, 7, if_match=asked)
    finally:
        adapter.close()


def test_a_refused_listing_of_the_projects_buckets_says_the_credentials_are_unconfirmed(
    fake_gcs: tuple[FakeGcs, Site],
) -> None:
    """`sites check` of a GCS site without buckets: GCS lists buckets per project, which a
    request signed with an HMAC key does not name; its refusal is no verdict on the keys."""
    _, site = fake_gcs
    adapter = build_adapter(site)
    try:
        said = adapter.check_account()
    finally:
        adapter.close()
    assert said.startswith("credentials not confirmed") and "declare the site's buckets" in said


def test_a_region_added_as_the_readme_shows_gives_the_endpoint_and_flags_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's catalog file for a GCS location: a site without `endpoint` gets the
    regional one, and a declared endpoint elsewhere (another host altogether) is a finding,
    not silently taken."""
    from providers.catalog import load_catalog
    from providers.factory import s3_site_as_built

    regions = tmp_path / "gcs-regions.yaml"
    regions.write_text(
        "name: gcs\nregions:\n  - code: europe-west9\n    city: Paris\n    country: FR\n"
        "    endpoint: storage.europe-west9.rep.googleapis.com\n"
        "    source: https://cloud.google.com/storage/docs/regional-endpoints\n"
        "    as_of: 2026-12-04\n"
    )
    catalog = load_catalog([regions])
    site = Site(name="gcs-hdh", provider="gcs", region="europe-west9", buckets=("hdh-cohorts",))
    assert s3_site_as_built(site, catalog).endpoint == (
        "https://storage.europe-west9.rep.googleapis.com"
    )
    assert catalog.endpoint_findings(site) == []
    elsewhere = site.model_copy(update={"endpoint": "https://gcs-mirror.example.net"})
    (finding,) = catalog.endpoint_findings(elsewhere)
    assert "does not match region europe-west9's endpoint" in finding
