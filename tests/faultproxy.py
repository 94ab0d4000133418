"""A small HTTP proxy for tests, between a client and a real server on loopback, that can
flip a bit of request bodies or of GET answers, answer 503 SlowDown to a share of
requests, redirect, answer HEADs of given paths with an error (and count the HEADs at
once), answer multipart completions 409 ConditionalRequestConflict (after passing the
first few on and dropping their answers, if asked), or refuse connections for a while
before it listens. It serves as the endpoint (a reverse proxy) or as a site's declared
`proxy` (absolute request targets): either way, to its one upstream.

Requests pass unchanged otherwise (the Host header too, so SigV4 and shared-key signatures
still verify at the server). Bounded: it serves loopback only and stops with its context.
"""

from __future__ import annotations

import base64
import http.client
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from migrate.localservers import free_port

_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade",
        "proxy-authorization"}  # fmt: skip


@dataclass
class Faults:
    flip_bit_in_puts: int = 0  # how many PUT bodies to corrupt (one bit each)
    # How many GET answers' bodies to corrupt (one bit each), of paths ending with `gets_of`.
    flip_bit_in_gets: int = 0
    gets_of: str = ""
    slowdown_share: float = 0.0  # share of requests answered 503 SlowDown
    slowdown_first: int = 0  # the first this many requests answered 503 SlowDown
    redirect_to: str | None = None  # answer every request with a redirect here
    redirect_status: int = 307
    head_status: dict[str, int] = field(default_factory=dict)  # path suffix -> HEAD's answer
    head_delay: float = 0.0  # seconds each HEAD is held before it goes on
    proxy_auth: str | None = None  # "user:password" a forward request must present, else 407
    # The first this many multipart completions answered 409 ConditionalRequestConflict, as
    # AWS answers one that raced another write of the key (not passed on).
    conflict_completions: int = 0
    # The first this many multipart completions passed on, their answers dropped (the
    # connection closed): the store completed the upload, the client never heard.
    lose_completions: int = 0
    # An outage: once this many PUTs have passed, the store goes away (connections under
    # way dropped, new ones refused) for `down_for` seconds, then answers again.
    down_after_puts: int = 0
    down_for: float = 0.0
    # A store that hangs: once this many PUTs have passed, every request is held, never
    # answered (the connection stays open), until the proxy stops.
    hang_after_puts: int = 0
    hung: bool = False
    # A store that answers, then stalls: GET answers with more bytes than this get their
    # headers and first 64 KiB, then nothing more (the connection held) until the proxy
    # stops. 0: off.
    stall_bodies_over: int = 0
    stalled: int = 0
    released: threading.Event = field(default_factory=threading.Event)
    seed: int = 7
    # What happened, for assertions.
    requests: int = 0
    corrupted: int = 0
    answers_corrupted: int = 0  # GET answers
    throttled: int = 0
    redirected: int = 0
    heads_in_flight: int = 0
    most_heads_at_once: int = 0
    listings: int = 0  # ListObjectsV2 requests (list-type=2)
    forwarded: int = 0  # requests that came as to a forward proxy (an absolute URL)
    refused_auth: int = 0  # of those, answered 407 for want of the proxy's credentials
    puts: int = 0
    down: bool = False
    completions_refused: int = 0
    completions_lost: int = 0
    # (uploadId, partNumber) -> parts the server accepted (200): a resent part counts twice.
    parts_accepted: dict[tuple[str, str], int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def roll(self) -> float:
        with self.lock:
            return self._rng.random()

    def corrupts(self, *, answer: bool) -> bool:
        """Whether the next PUT body (a GET answer's, `answer`) is to have a bit flipped:
        counted as one of those asked for."""
        with self.lock:
            if answer and self.answers_corrupted < self.flip_bit_in_gets:
                self.answers_corrupted += 1
                return True
            if not answer and self.corrupted < self.flip_bit_in_puts:
                self.corrupted += 1
                return True
            return False


def _flip_bit(data: bytes) -> bytes:
    mutable = bytearray(data)
    mutable[len(mutable) // 2] ^= 0x01
    return bytes(mutable)


@dataclass(frozen=True)
class Proxy:
    endpoint: str
    faults: Faults


@contextmanager
def fault_proxy(
    upstream: str, faults: Faults | None = None, *, listen_after: float | threading.Event = 0.0
) -> Iterator[Proxy]:
    """A proxy to `upstream` that injects `faults`. With `listen_after`, its port refuses
    connections for that many seconds first, or until that event is set (a store
    restarting)."""
    faults = faults or Faults()
    target = urlsplit(upstream)
    up_host, up_port = target.hostname or "127.0.0.1", target.port or 80

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _send_error(self, status: int, code: str, message: str) -> None:
            payload = (
                '<?xml version="1.0" encoding="UTF-8"?>'
                f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
            ).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _handle(self) -> None:
            if self.path.startswith(("http://", "https://")):  # used as a forward proxy
                parts = urlsplit(self.path)
                self.path = parts.path + (f"?{parts.query}" if parts.query else "")
                with faults.lock:
                    faults.forwarded += 1
                if faults.proxy_auth is not None:
                    token = base64.b64encode(faults.proxy_auth.encode()).decode()
                    if self.headers.get("Proxy-Authorization") != f"Basic {token}":
                        with faults.lock:
                            faults.refused_auth += 1
                        length = int(self.headers.get("Content-Length") or 0)
                        self.rfile.read(length)
                        self.send_response(407)
                        self.send_header("Proxy-Authenticate", 'Basic realm="egress"')
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with faults.lock:
                if self.command == "PUT":
                    faults.puts += 1
                    if faults.puts == faults.down_after_puts:
                        faults.down = True
                        threading.Thread(target=outage, daemon=True).start()
                    if faults.puts == faults.hang_after_puts:
                        faults.hung = True
            if faults.hung:  # held, unanswered, as by a store that stopped (SIGSTOP)
                faults.released.wait()
                self.close_connection = True
                return
            with faults.lock:
                if faults.down:  # no answer: the connection closed, as by a store gone
                    self.close_connection = True
                    return
                faults.requests += 1
                if self.command == "GET" and "list-type=2" in urlsplit(self.path).query:
                    faults.listings += 1
            if faults.redirect_to is not None:
                with faults.lock:
                    faults.redirected += 1
                self.send_response(faults.redirect_status)
                self.send_header("Location", faults.redirect_to.rstrip("/") + self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            with faults.lock:
                first = faults.requests <= faults.slowdown_first
            if first or (faults.slowdown_share and faults.roll() < faults.slowdown_share):
                with faults.lock:
                    faults.throttled += 1
                self._send_error(503, "SlowDown", "Please reduce your request rate.")
                return
            lose = False
            if self.command == "POST" and "uploadId=" in urlsplit(self.path).query:
                with faults.lock:
                    lose = faults.completions_lost < faults.lose_completions
                    faults.completions_lost += lose
                    refuse = not lose and faults.completions_refused < faults.conflict_completions
                    faults.completions_refused += refuse
                if refuse:
                    self._send_error(
                        409, "ConditionalRequestConflict", "A conflicting operation occurred."
                    )
                    return
            if self.command == "HEAD":
                status = next(
                    (code for end, code in faults.head_status.items() if self.path.endswith(end)),
                    None,
                )
                if status is not None:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                with faults.lock:
                    faults.heads_in_flight += 1
                    faults.most_heads_at_once = max(
                        faults.most_heads_at_once, faults.heads_in_flight
                    )
                time.sleep(faults.head_delay)
                with faults.lock:
                    faults.heads_in_flight -= 1
            if self.command == "PUT" and body and faults.corrupts(answer=False):
                body = _flip_bit(body)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
            conn = http.client.HTTPConnection(up_host, up_port, timeout=60)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            finally:
                conn.close()
            if lose:  # stored upstream; the client hears nothing back
                self.close_connection = True
                return
            query = parse_qs(urlsplit(self.path).query)
            if self.command == "PUT" and resp.status == 200 and "partNumber" in query:
                part = (query.get("uploadId", [""])[0], query["partNumber"][0])
                with faults.lock:
                    faults.parts_accepted[part] = faults.parts_accepted.get(part, 0) + 1
            self.send_response(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() not in _HOP and k.lower() != "content-length":
                    self.send_header(k, v)
            # A HEAD answer's length is the object's (its body is empty).
            length_of = resp.getheader("Content-Length", "0") if self.command == "HEAD" else None
            self.send_header("Content-Length", length_of or str(len(data)))
            self.end_headers()
            if (
                self.command == "GET"
                and faults.stall_bodies_over
                and len(data) > max(faults.stall_bodies_over, 65536)
            ):
                with faults.lock:
                    faults.stalled += 1
                self.wfile.write(data[:65536])
                self.wfile.flush()
                faults.released.wait()
                self.close_connection = True
                return
            asked = self.path.split("?")[0]
            # Counted only for the answers it is asked of (`and` asks it last).
            if (
                self.command == "GET"
                and data
                and asked.endswith(faults.gets_of)
                and faults.corrupts(answer=True)
            ):
                data = _flip_bit(data)
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    port = free_port()
    servers: list[ThreadingHTTPServer] = []
    serving = threading.Lock()  # held while a server is being stopped or started

    def serve(after: float | threading.Event) -> None:
        if isinstance(after, threading.Event):
            after.wait()
        else:
            time.sleep(after)
        with serving:
            server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
            server.daemon_threads = True
            servers.append(server)
        server.serve_forever()

    def outage() -> None:
        with serving:
            servers[-1].shutdown()
            servers[-1].server_close()  # the port refuses connections
            servers.pop()
        if faults.down_for != float("inf"):
            time.sleep(faults.down_for)
            with faults.lock:
                faults.down = False
            serve(0.0)

    thread = threading.Thread(target=serve, args=(listen_after,), daemon=True)
    thread.start()
    if not listen_after:
        wait_until(lambda: bool(servers))
    try:
        yield Proxy(f"http://127.0.0.1:{port}", faults)
    finally:
        faults.released.set()
        if not faults.down_after_puts:
            wait_until(lambda: bool(servers))
        with serving:
            for server in servers:
                server.shutdown()
                server.server_close()


def wait_until(ready: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError("the fault proxy did not start")
        time.sleep(0.01)
