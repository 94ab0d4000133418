"""Small requests of the lean paths through libcurl (pycurl): a PUT of at most
`SMALL_BODY` bytes, a GET of a range of at most as many.

Why: for 16 KiB objects the client's CPU is the limit on a small machine, and urllib3 over
http.client costs ~0.65 ms of CPU a request where libcurl, whose HTTP is C, costs ~0.3 ms
(`python -m bench.layers`): a small-object copy, a GET and a PUT, spends ~0.7 ms less.
Large bodies and streamed answers stay on urllib3, which sends a buffer without a copy,
waits for "100 Continue" and streams an answer into the caller's buffer.

The same guarantees as urllib3 on the lean paths:
- TLS verified against the same CA bundle (peer and host name), HTTP/1.1;
- no redirect followed, no proxy (an empty proxy: libcurl ignores the environment's),
  no answer decoded (a gzip-encoded object arrives as stored), no retry but libcurl's own
  reconnect of a kept-alive connection the server had closed before answering;
- the same connect timeout, and the read timeout as "no byte for that long";
- an answer is held in memory up to a bound (the range asked, or 1 MiB for a PUT's
  answer, and room for an error document): a longer one ends the exchange as a broken
  connection;
- a failure raises the urllib3 exception it stands for, so the lean paths' connect retry,
  route records and error mapping treat both transports alike.
The caller checks every request with the RequestGuard before it is sent and records it
after, as for urllib3.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import urllib3

if TYPE_CHECKING:
    import pycurl

# Requests at most this large (body sent, or range asked) go through libcurl.
SMALL_BODY = 1024 * 1024
# An answer may hold this much even where less was asked: an error document (412, 404).
_ERROR_ROOM = 64 * 1024
# libcurl's error codes (curl/curl.h), grouped by the urllib3 exception they stand for.
_NO_CONNECTION = {5, 6, 7}  # proxy or host not resolved, could not connect
_TIMED_OUT = 28
_TLS = {35, 53, 54, 58, 59, 60, 64, 66, 77, 80, 82, 83, 90, 91, 98}


class CurlAnswer:
    """An answer held whole, read as the lean paths read urllib3's responses."""

    def __init__(self, status: int, headers: urllib3.HTTPHeaderDict, data: bytes) -> None:
        self.status = status
        self.headers = headers
        self.data = data
        self._at = 0

    @property
    def length_remaining(self) -> int:
        return len(self.data) - self._at

    def read(self, size: int | None = None) -> bytes:
        end = len(self.data) if size is None or size < 0 else min(len(self.data), self._at + size)
        out = self.data[self._at : end]
        self._at = end
        return out

    def readinto(self, buffer: memoryview) -> int:
        out = self.read(len(buffer))
        buffer[: len(out)] = out
        return len(out)

    def close(self) -> None:
        self._at = len(self.data)

    def release_conn(self) -> None:
        """The connection stays with the thread's handle: nothing to give back."""


class CurlSender:
    """One libcurl handle per thread (its own kept-alive connections), for one endpoint's
    requests. Thread-safe; `close` closes every handle it made."""

    def __init__(self, ca_bundle: str | None, connect_timeout: float, read_timeout: float) -> None:
        self._ca_bundle = ca_bundle
        self._connect_ms = max(1, int(connect_timeout * 1000))
        self._read_s = max(1, int(read_timeout + 0.999))
        self._local = threading.local()
        self._handles: list[pycurl.Curl] = []
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            handles, self._handles = self._handles, []
        for handle in handles:
            handle.close()

    def _handle(self) -> pycurl.Curl:
        handle: pycurl.Curl | None = getattr(self._local, "handle", None)
        if handle is None:
            import pycurl  # here, not at start-up: a command that copies nothing never loads it

            handle = pycurl.Curl()
            with self._lock:
                self._handles.append(handle)
            self._local.handle = handle
        return handle

    def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | memoryview,
        answer_limit: int,
    ) -> CurlAnswer:
        """Send one request; the answer whole (at most `answer_limit` bytes of body)."""
        import pycurl

        c = self._handle()
        c.reset()  # no option of the last request carries over; connections are kept
        c.setopt(pycurl.NOSIGNAL, 1)  # threads: no SIGALRM for timeouts
        c.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        c.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
        c.setopt(pycurl.PROXY, "")
        c.setopt(pycurl.CONNECTTIMEOUT_MS, self._connect_ms)
        c.setopt(pycurl.LOW_SPEED_LIMIT, 1)
        c.setopt(pycurl.LOW_SPEED_TIME, self._read_s)
        if self._ca_bundle:
            c.setopt(pycurl.CAINFO, self._ca_bundle)
        c.setopt(pycurl.URL, url)
        # Only the headers given: libcurl's own Accept, Expect and form Content-Type unset.
        lines = [f"{name}: {value}" for name, value in headers.items()]
        given = {name.lower() for name in headers}
        lines += [
            f"{name}:" for name in ("Accept", "Expect", "Content-Type") if name.lower() not in given
        ]
        c.setopt(pycurl.HTTPHEADER, lines)
        if method == "GET":
            c.setopt(pycurl.HTTPGET, 1)
        else:
            c.setopt(pycurl.CUSTOMREQUEST, method)
            c.setopt(pycurl.POSTFIELDS, bytes(body))
        received: list[bytes] = []
        held = 0
        answer_limit = max(answer_limit, _ERROR_ROOM)
        header_lines: list[bytes] = []

        def take(chunk: bytes) -> int | None:
            nonlocal held
            held += len(chunk)
            if held > answer_limit:
                return 0  # libcurl ends the exchange (a write error)
            received.append(chunk)
            return None

        c.setopt(pycurl.WRITEFUNCTION, take)
        c.setopt(pycurl.HEADERFUNCTION, header_lines.append)
        try:
            c.perform()
        except pycurl.error as exc:
            raise _urllib3_error(c, exc, url, held > answer_limit) from None
        status = int(c.getinfo(pycurl.RESPONSE_CODE))
        return CurlAnswer(status, _last_headers(header_lines), b"".join(received))


def _last_headers(lines: list[bytes]) -> urllib3.HTTPHeaderDict:
    """The headers of the final answer (an interim 100 Continue's come first)."""
    headers = urllib3.HTTPHeaderDict()
    for raw in lines:
        line = raw.decode("latin-1").rstrip("\r\n")
        if line.startswith("HTTP/"):
            headers = urllib3.HTTPHeaderDict()
        elif ":" in line:
            name, _, value = line.partition(":")
            headers.add(name.strip(), value.strip())
    return headers


def _urllib3_error(
    c: pycurl.Curl, exc: Any, url: str, too_long: bool
) -> urllib3.exceptions.HTTPError:
    import pycurl

    code, message = (*exc.args, 0, "")[:2]
    text = f"libcurl error {code}: {message}"
    if too_long:
        return urllib3.exceptions.ProtocolError(f"{url}: an answer longer than asked")
    if code in _NO_CONNECTION:
        return urllib3.exceptions.NewConnectionError(None, text)  # type: ignore[arg-type]
    if code == _TIMED_OUT:
        if float(c.getinfo(pycurl.CONNECT_TIME)) == 0.0:  # never connected
            return urllib3.exceptions.ConnectTimeoutError(text)
        return urllib3.exceptions.ReadTimeoutError(None, url, text)  # type: ignore[arg-type]
    if code in _TLS:
        return urllib3.exceptions.SSLError(text)
    return urllib3.exceptions.ProtocolError(text)
