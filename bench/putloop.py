"""The destination's own capacity for the same data: a bare boto3 PUT-only loop of bytes
already in memory, tuned for speed, run as its own process (it also seeds the sources).

    python bench/putloop.py ARGS_JSON

ARGS_JSON: {"endpoint", "bucket", "prefix", "count", "size", "part_size", "threads",
            "procs" (optional: processes, each with `threads` threads),
            "fanout" (optional: keys spread over this many "directories")}
Credentials come from BENCH_S3_KEY / BENCH_S3_SECRET.

Tuning, i.e. what a client that only wants speed does: no checksums at all (no
Content-MD5, no CRC: request_checksum_calculation="when_required"), no payload hash in the
signature (UNSIGNED-PAYLOAD, which botocore otherwise computes over plain HTTP), a thread
pool over every request (objects, or parts of all objects at once), one connection per
thread, no retries, and for small objects two processes (boto3 costs ~3 ms of CPU per
request here: one process is held by its GIL). Objects of `size` >= `part_size` go
multipart. Object i's bytes are a slice of one random buffer with i written at its start,
so every object differs. Prints one JSON line with the loop's own seconds (data generation
excluded).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.config import Config

Span = tuple[float, float]


def client(endpoint: str, threads: int) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=os.environ["BENCH_S3_KEY"],
        aws_secret_access_key=os.environ["BENCH_S3_SECRET"],
        config=Config(
            max_pool_connections=threads + 4,
            retries={"total_max_attempts": 1},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path", "payload_signing_enabled": False},
            tcp_keepalive=True,
        ),
    )


def _create_bucket(args: dict[str, Any]) -> None:
    s3 = client(args["endpoint"], 1)
    try:
        s3.create_bucket(Bucket=args["bucket"])
    except s3.exceptions.ClientError as exc:
        if exc.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise


def run(args: dict[str, Any], worker: int = 0, procs: int = 1, barrier: Any = None) -> Span:
    """This worker's share of the objects (i % procs == worker); returns when its loop
    started and ended (wall clock, comparable across processes)."""
    count, size, part_size = args["count"], args["size"], args["part_size"]
    threads, bucket, prefix = args["threads"], args["bucket"], args["prefix"]
    s3 = client(args["endpoint"], threads)
    pool_bytes = os.urandom(min(size, part_size) + 4096)

    def body(i: int, length: int) -> bytes:
        start = (i * 61) % 4096
        data = pool_bytes[start : start + length]
        return i.to_bytes(8, "big") + data[8:] if length >= 8 else data

    fanout = int(args.get("fanout", 0))
    mine = list(range(worker, count, procs))
    keys = {i: f"{prefix}{i % fanout:03d}/{i:07d}" if fanout else f"{prefix}{i:07d}" for i in mine}
    with ThreadPoolExecutor(max_workers=threads) as pool:
        if size < part_size:
            bodies = {i: body(i, size) for i in mine}
            if barrier is not None:
                barrier.wait()
            started = time.time()
            list(
                pool.map(lambda i: s3.put_object(Bucket=bucket, Key=keys[i], Body=bodies[i]), mine)
            )
            return started, time.time()
        parts_of = -(-size // part_size)
        firsts = {i: body(i, part_size) for i in mine}  # first parts differ
        middle = pool_bytes[1 : 1 + part_size]
        tail = pool_bytes[2 : 2 + size - (parts_of - 1) * part_size]
        if barrier is not None:
            barrier.wait()
        started = time.time()
        uploads = dict(
            zip(
                mine,
                pool.map(
                    lambda i: s3.create_multipart_upload(Bucket=bucket, Key=keys[i])["UploadId"],
                    mine,
                ),
                strict=True,
            )
        )

        def put_part(job: tuple[int, int]) -> tuple[int, int, str]:
            i, n = job
            data = firsts[i] if n == 1 else (tail if n == parts_of else middle)
            r = s3.upload_part(
                Bucket=bucket, Key=keys[i], UploadId=uploads[i], PartNumber=n, Body=data
            )
            return i, n, r["ETag"]

        jobs = [(i, n) for i in mine for n in range(1, parts_of + 1)]
        etags: dict[int, list[dict[str, Any]]] = {i: [] for i in mine}
        for i, n, etag in pool.map(put_part, jobs):
            etags[i].append({"PartNumber": n, "ETag": etag})
        list(
            pool.map(
                lambda i: s3.complete_multipart_upload(
                    Bucket=bucket,
                    Key=keys[i],
                    UploadId=uploads[i],
                    MultipartUpload={"Parts": sorted(etags[i], key=lambda p: p["PartNumber"])},
                ),
                mine,
            )
        )
        return started, time.time()


def main(args: dict[str, Any]) -> dict[str, Any]:
    _create_bucket(args)
    procs = int(args.get("procs", 1))
    if procs == 1:
        started, ended = run(args)
    else:
        # Python spends ~3 ms of CPU per request: several processes, or the GIL is the limit.
        ctx = multiprocessing.get_context("fork")
        barrier, results = ctx.Barrier(procs), ctx.Queue()

        def worker(w: int) -> None:
            results.put(run(args, w, procs, barrier))

        workers = [ctx.Process(target=worker, args=(w,)) for w in range(procs)]
        for w in workers:
            w.start()
        spans = [results.get(timeout=1800) for _ in workers]
        for w in workers:
            w.join()
        if any(w.exitcode for w in workers):
            raise SystemExit("a PUT loop worker failed")
        started, ended = min(s for s, _ in spans), max(e for _, e in spans)
    size = args["size"]
    return {
        "objects": args["count"],
        "bytes": args["count"] * size,
        "seconds": round(ended - started, 3),
    }


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
