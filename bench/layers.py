"""Where the CPU of a small-object copy goes, layer by layer: `python -m bench.layers`.

Starts its own SeaweedFS on 127.0.0.1, seeds N objects of 16 KiB, then measures the
client's CPU per object (user + system, this process) for each layer of a copy, from the
bare HTTP client up to `run_phase`, each in one thread so that nothing else shares the
GIL. Every row is measured twice, interleaved, and the lower is kept (the host is noisy).
Prints a markdown table to paste into bench/RESULTS.md. Takes about a minute.

What the rows are:
- http.client GET / PUT: one signed request on a kept-alive connection, nothing else: the
  floor of any Python client on this machine (the kernel's loopback work included).
- urllib3 GET / PUT: the same requests through a urllib3 pool, as the lean path sends
  them.
- libcurl GET / PUT: the same requests through bare pycurl (libcurl, whose HTTP is C),
  one kept-alive handle each: the floor of the transport the lean path uses for small
  requests (providers/curl_http.py).
- adapter GET / PUT: `open_range` + `read`, `put_object` (MD5 and SHA-256 given): the
  S3 adapter's lean path, with its header parsing and checks.
- MD5 + SHA-256: the hashing of one object.
- ObjectCopy.copy: one object's copy (GET, hashes, PUT, checks), attributes known.
- run_phase: the executor over the phase (ledger, limits, retries, copy threads), with
  1 and with 8 copy threads.
- run_phase, instant copy: the same with the copy replaced by a function that returns at
  once: what the executor and the ledger cost alone.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import os
import resource
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import urllib3
from botocore.credentials import Credentials

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import migrate.transfer as transfer  # noqa: E402
from bench.migrate_copy import PHASE, one_phase_plan  # noqa: E402
from bench.run import seaweedfs_site  # noqa: E402
from migrate.executor import TransferConfig, run_phase  # noqa: E402
from migrate.inventory import run_inventory  # noqa: E402
from migrate.ledger import Ledger  # noqa: E402
from migrate.localservers import seaweedfs  # noqa: E402
from migrate.sites import load_sites  # noqa: E402
from providers.base import WriteAttrs  # noqa: E402
from providers.factory import build_adapter  # noqa: E402
from providers.sigv4 import S3Signer  # noqa: E402

SIZE = 16 * 1024
KEY_ENV, SECRET_ENV = "LAYERS_S3_KEY", "LAYERS_S3_SECRET"


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def per_object(n: int, fn: Callable[[int], None]) -> float:
    """ms of CPU per call of fn(i), i in range(n)."""
    start = cpu()
    for i in range(n):
        fn(i)
    return (cpu() - start) / n * 1e3


def sites_toml(endpoint: str) -> str:
    site = seaweedfs_site(endpoint, KEY_ENV, SECRET_ENV)
    return (
        'state_dir = "state"\npolicy = "eu-residency"\nrunner = { location = "FR" }\n'
        f'[sites.src]\n{site}buckets = ["layers-src"]\n[sites.dst]\n{site}'
    )


def measure(n: int) -> list[tuple[str, float]]:
    rows: dict[str, list[float]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="migrate-layers-") as tmp,
        seaweedfs(Path(tmp) / "seaweedfs") as sw,
    ):
        os.environ[KEY_ENV], os.environ[SECRET_ENV] = sw.access_key, sw.secret_key
        sites = Path(tmp) / "sites.toml"
        sites.write_text(sites_toml(sw.endpoint), encoding="utf-8")
        config = load_sites(sites)
        src, dst = build_adapter(config.site("src")), build_adapter(config.site("dst"))
        src.create_container("layers-src")
        dst.create_container("layers-raw")
        body = os.urandom(SIZE)
        sums = {"md5": hashlib.md5(body).hexdigest(), "sha256": hashlib.sha256(body).hexdigest()}
        etags = {}
        for i in range(n):
            etags[i] = src.put_object("layers-src", f"d/k{i:05d}", body, SIZE, WriteAttrs(), sums)

        host, port = sw.endpoint.split("//", 1)[1].rsplit(":", 1)
        signer = S3Signer(Credentials(sw.access_key, sw.secret_key), "local")
        pool = urllib3.HTTPConnectionPool(host, int(port), maxsize=2, retries=False)
        conn = http.client.HTTPConnection(host, int(port))
        md5_b64 = base64.b64encode(hashlib.md5(body).digest()).decode()

        def url(bucket: str, key: str) -> tuple[str, str]:
            path = f"/{bucket}/{quote(key, safe='/~')}"
            return f"{sw.endpoint}{path}", path

        def get_request(i: int) -> tuple[str, dict[str, Any]]:
            full, path = url("layers-src", f"d/k{i:05d}")
            return path, signer.sign("GET", full, {"Range": "bytes=0-"})

        def put_request(key: str) -> tuple[str, dict[str, Any]]:
            full, path = url("layers-raw", key)
            headers = {"Content-MD5": md5_b64, "Content-Length": str(SIZE)}
            return path, signer.sign("PUT", full, headers, body, payload_sha256=sums["sha256"])

        def raw_get(i: int) -> None:
            path, headers = get_request(i)
            conn.request("GET", path, headers=headers)
            r = conn.getresponse()
            r.read()
            assert r.status == 206, r.status

        def raw_put(i: int) -> None:
            path, headers = put_request(f"h{i:05d}")
            conn.request("PUT", path, body=body, headers=headers)
            r = conn.getresponse()
            r.read()
            assert r.status == 200, r.status

        def u3_get(i: int) -> None:
            path, headers = get_request(i)
            r = pool.urlopen("GET", path, headers=headers, preload_content=False, redirect=False)
            r.read()
            r.release_conn()
            assert r.status == 206, r.status

        def u3_put(i: int) -> None:
            path, headers = put_request(f"u{i:05d}")
            r = pool.urlopen("PUT", path, body=body, headers=headers, redirect=False)
            assert r.status == 200, r.status

        curl_rows = _curl_rows(n, get_request, put_request, sw.endpoint, body)

        def adapter_get(i: int) -> None:
            stream = src.open_range("layers-src", f"d/k{i:05d}", 0, SIZE, if_match=etags[i].etag)
            stream.read(SIZE + 1)
            stream.close()

        def adapter_put(i: int) -> None:
            dst.put_object("layers-raw", f"a{i:05d}", body, SIZE, WriteAttrs(), sums)

        def hashes(i: int) -> None:
            hashlib.md5(body).hexdigest()
            hashlib.sha256(body).hexdigest()

        copier = transfer.ObjectCopy(src, dst, _NoRecord(), buffers=transfer.PartBuffers(2))
        attrs = WriteAttrs()

        def copy(i: int) -> None:
            item = transfer.TransferItem(
                "layers-src", f"d/k{i:05d}", SIZE, etags[i].etag, None, {}, "layers-raw",
                f"c{i:05d}", attrs=attrs,
            )  # fmt: skip
            copier.copy(item)

        phase_runs = 0

        def phase(threads: int, instant: bool) -> float:
            nonlocal phase_runs
            phase_runs += 1
            # A state of its own for each run, the inventory listed into it (not measured).
            mine = config.model_copy(update={"state_dir": Path(tmp) / f"state-{phase_runs}"})
            run_inventory(mine, "src", src)
            state = mine.state_dir
            original = transfer.ObjectCopy.copy
            if instant:
                transfer.ObjectCopy.copy = _instant  # type: ignore[method-assign]
            try:
                with Ledger(state) as ledger:
                    plan = one_phase_plan(
                        ledger, config.site("src"), config.site("dst"),
                        {"layers-src": f"layers-p{phase_runs}"},
                    )  # fmt: skip
                    start = cpu()
                    done = run_phase(
                        plan, PHASE, ledger, src, dst, config=TransferConfig(concurrency=threads)
                    )
                    took = (cpu() - start) / n * 1e3
                assert done.copied == n, done
                return took
            finally:
                transfer.ObjectCopy.copy = original  # type: ignore[method-assign]

        layers: list[tuple[str, Callable[[], float]]] = [
            ("http.client GET", lambda: per_object(n, raw_get)),
            ("http.client PUT", lambda: per_object(n, raw_put)),
            ("urllib3 GET", lambda: per_object(n, u3_get)),
            ("urllib3 PUT", lambda: per_object(n, u3_put)),
            *curl_rows,
            ("adapter GET (open_range + read)", lambda: per_object(n, adapter_get)),
            ("adapter PUT (put_object)", lambda: per_object(n, adapter_put)),
            ("MD5 + SHA-256 of 16 KiB", lambda: per_object(n, hashes)),
            ("ObjectCopy.copy (GET, hashes, PUT)", lambda: per_object(n, copy)),
            ("run_phase, 1 copy thread", lambda: phase(1, False)),
            ("run_phase, 8 copy threads", lambda: phase(8, False)),
            ("run_phase, 1 copy thread, instant copy", lambda: phase(1, True)),
        ]
        for _ in range(2):
            for name, run in layers:
                rows.setdefault(name, []).append(run())
        src.close()
        dst.close()
    return [(name, min(values)) for name, values in rows.items()]


def _curl_rows(
    n: int,
    get_request: Callable[[int], tuple[str, dict[str, Any]]],
    put_request: Callable[[str], tuple[str, dict[str, Any]]],
    endpoint: str,
    body: bytes,
) -> list[tuple[str, Callable[[], float]]]:
    """The GET and PUT rows through bare libcurl."""
    import pycurl

    def handle() -> Any:
        c = pycurl.Curl()
        c.setopt(pycurl.NOSIGNAL, 1)
        return c

    getter, putter = handle(), handle()
    putter.setopt(pycurl.CUSTOMREQUEST, "PUT")
    putter.setopt(pycurl.POSTFIELDS, body)

    def perform(c: Any, path: str, headers: dict[str, Any], status: int) -> bytes:
        out: list[bytes] = []
        # "Expect:" and "Content-Type:" unset what libcurl would add to a body it sends.
        lines = [f"{k}: {v}" for k, v in headers.items()] + ["Expect:", "Content-Type:"]
        c.setopt(pycurl.URL, endpoint + path)
        c.setopt(pycurl.HTTPHEADER, lines)
        c.setopt(pycurl.WRITEFUNCTION, out.append)
        c.setopt(pycurl.HEADERFUNCTION, out.append)  # read, as any client reads them
        c.perform()
        got = c.getinfo(pycurl.RESPONSE_CODE)
        assert got == status, got
        return b"".join(out)

    def curl_get(i: int) -> None:
        path, headers = get_request(i)
        assert len(perform(getter, path, headers, 206)) > len(body)

    def curl_put(i: int) -> None:
        path, headers = put_request(f"l{i:05d}")
        perform(putter, path, headers, 200)

    return [
        ("libcurl GET (pycurl)", lambda: per_object(n, curl_get)),
        ("libcurl PUT (pycurl)", lambda: per_object(n, curl_put)),
    ]


class _NoRecord:
    def claimed(self, *args: Any) -> bool:
        return True  # nothing the copy wrote is ever removed here

    def upload_started(self, *args: Any) -> None:
        pass

    def part_done(self, *args: Any) -> None:
        pass


def _instant(self: transfer.ObjectCopy, item: transfer.TransferItem) -> transfer.TransferOutcome:
    return transfer.TransferOutcome(item.size, "0" * 64, "0" * 32, "0" * 32, "none", 1, item.size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.layers", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--objects", type=int, default=1500, help="objects per measure")
    args = parser.parse_args(argv)
    found = measure(args.objects)
    print(f"Client CPU per object of {SIZE // 1024} KiB, one thread unless said, "
          f"{args.objects:,} objects, lower of 2 runs:\n")  # fmt: skip
    print("| layer | ms of CPU per object |\n|---|---|")
    for name, ms in found:
        print(f"| {name} | {ms:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
