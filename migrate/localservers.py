"""Real local stores on 127.0.0.1, with authentication enforced: SeaweedFS (S3 side) and
Azurite (Azure Blob side). Tests use them as fixtures, the demo and the benchmarks too.

Both listen on loopback only, on free ports, with data under a directory the caller owns.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from migrate.errors import ConfigError, EndpointUnreachable

# Azurite's development account: its key is public in Azure's documentation.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports: held bound together until all are read (one at a time,
    a port closed could be given again: two of a server's ports alike, and it exits)."""
    held: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(s)
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in held]
    finally:
        for s in held:
            s.close()


def wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EndpointUnreachable(f"{what} exited with code {proc.returncode} at start")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise EndpointUnreachable(f"{what} did not answer on 127.0.0.1:{port} in {timeout:.0f} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def stop_left_behind(under: Path) -> int:
    """Stop the servers this module started with their data under `under` whose starter
    was killed without stopping them (kill -9): this user's `weed mini -dir=...` and
    `azurite-blob --location ...` there, nothing else. Returns how many. Linux only (its
    /proc); elsewhere, none. Each is held by a pidfd from the moment it is matched, so a
    pid reused meanwhile is never signalled."""
    root = under.resolve()
    held: list[int] = []  # pidfds
    try:
        for entry in Path("/proc").glob("[0-9]*"):
            pid = int(entry.name)
            if pid == os.getpid():
                continue
            try:
                fd = os.pidfd_open(pid)
            except (OSError, AttributeError):  # gone, or no pidfds here: not signalled
                continue
            try:  # read after the pidfd is open: of the process it holds
                mine = entry.stat().st_uid == os.getuid()
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                os.close(fd)
                continue
            if mine and _serves_under(argv, root):
                held.append(fd)
            else:
                os.close(fd)
        for fd in held:
            with contextlib.suppress(OSError):  # gone, or not ours to signal after all
                signal.pidfd_send_signal(fd, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for fd in held:
            # A pidfd reads ready once its process has ended (a zombie no one reaps too).
            ended, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ended:
                with contextlib.suppress(OSError):
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
        return len(held)
    finally:
        for fd in held:
            os.close(fd)


def _serves_under(argv: list[bytes], root: Path) -> bool:
    """Whether a command line is one of this module's servers, its data under `root`."""
    args = [a.decode(errors="replace") for a in argv]
    data: list[str] = []
    if "mini" in args:  # weed mini -dir=DATA
        data += [a.removeprefix("-dir=") for a in args if a.startswith("-dir=")]
    if "--location" in args[:-1]:  # azurite-blob ... --location DATA
        data.append(args[args.index("--location") + 1])
    return any(d and Path(d).is_absolute() and Path(d).resolve().is_relative_to(root) for d in data)


def _alive(pid: int) -> bool:
    """Running: not gone, nor a zombie no one reaps (a container's init may not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _find_tool(name: str, env_var: str, candidates: list[Path]) -> str:
    explicit = os.environ.get(env_var)
    if explicit:
        return explicit
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise ConfigError(
        f"{name} not found",
        hint=f"run 'make install' (it installs {name} into the project) or set {env_var}",
    )


@dataclass(frozen=True)
class SeaweedFS:
    """A running SeaweedFS with one S3 identity (Admin) and one read-only identity."""

    endpoint: str
    access_key: str
    secret_key: str
    readonly_access_key: str
    readonly_secret_key: str
    data_dir: Path
    port: int


@dataclass(frozen=True)
class Azurite:
    endpoint: str  # http://127.0.0.1:PORT/devstoreaccount1
    account: str
    key: str
    data_dir: Path
    port: int

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account};"
            f"AccountKey={self.key};BlobEndpoint={self.endpoint};"
        )


@contextmanager
def seaweedfs(
    data_dir: Path, access_key: str = "migrate-admin", secret_key: str = "migrate-admin-secret-0001"
) -> Iterator[SeaweedFS]:
    """Start `weed mini` on loopback with S3 authentication enforced; stop it on exit."""
    weed = _find_tool("weed", "MIGRATE_WEED", [Path(sys.executable).parent / "weed"])
    data_dir.mkdir(parents=True, exist_ok=True)
    ro_key, ro_secret = "migrate-readonly", "migrate-readonly-secret-0001"
    identities = {
        "identities": [
            {
                "name": "admin",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            },
            {
                "name": "readonly",
                "credentials": [{"accessKey": ro_key, "secretKey": ro_secret}],
                "actions": ["Read", "List"],
            },
        ]
    }
    config = data_dir / "s3.json"
    # Its keys are secrets, as demo.env's: readable by the user alone.
    if config.exists():
        config.unlink()
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(identities))
    names = (
        "master.port",
        "master.port.grpc",
        "volume.port",
        "volume.port.grpc",
        "filer.port",
        "filer.port.grpc",
        "s3.port",
        "s3.port.grpc",
        "admin.port",
        "admin.port.grpc",
    )
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    args = [
        weed,
        "mini",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-s3.config={config}",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        # Each bucket is a collection with volumes of its own: the default (free disk /
        # volume size, 72 here) runs out after ~75 buckets, and every PUT then fails.
        "-volume.max=3000",
        "-s3.port.lance=0",
        *(f"-{name}={port}" for name, port in ports.items()),
    ]
    log = (data_dir / "weed.log").open("wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=data_dir)
    try:
        wait_for_port(ports["s3.port"], proc, "SeaweedFS", timeout=60)
        server = SeaweedFS(
            endpoint=f"http://127.0.0.1:{ports['s3.port']}",
            access_key=access_key,
            secret_key=secret_key,
            readonly_access_key=ro_key,
            readonly_secret_key=ro_secret,
            data_dir=data_dir,
            port=ports["s3.port"],
        )
        _wait_s3_ready(server)
        yield server
    finally:
        _stop(proc)
        log.close()


def _wait_s3_ready(server: SeaweedFS, timeout: float = 60) -> None:
    """The port opens before the filer behind it answers: wait for a real S3 answer."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5),
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.list_buckets()
            return
        except (BotoCoreError, ClientError):
            if time.monotonic() > deadline:
                raise EndpointUnreachable("SeaweedFS S3 did not become ready") from None
            time.sleep(0.2)


@contextmanager
def azurite(data_dir: Path) -> Iterator[Azurite]:
    """Start Azurite's blob service on loopback (shared-key auth enforced); stop it on exit."""
    binary = _find_tool(
        "azurite-blob",
        "MIGRATE_AZURITE",
        [PROJECT_ROOT / "tools" / "azurite" / "node_modules" / ".bin" / "azurite-blob"],
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    args = [
        binary,
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        str(port),
        "--location",
        str(data_dir),
        "--skipApiVersionCheck",
        "--disableTelemetry",
        "--silent",
    ]
    log = (data_dir / "azurite.log").open("wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=data_dir)
    try:
        wait_for_port(port, proc, "Azurite", timeout=60)
        yield Azurite(
            endpoint=f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}",
            account=AZURITE_ACCOUNT,
            key=AZURITE_KEY,
            data_dir=data_dir,
            port=port,
        )
    finally:
        _stop(proc)
        log.close()
