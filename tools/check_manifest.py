#!/usr/bin/env python3
"""Re-check a migrated destination against its manifest, with the Python standard library
alone (Python 3.8 or later): no migrate, no SDK, nothing to install.

    python3 tools/check_manifest.py MANIFEST [--report report.json | --root HEX]
                                    [--dir DIRECTORY | --s3 ENDPOINT [--region R]]
                                    [--workers N] [--quiet]

MANIFEST is the `manifest.jsonl.gz` written by `migrate report`. The script

1. reads every line, checks it is canonical JSON, that lines are sorted by (dataset,
   destination_bucket, destination_key) without duplicates, and recomputes the Merkle
   root of each dataset and of the whole plan (RFC 6962, section 2.1: leaf =
   SHA-256(0x00 || line), node = SHA-256(0x01 || left || right), the tree split at the
   largest power of two below the number of leaves; the line is the UTF-8 JSON text
   without its newline). With `--report report.json` (the report written next to the
   manifest) or `--root HEX`, the roots must equal the expected ones: a manifest edited
   after the report fails here.
2. With `--dir DIRECTORY`: reads DIRECTORY/<destination_bucket>/<destination_key> for each
   line (a local copy of the destination, or a migrate local store) and checks its size
   and SHA-256.
3. With `--s3 ENDPOINT` (e.g. https://s3.fr-par.scw.cloud): GETs each object path-style
   (ENDPOINT/<bucket>/<key>), signed with AWS Signature Version 4 from the environment
   variables AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN if set), and
   checks its size and SHA-256. `--region` (default: AWS_REGION, AWS_DEFAULT_REGION, or
   us-east-1) is the signing region. Proxies from the environment are not used, and
   redirects are refused (a redirect would send the request elsewhere).

Prints one line per problem ("FAIL bucket/key: why") and a summary; exit status 0 when
everything matches, 1 when something does not (a damaged manifest file too), 2 on a usage
error or a file that cannot be opened (credentials
the store refuses for the first objects, none read, stop the check: all would fail alike).

Example:
    AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... python3 tools/check_manifest.py \\
        reports/hdh/manifest.jsonl.gz --report reports/hdh/report.json \\
        --s3 https://s3.fr-par.scw.cloud --region fr-par
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import hashlib
import hmac
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CHUNK = 1024 * 1024
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class Merkle:
    """RFC 6962 Merkle root, streaming: a stack of complete subtrees."""

    def __init__(self):
        self.stack = []  # (height, hash)
        self.count = 0

    def add(self, line):
        node = hashlib.sha256(b"\x00" + line).digest()
        height = 0
        while self.stack and self.stack[-1][0] == height:
            node = hashlib.sha256(b"\x01" + self.stack.pop()[1] + node).digest()
            height += 1
        self.stack.append((height, node))
        self.count += 1

    def root(self):
        if not self.stack:
            return EMPTY_SHA256
        node = self.stack[-1][1]
        for _, left in reversed(self.stack[:-1]):
            node = hashlib.sha256(b"\x01" + left + node).digest()
        return node.hex()


# -- reading the destination -------------------------------------------------------------


def hash_file(path):
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(CHUNK)
            if not chunk:
                break
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _hmac(key, text):
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise urllib.error.HTTPError(req.full_url, code, "redirect refused", headers, fp)


class S3Reader:
    """GET objects path-style with a SigV4 signature (an empty payload's SHA-256)."""

    def __init__(self, endpoint, region, access_key, secret_key, token=None):
        parts = urllib.parse.urlsplit(endpoint.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"not an http(s) endpoint: {endpoint}")
        self.scheme, self.host, self.base = parts.scheme, parts.netloc, parts.path
        self.region, self.access_key, self.secret_key, self.token = (
            region, access_key, secret_key, token,
        )  # fmt: skip
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)

    def request(self, bucket, key):
        quote = urllib.parse.quote
        path = f"{self.base}/{quote(bucket, safe='')}/{quote(key, safe='/')}"
        now = datetime.datetime.now(datetime.timezone.utc)  # noqa: UP017 (Python 3.8)
        amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        headers = {"host": self.host, "x-amz-content-sha256": EMPTY_SHA256, "x-amz-date": amz_date}
        if self.token:
            headers["x-amz-security-token"] = self.token
        names = sorted(headers)
        signed = ";".join(names)
        canonical = "\n".join(
            ["GET", path, "", "".join(f"{n}:{headers[n]}\n" for n in names), signed, EMPTY_SHA256]
        )
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        key_ = _hmac(("AWS4" + self.secret_key).encode("utf-8"), day)
        for part in (self.region, "s3", "aws4_request"):
            key_ = _hmac(key_, part)
        signature = hmac.new(key_, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}"
        )
        del headers["host"]  # urllib sets it from the URL, with the same value
        return urllib.request.Request(f"{self.scheme}://{self.host}{path}", headers=headers)

    def hash_object(self, bucket, key):
        with self.opener.open(self.request(bucket, key), timeout=60) as response:
            digest, size = hashlib.sha256(), 0
            while True:
                chunk = response.read(CHUNK)
                if not chunk:
                    break
                digest.update(chunk)
                size += len(chunk)
        return size, digest.hexdigest()


def file_of(root, bucket, key):
    """DIRECTORY/<bucket>/<key>, or None for a key no file stands for: an empty, "." or
    ".." segment would name another file (or one outside DIRECTORY)."""
    segments = [bucket, *key.split("/")]
    if any(s in ("", ".", "..") or "\0" in s for s in segments):
        return None
    return Path(root, *segments)


class CredentialsRefused(Exception):
    """The store refused the credentials: every object would fail alike, so the check stops."""


class Unreachable(Exception):
    """The store could not be reached (refused connection, unknown host, timeout) before any
    object was read: a mistyped endpoint, not objects that fail the check."""


UNREACHABLE = "cannot reach the store"


REFUSALS_TO_STOP = 3  # refusals (401, 403) before any object could be read: the credentials


def _invalid_fields(record):
    """The fields a line needs to be checked, missing or of the wrong kind."""
    named = ("destination_bucket", "destination_key")
    wrong = [k for k in named if not isinstance(record.get(k), str)]
    size = record.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        wrong.append("size")
    sha = record.get("sha256")
    if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
        wrong.append("sha256")
    return wrong


def check_object(reader, root, record):
    """None when the destination object matches the line, else why not."""
    wrong = _invalid_fields(record)
    if wrong:  # a line edited or cut: a failure, not a crash (an audit: KeyError, exit 1)
        return f"the manifest line has no valid {', '.join(wrong)}: it cannot be checked"
    bucket, key = record["destination_bucket"], record["destination_key"]
    try:
        if reader is not None:
            size, sha = reader.hash_object(bucket, key)
        else:
            path = file_of(root, bucket, key)
            if path is None:
                return "cannot be checked in a directory: its key has an empty, '.' or '..' segment"
            size, sha = hash_file(path)
    except FileNotFoundError:
        return "missing"
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            # S3 answers 403 for a missing key to a reader that may not list the bucket,
            # and for an object whose KMS key it may not use: one refusal is an object's.
            return f"HTTP {exc.code} {exc.reason} (missing, or not readable with these credentials)"
        return "missing" if exc.code == 404 else f"HTTP {exc.code} {exc.reason}"
    except urllib.error.URLError as exc:  # no HTTP answer at all
        return f"{UNREACHABLE}: {exc.reason}"
    except OSError as exc:
        return f"cannot read: {exc}"
    except Exception as exc:  # one object that cannot be checked is a failure, not a crash
        return f"cannot check: {type(exc).__name__}: {exc}"
    if size != record["size"]:
        return f"size {size}, manifest says {record['size']}"
    if sha != record["sha256"]:
        return f"SHA-256 {sha}, manifest says {record['sha256']}"
    return None


# -- the manifest ------------------------------------------------------------------------


def read_manifest(path, problems):
    """Yield (line bytes, record) in file order, noting format and order problems."""
    last = None
    with gzip.open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            line = raw.rstrip(b"\n")
            try:
                record = json.loads(line.decode("utf-8", "surrogateescape"))
            except ValueError:
                problems.append(f"line {number}: not JSON")
                continue
            if not isinstance(record, dict):  # [1, 2] is JSON too: a failure, no traceback
                problems.append(f"line {number}: not a JSON object")
                continue
            if not isinstance(record.get("dataset", ""), str):
                problems.append(f"line {number}: its dataset is not a string")
                record = {**record, "dataset": json.dumps(record["dataset"])}
            canonical = json.dumps(
                record, sort_keys=True, separators=(",", ":"), ensure_ascii=False
            )
            if canonical.encode("utf-8", "surrogateescape") != line:
                problems.append(f"line {number}: not canonical JSON")
            order = tuple(
                str(record.get(k, "")).encode("utf-8", "surrogateescape")
                for k in ("dataset", "destination_bucket", "destination_key")
            )
            if last is not None and order <= last:
                problems.append(f"line {number}: out of order or duplicate")
            last = order
            yield line, record


def expected_roots(args):
    """(plan root, dataset roots, the report's status line or None, the report's own
    figures for the manifest: objects, bytes and the file's SHA-256, where it has them)."""
    if args.root:
        return args.root.lower(), {}, None, {}
    if not args.report:
        return None, {}, None, {}
    data = json.loads(Path(args.report).read_text(encoding="utf-8"))
    manifest = data.get("manifest", data)
    datasets = {d["dataset"]: d["root"] for d in manifest.get("datasets", [])}
    status = None
    if "status" in data:
        # The manifest lists what was copied; whether the move is complete is the report's.
        items = data.get("open_items") or []
        status = f"report status: {data['status']}" + "".join(f"\n  open: {i}" for i in items)
    figures = {k: manifest[k] for k in ("objects", "bytes", "sha256") if k in manifest}
    # The report's totals of objects copied, which the manifest lists one by one: a
    # forger editing the manifest section alone leaves them telling.
    totals = data.get("totals") or {}
    for name, key in (("objects", "done"), ("bytes", "done_bytes")):
        if key in totals:
            figures[f"totals {name}"] = totals[key]
    figures["contradictions"] = contradictions(data, manifest)
    figures["status"] = data.get("status")
    return manifest.get("plan_root"), datasets, status, figures  # none: a contradiction


# What every report.json of this format holds (reports/schema.json): one taken out is a
# figure a forger did not want compared, not a report of another shape.
REQUIRED = {
    "": ("status", "open_items", "phases_not_run", "totals", "phases", "verifications",
         "manifest"),
    "manifest": ("plan_root", "objects", "bytes", "sha256", "datasets"),
    "totals": ("objects", "done", "done_bytes", "failed", "changed", "pending"),
}  # fmt: skip


def contradictions(data, manifest):
    """Where the report's own figures disagree: its totals with their parts and with its
    phases, each dataset's copies in its phases with its manifest section, a status of
    verified with objects not done, a phase not verified or a verification failed. A
    forger who edits a few figures, or takes some out, leaves the others."""
    out = []
    for section, keys in REQUIRED.items():
        held = data if not section else data.get(section)
        missing = [k for k in keys if not isinstance(held, dict) or k not in held]
        if missing:
            where = f"its {section} section" if section else "it"
            out.append(f"the report lacks {', '.join(missing)} ({where}): taken out?")
    totals = data.get("totals") or {}
    parts = ("done", "failed", "changed", "pending")
    if "objects" in totals and all(k in totals for k in parts):
        counted = sum(totals[k] for k in parts)
        if counted != totals["objects"]:
            out.append(
                f"the report's totals say {totals['objects']} objects, and {counted} done, "
                "failed, changed or pending"
            )
    wrong, pending = totals.get("found_wrong", 0), totals.get("pending", 0)
    if isinstance(wrong, int) and isinstance(pending, int) and wrong > pending:
        out.append(  # those found wrong are among those pending
            f"the report's totals say {totals['found_wrong']} objects found wrong to copy "
            f"again, and only {totals.get('pending', 0)} pending"
        )
    phases = data.get("phases")
    if isinstance(phases, list) and phases:
        for key in ("objects", "done", "done_bytes"):
            if key in totals:
                counted = sum((p.get("counts") or {}).get(key, 0) for p in phases)
                if counted != totals[key]:
                    out.append(
                        f"the report's phases count {counted} {key}, its totals {totals[key]}"
                    )
        copied = {}
        for p in phases:
            for d in p.get("datasets") or []:
                done = (d.get("counts") or {}).get("done", 0)
                copied[d["dataset"]] = copied.get(d["dataset"], 0) + done
        listed = {d["dataset"]: d.get("objects", 0) for d in manifest.get("datasets", [])}
        for name in sorted(set(copied) | set(listed)):
            if copied.get(name, 0) != listed.get(name, 0):
                out.append(
                    f"dataset {name}: the report's phases count {copied.get(name, 0)} objects "
                    f"copied, its manifest section {listed.get(name, 0)}"
                )
    if data.get("status") == "verified":
        if totals.get("done") != totals.get("objects"):
            out.append("the report says verified, and not every object of its totals is done")
        if data.get("open_items") or data.get("phases_not_run"):
            out.append("the report says verified, and lists open items or phases not run")
        for p in phases if isinstance(phases, list) else []:
            if p.get("kind") == "decommission":
                continue  # not part of the move: it deletes the source after it
            check = p.get("verification") or {}
            if not p.get("verified_at") or not p.get("resolved_at") or not check.get("passed"):
                out.append(
                    f"the report says verified, and phase {p.get('name')} is not run, not "
                    "verified, or its latest verification did not pass"
                )
    return out


class _ReaderMayLeave:
    """Standard output whose reader may leave early (`| head`): the rest of the output is
    dropped and the check goes on to its own exit code (a traceback and 1 would read as a
    mismatch)."""

    def __init__(self, out):
        self._out = out

    def write(self, text):
        try:
            return self._out.write(text)
        except BrokenPipeError:
            self._drop()
            return len(text)

    def flush(self):
        try:
            self._out.flush()
        except BrokenPipeError:
            self._drop()

    def _drop(self):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self._out.fileno())
        os.close(devnull)

    def __getattr__(self, name):
        return getattr(self._out, name)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Re-check a destination against a migrate manifest (stdlib only).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  check_manifest.py manifest.jsonl.gz --report report.json\n"
        "  AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... check_manifest.py manifest.jsonl.gz \\\n"
        "      --report report.json --s3 https://s3.fr-par.scw.cloud --region fr-par\n"
        "  check_manifest.py manifest.jsonl.gz --report report.json --dir /mnt/copy\n"
        "exit codes: 0 everything matches, 1 something does not, 2 usage error, or the\n"
        "  store refuses the credentials or cannot be reached before any object is read",
    )
    parser.add_argument("manifest", help="manifest.jsonl.gz")
    parser.add_argument("--report", help="report.json holding the expected Merkle roots")
    parser.add_argument("--root", help="the expected plan Merkle root (hex)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--dir", help="a directory holding <bucket>/<key> files")
    where.add_argument("--s3", help="an S3 endpoint URL, read path-style with SigV4")
    parser.add_argument("--region", default=None, help="SigV4 signing region")
    parser.add_argument("--workers", type=int, default=4, help="parallel reads (default 4)")
    parser.add_argument("--quiet", action="store_true", help="print problems and summary only")
    parser.add_argument(
        "--require-verified",
        action="store_true",
        help="with --report: fail (exit 1) unless the report's status is verified",
    )
    args = parser.parse_args(argv)
    if args.require_verified and not args.report:
        print("error: --require-verified needs --report", file=sys.stderr)
        return 2

    reader = None
    if args.s3 and ("@" in args.s3 or "?" in args.s3 or "#" in args.s3):
        # Not repeated, nor sent to a resolver as part of a host name: user:password@ or
        # a query would be a secret typed in the wrong place (a review).
        print(
            "error: --s3 holds a user name or password (`@`) or a query (`?`, `#`): give "
            "the endpoint alone (e.g. https://s3.fr-par.scw.cloud), the keys in "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            file=sys.stderr,
        )
        return 2
    if args.s3:
        access = os.environ.get("AWS_ACCESS_KEY_ID")
        secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
        if not access or not secret:
            print("error: --s3 needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", file=sys.stderr)
            return 2
        region = (
            args.region
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or "us-east-1"
        )
        try:
            reader = S3Reader(args.s3, region, access, secret, os.environ.get("AWS_SESSION_TOKEN"))
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    try:
        want_plan, want_datasets, report_status, figures = expected_roots(args)
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: cannot read the expected roots: {exc}", file=sys.stderr)
        return 2

    problems = []
    failures = 0
    whole, trees, counts = Merkle(), {}, {"objects": 0, "bytes": 0}
    check_bytes = reader is not None or args.dir is not None

    def check(record):
        return record, check_object(reader, args.dir, record)

    read_one = False  # an object read: the credentials work
    refused = []  # the refusals before that, held back: all alike, they are the credentials'

    def report(done):
        nonlocal failures, read_one
        record, why = done
        where = f"{record.get('destination_bucket', '?')}/{record.get('destination_key', '?')}"
        if why is not None and why.startswith(("HTTP 401", "HTTP 403")) and not read_one:
            refused.append(f"FAIL {where}: {why}")
            failures += 1
            if len(refused) >= REFUSALS_TO_STOP:
                raise CredentialsRefused(f"{why.split(' (', 1)[0]} for {where} and the others")
            return
        if why is not None and why.startswith(UNREACHABLE) and not read_one:
            refused.append(f"FAIL {where}: {why}")
            failures += 1
            if len(refused) >= REFUSALS_TO_STOP:
                said = UNREACHABLE + ": "  # (not str.removeprefix: this file runs on 3.8)
                raise Unreachable(why[len(said) :] if why.startswith(said) else why)
            return
        if why is None or not why.startswith(("HTTP 40", UNREACHABLE)):
            read_one = True
            for line in refused:
                print(line)
            refused.clear()
        if why is not None:
            failures += 1
            print(f"FAIL {where}: {why}")

    try:
        with ThreadPoolExecutor(max_workers=max(1, args.workers)) as pool:
            pending = []
            for line, record in read_manifest(args.manifest, problems):
                whole.add(line)
                trees.setdefault(record.get("dataset", ""), Merkle()).add(line)
                counts["objects"] += 1
                try:
                    counts["bytes"] += int(record.get("size", 0))
                except (TypeError, ValueError):
                    problems.append(f"object {counts['objects']}: size is not a number")
                if check_bytes:
                    pending.append(pool.submit(check, record))
                    if len(pending) >= 4 * max(1, args.workers):
                        report(pending.pop(0).result())
            for future in pending:
                report(future.result())
        for line in refused:  # fewer refusals than objects to stop at: each said
            print(line)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        # Opened, and not the file written: cut, or its bytes changed. A mismatch (1),
        # not a usage error (2).
        print(f"FAIL manifest: the file is damaged ({exc}): not the manifest the report describes")
        return 1
    except OSError as exc:
        print(f"error: cannot read {args.manifest}: {exc}", file=sys.stderr)
        return 2
    except Unreachable as exc:
        print(
            f"error: {UNREACHABLE} at {args.s3} ({exc}): check --s3 (the endpoint's URL) "
            "and the network; no object was checked",
            file=sys.stderr,
        )
        return 2
    except CredentialsRefused as exc:
        print(
            f"error: the store refused the credentials ({exc}): check AWS_ACCESS_KEY_ID, "
            "AWS_SECRET_ACCESS_KEY and their right to read the buckets",
            file=sys.stderr,
        )
        return 2

    for problem in problems:
        print(f"FAIL manifest {problem}")
    plan_root = whole.root()
    if not args.quiet:
        for name in sorted(trees):
            print(f"dataset {name}: {trees[name].count} objects, root {trees[name].root()}")
        print(f"plan root {plan_root}")
    root_problems = []
    if want_plan is not None and plan_root != want_plan:
        root_problems.append(f"plan root {plan_root}, expected {want_plan}")
    for name, root in sorted(want_datasets.items()):
        got = trees[name].root() if name in trees else Merkle().root()
        if got != root:
            root_problems.append(f"dataset {name} root {got}, expected {root}")
    for name in sorted(set(trees) - set(want_datasets)) if want_datasets else ():
        root_problems.append(f"dataset {name} is not in the report")
    # The report's own figures for the manifest: a row dropped and the roots copied into
    # the report would still leave its count, bytes and file hash telling.
    for name in ("objects", "bytes"):
        if name in figures and figures[name] != counts[name]:
            root_problems.append(f"{counts[name]} {name}, the report says {figures[name]}")
        total = figures.get(f"totals {name}")
        if total is not None and total != counts[name]:
            root_problems.append(
                f"{counts[name]} {name}, the report's totals of what was copied say {total}"
            )
    if "sha256" in figures and hash_file(args.manifest)[1] != figures["sha256"]:
        root_problems.append("the manifest file's SHA-256 is not the one the report names")
    for problem in figures.get("contradictions", []):
        root_problems.append(f"the report contradicts itself: {problem}")
    unverified = args.require_verified and figures.get("status") != "verified"
    for problem in root_problems:
        print(f"FAIL {problem}")
    if unverified:  # not a problem of the manifest: of the move it describes
        print(
            f"FAIL the report's status is {figures.get('status')}, not verified "
            "(--require-verified)"
        )
    if not args.report and not args.root:
        print("note: no --report nor --root: the manifest was checked against itself only")

    if report_status is not None:
        print(report_status)
    bad = failures + len(problems) + len(root_problems) + int(unverified)
    checked = "bytes and roots" if check_bytes else "roots only"
    status = "OK" if bad == 0 else "FAILED"
    print(
        f"{status}: {counts['objects']} objects, {counts['bytes']} bytes ({checked}); "
        f"{failures} object problems and {len(problems) + len(root_problems)} manifest "
        "problems"
        + ("; the report is not verified" if unverified else "")
    )
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.stdout = _ReaderMayLeave(sys.stdout)
    code = main()
    sys.stdout.flush()  # while a reader gone is still dropped, not at exit as a traceback
    sys.exit(code)
