"""A local directory as a store: the embedded default, for rehearsals and tests.

Layout under the site's `path`: `<container>/<key>` holds the bytes (a key's `/` are
directories), `.migrate-meta/<container>/<key>.json` the attributes given at write time,
`.migrate-uploads/` unfinished multipart uploads, `.migrate-tmp/` bytes in flight. Writes
land in a temporary file, are verified against their checksums, then renamed into place:
a reader sees the whole object or nothing.

A local file has no native checksum: its ETag is derived from mtime and size, so it changes
whenever the file is rewritten, which is what conditional reads need.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from migrate.errors import (
    ChecksumMismatch,
    ConfigError,
    CredentialsRejected,
    NotFound,
    PreconditionFailed,
    SiteRootMissing,
    SourceChanged,
    StoreFull,
    Unsupported,
)
from migrate.sites import Site
from providers.base import (
    ABSENT,
    CARRIED_HEADERS,
    Capabilities,
    ObjectInfo,
    PartResult,
    Protection,
    ReadStream,
    Replication,
    UploadInfo,
    WriteAttrs,
    WriteBody,
    WriteResult,
)

_CHUNK = 1024 * 1024
_META, _UPLOADS, _TMP = ".migrate-meta", ".migrate-uploads", ".migrate-tmp"


def _etag(st: os.stat_result) -> str:
    return f"{st.st_mtime_ns:x}-{st.st_size:x}"


class _RangeReader:
    """Reads [start, end) of an already opened file. A file is not one version: another
    process may write into it while it is read (a rename over it would not show here), so
    its ETag is checked again once the range is read: bytes of two versions are refused."""

    def __init__(self, handle: BinaryIO, remaining: int, info: ObjectInfo, where: str) -> None:
        self._handle = handle
        self._remaining = remaining
        self.info = info
        self._where = where

    def read(self, size: int = -1, /) -> bytes:
        if self._remaining <= 0:
            return b""
        n = self._remaining if size < 0 else min(size, self._remaining)
        data = self._handle.read(n)
        self._remaining -= len(data)
        done = self._remaining <= 0 or not data
        if done and _etag(os.fstat(self._handle.fileno())) != self.info.etag:
            raise SourceChanged(f"{self._where} changed while it was read")
        return data

    def close(self) -> None:
        self._handle.close()


def _chunks(body: WriteBody, length: int) -> Iterator[bytes | memoryview]:
    """At most `length` bytes of the body, a chunk at a time; a buffer is sliced, never
    copied (a part buffer is 16 MiB, and one copy per upload thread adds up)."""
    if isinstance(body, bytes | bytearray | memoryview):
        view = memoryview(body)[:length]
        for start in range(0, len(view), _CHUNK):
            yield view[start : start + _CHUNK]
        return
    received = 0
    while received < length:
        chunk = body.read(min(_CHUNK, length - received))
        if not chunk:
            return
        received += len(chunk)
        yield chunk


# A file name holds 255 bytes (NAME_MAX); an object's attributes are kept in a file named
# after its last segment with '.json' added (`_meta_path`): a key written here has a last
# segment of 250 bytes at most (declared to the planner for every segment: it checks no
# last segment apart), and a folder's 255.
NAME_MAX = 255
MAX_SEGMENT_BYTES = NAME_MAX - len(".json")


class LocalAdapter:
    def __init__(self, site: Site) -> None:
        if not site.path:
            raise ConfigError(f"site {site.name}: a local site needs `path` (a directory)")
        self.site_name = site.name
        self.root = Path(site.path)
        self.capabilities = Capabilities(
            native_checksums=(),
            verifies_checksums=("md5", "sha256"),
            confirmed_checksums=("md5", "sha256"),  # checked by _receive, below
            min_part_size=1,
            max_part_size=5 * 1024**3,
            max_single_put=5 * 1024**3,
            lists_uploads=True,
            conditional_read=True,
            max_segment_bytes=MAX_SEGMENT_BYTES,
            key_may_be_prefix=False,
            expires_header=True,  # kept beside the bytes, as the other headers
        )

    # -- paths -------------------------------------------------------------------------

    def _container_dir(self, container: str) -> Path:
        if not container or "/" in container or container.startswith("."):
            raise ConfigError(f"{self.site_name}: invalid container name {container!r}")
        return self.root / container

    def _path(self, container: str, key: str) -> Path:
        segments = key.split("/")
        for segment in segments:
            if segment in ("", ".", "..") or "\0" in segment:
                raise Unsupported(
                    f"{self.site_name}: key {key!r} cannot be stored in a local directory "
                    "(empty, '.' or '..' path segment)"
                )
            if len(os.fsencode(segment)) > NAME_MAX:
                raise Unsupported(
                    f"{self.site_name}: key {key!r} has a path segment over {NAME_MAX} bytes"
                )
        return self._container_dir(container).joinpath(*segments)

    def _writable_path(self, container: str, key: str) -> Path:
        """`_path` of a key this store can write: its attributes' file, named after its last
        segment with '.json' added, must be a file name too."""
        path = self._path(container, key)
        if len(os.fsencode(path.name)) > MAX_SEGMENT_BYTES:
            raise Unsupported(
                f"{self.site_name}: key {key!r} has a last path segment over "
                f"{MAX_SEGMENT_BYTES} bytes (a file name's {NAME_MAX}, less the '.json' of the "
                "file its attributes are kept in)"
            )
        return path

    def _meta_path(self, container: str, key: str) -> Path:
        return self.root / _META / container / (key + ".json")

    def _tmp(self) -> Path:
        tmp = self.root / _TMP
        tmp.mkdir(parents=True, exist_ok=True)
        return tmp / uuid.uuid4().hex

    def _require_root(self) -> None:
        # The site's directory is the operator's to make: a typo in its path must not put
        # the data on another disk (`sites check` said "not found" there, the run made it).
        if not self.root.is_dir():
            what = "is not a directory" if self.root.exists() else "does not exist"
            raise SiteRootMissing(
                f"{self.site_name}: directory {self.root} {what}",
                hint=f"check site {self.site_name}'s path in the sites file, or make the "
                f"directory (mkdir -p {self.root})",
            )

    def _require_container(self, container: str) -> Path:
        cdir = self._container_dir(container)
        self._require_root()
        if not cdir.is_dir():
            raise NotFound(
                f"{self.site_name}: container {container!r} not found in {self.root}",
                hint=f"check the container's name and site {self.site_name}'s path in the "
                f"sites file; `migrate sites check {self.site_name}` tries each container "
                "it lists",
            )
        return cdir

    # -- contract ------------------------------------------------------------------------

    def _denied(self, path: Path, what: str = "read") -> CredentialsRejected:
        """A directory or file the user running migrate may not use: as a store's
        AccessDenied (exit 5), naming it."""
        return CredentialsRejected(
            f"{self.site_name}: {path}: permission denied",
            hint=f"give the user running migrate {what} access to it",
        )

    def _names(self, directory: Path) -> list[str]:
        try:
            return os.listdir(directory)
        except PermissionError:
            raise self._denied(directory) from None

    def check(self, container: str) -> None:
        directory = self._require_container(container)
        try:  # readable, not only there; one entry read, not a large directory's all
            with os.scandir(directory) as entries:
                next(entries, None)
        except PermissionError:
            raise self._denied(directory) from None

    def check_account(self) -> str:
        self._require_root()
        if not os.access(self.root, os.R_OK | os.W_OK | os.X_OK):
            raise self._denied(self.root, "write")
        return "the directory is there, readable and writable"

    def create_container(self, container: str) -> None:
        self._require_root()
        try:
            self._container_dir(container).mkdir(exist_ok=True)
        except PermissionError:
            raise self._denied(self.root, "write") from None

    def list_objects(
        self, container: str, prefix: str = "", start_after: str | None = None
    ) -> Iterator[ObjectInfo]:
        cdir = self._require_container(container)
        yield from self._walk(container, cdir, "", prefix, start_after)

    def _walk(
        self, container: str, directory: Path, base: str, prefix: str, start_after: str | None
    ) -> Iterator[ObjectInfo]:
        # Sort as keys sort: a directory `a` holds keys `a/...`, so it sorts as "a/".
        # Compared as bytes, as they are sorted: a name that is not UTF-8 holds surrogates,
        # which do not compare as its bytes do (a resumed listing would skip or repeat keys).
        after = None if start_after is None else os.fsencode(start_after)
        entries: list[tuple[bytes, str, bool]] = []
        for name in self._names(directory):
            # Out of the prefix whether it is a file or a directory: passed over without a
            # stat (a listing per dataset prefix stat-ed every entry of the container's
            # root: datasets x entries, a million for a thousand datasets; a walkthrough).
            as_dir = base + name + "/"
            if not (as_dir.startswith(prefix) or prefix.startswith(as_dir)):
                continue
            full = directory / name
            is_dir = full.is_dir()
            key = base + name + ("/" if is_dir else "")
            if not (key.startswith(prefix) or (is_dir and prefix.startswith(key))):
                continue
            raw = os.fsencode(key)
            if after is not None and raw <= after and not (is_dir and after.startswith(raw)):
                continue
            entries.append((raw, name, is_dir))
        entries.sort()
        for _, name, is_dir in entries:
            full = directory / name
            if is_dir:
                yield from self._walk(container, full, base + name + "/", prefix, start_after)
                continue
            try:
                st = full.stat()
            except FileNotFoundError:  # deleted while listing
                continue
            yield ObjectInfo(
                container=container,
                key=base + name,
                size=st.st_size,
                etag=_etag(st),
                last_modified=datetime.fromtimestamp(st.st_mtime, UTC),
            )

    def head(self, container: str, key: str) -> ObjectInfo:
        return self._described(container, key, self._stat(container, key))

    def _stat(self, container: str, key: str) -> os.stat_result:
        try:
            return self._path(container, key).stat()
        except (FileNotFoundError, NotADirectoryError):
            self._require_container(container)
            raise NotFound(f"{self.site_name}: {container}/{key} not found") from None

    def _described(self, container: str, key: str, st: os.stat_result) -> ObjectInfo:
        """The object as stat says, with the side file's attributes if they are this
        version's (the side file names the ETag it was written for)."""
        meta = self._read_meta(container, key)
        if meta.get("etag") != _etag(st):
            meta = {}
        return ObjectInfo(
            container=container,
            key=key,
            size=st.st_size,
            etag=_etag(st),
            last_modified=datetime.fromtimestamp(st.st_mtime, UTC),
            checksums=_str_map(meta.get("checksums")),
            content_type=_opt_str(meta.get("content_type")),
            content_encoding=_opt_str(meta.get("content_encoding")),
            cache_control=_opt_str(meta.get("cache_control")),
            content_disposition=_opt_str(meta.get("content_disposition")),
            content_language=_opt_str(meta.get("content_language")),
            expires=_opt_str(meta.get("expires")),
            metadata=_str_map(meta.get("metadata")),
            tags=len(_str_map(meta.get("tags"))),
        )

    def read_tags(
        self,
        container: str,
        key: str,
        *,
        version_id: str | None = None,  # no versions here
    ) -> dict[str, str]:
        st = self._stat(container, key)
        meta = self._read_meta(container, key)
        return _str_map(meta.get("tags")) if meta.get("etag") == _etag(st) else {}

    def _read_meta(self, container: str, key: str) -> dict[str, object]:
        try:
            data = json.loads(self._meta_path(container, key).read_text(encoding="utf-8"))
        except (FileNotFoundError, NotADirectoryError, ValueError):
            return {}
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:  # a file put here by other means: none kept
                return {}
            raise
        return data if isinstance(data, dict) else {}

    def open_range(
        self,
        container: str,
        key: str,
        start: int = 0,
        end: int | None = None,
        *,
        if_match: str | None = None,
        version_id: str | None = None,
    ) -> ReadStream:
        path = self._path(container, key)
        try:
            handle = path.open("rb")
        except PermissionError:
            raise self._denied(path) from None
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"{self.site_name}: {container}/{key} not found") from None
        st = os.fstat(handle.fileno())
        # The opened file is one version: checking its ETag after opening is enough.
        if if_match is not None and _etag(st) != if_match:
            handle.close()
            raise SourceChanged(f"{self.site_name}: {container}/{key} changed since listed")
        stop = st.st_size if end is None else min(end, st.st_size)
        handle.seek(start)
        return _RangeReader(
            handle,
            max(0, stop - start),
            self._described(container, key, st),
            f"{self.site_name}: {container}/{key}",
        )

    def _receive(
        self, body: WriteBody, length: int, checksums: Mapping[str, str], what: str
    ) -> tuple[Path, str]:
        """Copy `length` bytes to a temporary file, verifying the given checksums."""
        tmp = self._tmp()
        md5, sha256 = hashlib.md5(), hashlib.sha256()
        received = 0
        with self._space(tmp):
            with tmp.open("wb") as out:
                for chunk in _chunks(body, length):
                    md5.update(chunk)
                    sha256.update(chunk)
                    out.write(chunk)
                    received += len(chunk)
            if received != length:
                raise ChecksumMismatch(
                    f"{self.site_name}: {what}: received {received} bytes, expected {length}"
                )
            for algo, digest in (("md5", md5), ("sha256", sha256)):
                expected = checksums.get(algo)
                if expected is not None and expected.lower() != digest.hexdigest():
                    raise ChecksumMismatch(f"{self.site_name}: {what}: {algo} does not match")
        return tmp, md5.hexdigest()

    def _install(
        self,
        container: str,
        key: str,
        tmp: Path,
        attrs: WriteAttrs,
        checksums: Mapping[str, str],
        expect: str | None = None,
    ) -> WriteResult:
        """Put the received file `tmp` in place as the object, with its attributes beside it;
        `tmp` is removed if that fails (a full disk, a condition failed)."""
        with self._space(tmp):
            return self._put_in_place(container, key, tmp, attrs, checksums, expect)

    def _put_in_place(
        self,
        container: str,
        key: str,
        tmp: Path,
        attrs: WriteAttrs,
        checksums: Mapping[str, str],
        expect: str | None,
    ) -> WriteResult:
        path = self._path(container, key)
        self._require_container(container)
        if expect is not None:
            self._check_expected(container, key, path, expect, tmp)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_dir():
                raise IsADirectoryError(str(path))
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            tmp.unlink(missing_ok=True)
            raise Unsupported(
                f"{self.site_name}: {container}/{key}: a key and a prefix of the same name "
                "cannot both be held in a local directory"
            ) from None
        meta = {
            # Attributes belong to these bytes only: a file rewritten by other means
            # gets a new ETag and its stale attributes are ignored.
            "etag": _etag(tmp.stat()),
            **_stored(attrs),
            "checksums": dict(checksums),
        }
        meta_path = self._meta_path(container, key)
        meta_path.parent.mkdir(parents=True, exist_ok=True)
        meta_tmp = self._tmp()
        with self._space(meta_tmp):
            meta_tmp.write_text(json.dumps(meta, sort_keys=True), encoding="utf-8")
            os.replace(meta_tmp, meta_path)
        os.replace(tmp, path)
        return WriteResult(etag=_etag(path.stat()), checksums=dict(checksums))

    def _check_expected(
        self, container: str, key: str, path: Path, expect: str, tmp: Path | None
    ) -> None:
        """A write's condition, checked just before its file is put in place (a writer
        acting in between is not seen: a directory offers no conditional rename)."""
        try:
            current: str | None = _etag(path.stat()) if path.is_file() else None
        except FileNotFoundError:
            current = None
        if current == expect or (current is None and expect == ABSENT):
            return
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if expect == ABSENT:
            found = "an object"
        elif current is None:
            found = "no object any more"
        else:
            found = "another object than the one expected"
        raise PreconditionFailed(
            f"{self.site_name}: {container}/{key}: the key holds {found} (the write's "
            "condition failed); nothing was written"
        )

    @contextmanager
    def _space(self, *made: Path) -> Iterator[None]:
        """A write: a disk or quota full is the store's (StoreFull: the run stops, as for
        a store gone, instead of failing every object left one by one), and the files
        `made` for it are removed (they were left under .migrate-tmp)."""
        try:
            yield
        except BaseException as exc:
            for path in made:
                path.unlink(missing_ok=True)
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StoreFull(
                    f"{self.site_name}: {self.root}: no space left ({exc.strerror})",
                    hint="make room there (or raise the quota), then run the phase again: "
                    "what is copied is kept",
                ) from None
            raise

    def put_object(
        self,
        container: str,
        key: str,
        body: WriteBody,
        length: int,
        attrs: WriteAttrs,
        checksums: Mapping[str, str],
        *,
        expect: str | None = None,
    ) -> WriteResult:
        self._writable_path(container, key)  # refuse an impossible key before reading bytes
        self._require_container(container)
        tmp, md5 = self._receive(body, length, checksums, f"{container}/{key}")
        return self._install(container, key, tmp, attrs, {**checksums, "md5": md5}, expect)

    # -- multipart -----------------------------------------------------------------------

    def _upload_dir(self, container: str, upload_id: str) -> Path:
        if not upload_id.isalnum():
            raise NotFound(f"{self.site_name}: no upload {upload_id!r}")
        return self.root / _UPLOADS / container / upload_id

    def create_multipart(self, container: str, key: str, attrs: WriteAttrs) -> str:
        self._writable_path(container, key)
        self._require_container(container)
        upload_id = uuid.uuid4().hex
        udir = self._upload_dir(container, upload_id)
        udir.mkdir(parents=True)
        info = {
            "key": key,
            "initiated": datetime.now(UTC).isoformat(),
            **_stored(attrs),
        }
        (udir / "upload.json").write_text(json.dumps(info), encoding="utf-8")
        return upload_id

    def _upload_info(self, container: str, key: str, upload_id: str) -> dict[str, object]:
        udir = self._upload_dir(container, upload_id)
        try:
            info = json.loads((udir / "upload.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NotFound(f"{self.site_name}: upload {upload_id} of {key!r} not found") from None
        if not isinstance(info, dict) or info.get("key") != key:
            raise NotFound(f"{self.site_name}: upload {upload_id} is not for {key!r}")
        return info

    def upload_part(
        self,
        container: str,
        key: str,
        upload_id: str,
        part_number: int,
        body: WriteBody,
        length: int,
        checksums: Mapping[str, str],
    ) -> PartResult:
        self._upload_info(container, key, upload_id)
        tmp, md5 = self._receive(body, length, checksums, f"{container}/{key} part {part_number}")
        with self._space(tmp):
            os.replace(tmp, self._upload_dir(container, upload_id) / f"{part_number:05d}")
        return PartResult(
            part_number=part_number, etag=md5, size=length, checksums={**checksums, "md5": md5}
        )

    def list_parts(self, container: str, key: str, upload_id: str) -> Iterator[PartResult]:
        self._upload_info(container, key, upload_id)
        udir = self._upload_dir(container, upload_id)
        for name in sorted(os.listdir(udir)):
            if not name.isdigit():
                continue
            md5 = hashlib.md5()
            with (udir / name).open("rb") as handle:
                while chunk := handle.read(_CHUNK):
                    md5.update(chunk)
            yield PartResult(
                part_number=int(name), etag=md5.hexdigest(), size=(udir / name).stat().st_size
            )

    def complete_multipart(
        self,
        container: str,
        key: str,
        upload_id: str,
        parts: Sequence[PartResult],
        attrs: WriteAttrs | None = None,  # set at create: S3 and this store keep them
        *,
        expect: str | None = None,
    ) -> WriteResult:
        if expect is not None:
            # First, as S3 does: a completion retried after its answer was lost finds the
            # object, not "no such upload".
            self._check_expected(container, key, self._path(container, key), expect, None)
        info = self._upload_info(container, key, upload_id)
        udir = self._upload_dir(container, upload_id)
        tmp = self._tmp()
        digests = b""
        with self._space(tmp), tmp.open("wb") as out:
            for part in sorted(parts, key=lambda p: p.part_number):
                source = udir / f"{part.part_number:05d}"
                if not source.exists():
                    raise NotFound(
                        f"{self.site_name}: part {part.part_number} of {key!r} was never uploaded"
                    )
                with source.open("rb") as handle:
                    shutil.copyfileobj(handle, out, _CHUNK)
                if part.etag:
                    digests += bytes.fromhex(part.etag)
        etag = f"{hashlib.md5(digests).hexdigest()}-{len(parts)}"
        attrs = WriteAttrs(
            content_type=_opt_str(info.get("content_type")),
            content_encoding=_opt_str(info.get("content_encoding")),
            cache_control=_opt_str(info.get("cache_control")),
            content_disposition=_opt_str(info.get("content_disposition")),
            content_language=_opt_str(info.get("content_language")),
            expires=_opt_str(info.get("expires")),
            metadata=_str_map(info.get("metadata")),
            tags=_str_map(info.get("tags")),
        )
        result = self._install(container, key, tmp, attrs, {"md5": etag}, expect)
        shutil.rmtree(udir, ignore_errors=True)
        return result

    def replace_metadata(
        self,
        container: str,
        key: str,
        attrs: WriteAttrs,
        *,
        if_match: str,
        size: int,
        version_id: str | None = None,  # no versions here
    ) -> WriteResult:
        """Rewrite the side file for the same bytes: the ETag (mtime and size) stays."""
        self._writable_path(container, key)
        info = self.head(container, key)
        if info.etag != if_match:
            raise SourceChanged(f"{self.site_name}: {container}/{key} changed (ETag differs)")
        meta = self._read_meta(container, key)
        meta["metadata"] = dict(attrs.metadata)  # the tags stay as they are
        meta_tmp = self._tmp()
        meta_tmp.write_text(json.dumps(meta, sort_keys=True), encoding="utf-8")
        os.replace(meta_tmp, self._meta_path(container, key))
        return WriteResult(etag=info.etag, checksums=dict(info.checksums))

    def abort_multipart(self, container: str, key: str, upload_id: str) -> None:
        shutil.rmtree(self._upload_dir(container, upload_id), ignore_errors=True)

    def list_multipart_uploads(self, container: str, prefix: str = "") -> Iterator[UploadInfo]:
        base = self.root / _UPLOADS / container
        if not base.is_dir():
            return
        for upload_id in sorted(os.listdir(base)):
            try:
                info = json.loads((base / upload_id / "upload.json").read_text("utf-8"))
            except (FileNotFoundError, ValueError):
                continue
            key = str(info.get("key", ""))
            if key.startswith(prefix):
                initiated = _opt_str(info.get("initiated"))
                yield UploadInfo(
                    container=container,
                    key=key,
                    upload_id=upload_id,
                    initiated=datetime.fromisoformat(initiated) if initiated else None,
                )

    def delete(self, container: str, key: str) -> None:
        path = self._path(container, key)
        path.unlink(missing_ok=True)
        if len(os.fsencode(path.name)) <= MAX_SEGMENT_BYTES:  # else no attributes' file
            self._meta_path(container, key).unlink(missing_ok=True)
        # Empty directories left behind would block a later object named like them.
        cdir = self._container_dir(container)
        parent = path.parent
        while parent != cdir and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent

    def replication(self, container: str) -> Replication:
        """A directory makes no copy elsewhere that migrate could see (a backup or a
        replicated filesystem underneath is the operator's to declare)."""
        return Replication(detail=f"{self.site_name}: a local directory, no replication")

    def protection(self, container: str) -> Protection:
        """A directory keeps one version of each file and no retention lock."""
        self._require_container(container)
        return Protection(detail=f"{self.site_name}: a local directory, one version per key")

    def close(self) -> None:
        pass


def _stored(attrs: WriteAttrs) -> dict[str, object]:
    """A write's attributes as the JSON beside the bytes (or an upload's) holds them."""
    headers: dict[str, object] = {name: getattr(attrs, name) for name in CARRIED_HEADERS}
    return {
        "content_type": attrs.content_type,
        **headers,
        "metadata": dict(attrs.metadata),
        "tags": dict(attrs.tags or {}),
    }


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _str_map(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}
