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
- the path as given (libcurl would remove "." and ".." segments: not what was signed);
- an answer is held in memory up to a bound (the range asked, or 1 MiB for a PUT's
  answer, and room for an error document): a longer one ends the exchange, and its read
  fails as a broken connection's, after the caller's checks of its status and headers;
- nothing of a request stays with the handle after it (options, callbacks, body);
- a failure raises the urllib3 exception it stands for, so the lean paths' connect retry,
  route records and error mapping treat both transports alike.
The caller checks every request with the RequestGuard before it is sent and records it
after, as for urllib3.
"""

from __future__ import annotations

import contextlib
import errno
import threading
import weakref
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
_HANDSHAKE = 35  # also a connection cut during the handshake (OS_ERRNO says so)
# OS_ERRNO may also be left over from a refused address tried before (dual stack): only
# these say the connection was cut.
_CUT_OFF = {errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE}
_TLS = {35, 53, 54, 58, 59, 60, 64, 66, 77, 80, 82, 83, 90, 91, 98}


class CurlAnswer:
    """An answer held whole, read as the lean paths read urllib3's responses."""

    def __init__(
        self, status: int, headers: urllib3.HTTPHeaderDict, data: bytes, *, cut: bool = False
    ) -> None:
        self.status = status
        self.headers = headers
        self.data = data
        self._at = 0
        self._cut = cut  # longer than the bound: its body is not here

    @property
    def length_remaining(self) -> int:
        return len(self.data) - self._at

    def read(self, size: int | None = None) -> bytes:
        if self._cut:
            raise urllib3.exceptions.ProtocolError("an answer longer than asked")
        end = len(self.data) if size is None or size < 0 else min(len(self.data), self._at + size)
        out = self.data[self._at : end]
        self._at = end
        return out

    def close(self) -> None:
        self._at = len(self.data)

    def release_conn(self) -> None:
        """The connection stays with the thread's handle: nothing to give back."""


class CurlSender:
    """One libcurl handle per thread (its own kept-alive connections), for one endpoint's
    requests. Thread-safe. A handle is closed when its thread is gone, or by `close`; a
    request after `close` fails as one on a closed urllib3 pool does."""

    def __init__(self, ca_bundle: str | None, connect_timeout: float, read_timeout: float) -> None:
        self._ca_bundle = ca_bundle
        self._connect_ms = max(1, int(connect_timeout * 1000))
        self._read_s = max(1, int(read_timeout + 0.999))
        self._local = threading.local()
        self._handles: set[pycurl.Curl] = set()
        self._finalizers: list[weakref.finalize[Any, Any]] = []
        self._lock = threading.Lock()
        self._closed = False

    def close(self) -> None:
        with self._lock:
            self._closed = True
            handles, self._handles = self._handles, set()
            finalizers, self._finalizers = self._finalizers, []
        for finalizer in finalizers:
            finalizer.detach()  # nothing left for it to close; it holds the handle no more
        for handle in handles:
            _close(handle)

    def _handle(self) -> pycurl.Curl:
        handle: pycurl.Curl | None = getattr(self._local, "handle", None)
        if handle is not None and handle in self._handles:
            return handle
        import pycurl  # here, not at start-up: a command that copies nothing never loads it

        with self._lock:
            if self._closed:
                raise _closed_error()
            handle = pycurl.Curl()
            self._handles.add(handle)
            # When the thread is gone, its handle (and connections) go too. The finalizer
            # holds the sender weakly: it keeps no sender alive.
            self._finalizers.append(
                weakref.finalize(
                    threading.current_thread(), _thread_gone, weakref.ref(self), handle
                )
            )
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
        """Send one request; the answer whole (at most `answer_limit` bytes of body, and
        room for an error document). A GET answered with more is returned without its body,
        whose read fails: the caller's checks of the range (a 200 for a range) still see
        the answer's status and headers."""
        import pycurl

        lines = []
        for name, value in headers.items():
            if "\r" in value or "\n" in value:  # as http.client refuses them
                raise ValueError(f"the value of header {name} holds a line break")
            # "Name;" is libcurl's way to send an empty value ("Name:" would unset it).
            lines.append(f"{name}: {value}" if value.strip() else f"{name};")
        # Only the headers given: libcurl's own Accept, Expect and form Content-Type unset.
        given = {name.lower() for name in headers}
        lines += [
            f"{name}:" for name in ("Accept", "Expect", "Content-Type") if name.lower() not in given
        ]
        received: list[bytes] = []
        held = 0
        limit = max(answer_limit, _ERROR_ROOM)
        header_lines: list[bytes] = []

        def take(chunk: bytes) -> int | None:
            nonlocal held
            held += len(chunk)
            if held > limit:
                return 0  # libcurl ends the exchange (a write error)
            received.append(chunk)
            return None

        c = self._handle()
        try:
            c.setopt(pycurl.NOSIGNAL, 1)  # threads: no SIGALRM for timeouts
            c.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
            c.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
            c.setopt(pycurl.PROXY, "")
            c.setopt(pycurl.PATH_AS_IS, 1)  # the path as signed: no "." or ".." removed
            c.setopt(pycurl.CONNECTTIMEOUT_MS, self._connect_ms)
            c.setopt(pycurl.LOW_SPEED_LIMIT, 1)
            c.setopt(pycurl.LOW_SPEED_TIME, self._read_s)
            if self._ca_bundle:
                c.setopt(pycurl.CAINFO, self._ca_bundle)
            c.setopt(pycurl.URL, url)
            c.setopt(pycurl.HTTPHEADER, lines)
            if method == "GET":
                c.setopt(pycurl.HTTPGET, 1)
            else:
                c.setopt(pycurl.CUSTOMREQUEST, method)
                c.setopt(pycurl.POSTFIELDS, bytes(body))
            c.setopt(pycurl.WRITEFUNCTION, take)
            c.setopt(pycurl.HEADERFUNCTION, header_lines.append)
            cut = False
            try:
                c.perform()
            except pycurl.error as exc:
                cut = held > limit and method == "GET"
                if not cut:
                    raise _urllib3_error(c, exc, url, held > limit) from None
            status = int(c.getinfo(pycurl.RESPONSE_CODE))
        except pycurl.error:  # the handle itself failed: closed under the request by `close`
            raise (
                _closed_error()
                if self._closed
                else urllib3.exceptions.ProtocolError("the connection's handle failed")
            ) from None
        finally:
            # No option, callback or body of this request stays with the handle (the
            # connection does).
            with contextlib.suppress(pycurl.error):
                c.reset()
        data = b"".join(received)
        received.clear()
        return CurlAnswer(status, _last_headers(header_lines), data, cut=cut)


def _closed_error() -> urllib3.exceptions.HTTPError:
    return urllib3.exceptions.ClosedPoolError(None, "the sender is closed")  # type: ignore[arg-type]


def _thread_gone(sender: weakref.ref[CurlSender], handle: pycurl.Curl) -> None:
    """A thread's finalizer: nothing uses its handle any more. No lock here: a finalizer
    may run on a thread that holds the sender's lock."""
    alive = sender()
    if alive is not None:
        alive._handles.discard(handle)
    _close(handle)


def _close(handle: pycurl.Curl) -> None:
    import pycurl

    with contextlib.suppress(pycurl.error):  # in use by a request under way: it ends in error
        handle.close()


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
        # Nothing of the request sent: the connection was never made (a kept-alive one
        # counts as made; libcurl's connect time is zero for it).
        if int(c.getinfo(pycurl.REQUEST_SIZE)) == 0:
            return urllib3.exceptions.ConnectTimeoutError(text)
        return urllib3.exceptions.ReadTimeoutError(None, url, text)  # type: ignore[arg-type]
    cut_off = code == _HANDSHAKE and int(c.getinfo(pycurl.OS_ERRNO)) in _CUT_OFF
    if code in _TLS and not cut_off:
        return urllib3.exceptions.SSLError(text)
    # A connection reset or cut (a reset during the TLS handshake included).
    return urllib3.exceptions.ProtocolError(text)
