"""Reading a request as a hostile client may send it: bounded in size and in time.

The standard handler reads the request line and up to 100 header lines of 64 KiB each,
each read waiting as long as the client likes. Here the whole head (request line and
headers) is capped at `MAX_HEAD_BYTES` (431 past it) and must arrive within the server's
`read_timeout`, measured from the moment the handler starts waiting for it (so an idle
keep-alive connection and a client dripping its headers are closed alike). HTTP/0.9
requests are refused. A request with a body (the exporter takes none) has a small body read
and thrown away, or the connection closed after the answer, so that no second request
hidden in a body is ever answered.
"""

from __future__ import annotations

import io
import socket
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler

MAX_HEAD_BYTES = 64 * 1024
DEFAULT_READ_TIMEOUT = 30.0
# At most this much of a body is read and discarded; past it the connection is closed.
_MAX_DRAINED_BODY = 64 * 1024
_LINGER_BYTES = 256 * 1024
_LINGER_SECONDS = 1.0


class _HeadTooLarge(Exception):
    pass


class BoundedRequestHandler(BaseHTTPRequestHandler):
    """A BaseHTTPRequestHandler whose reading of the head is bounded in size and time."""

    max_head_bytes = MAX_HEAD_BYTES
    _said_close = False

    def read_timeout(self) -> float:
        return float(getattr(self.server, "read_timeout", DEFAULT_READ_TIMEOUT))

    def setup(self) -> None:
        super().setup()
        # Also bounds every write: a client that stops reading its answer is let go.
        self.connection.settimeout(self.read_timeout())

    def handle_one_request(self) -> None:
        self.command, self.request_version, self.requestline = None, "HTTP/1.1", ""  # type: ignore[assignment]
        self._said_close = False
        try:
            head = self._read_head()
        except _HeadTooLarge:
            self._refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Request head too large")
            return
        except TimeoutError:
            self.close_connection = True  # idle or too slow: closed without a word
            return
        if not head:
            self.close_connection = True
            return
        first, _, rest = head.partition(b"\n")
        if len(first.split()) == 2:  # "GET /path": HTTP/0.9, which has no status line
            self._refuse(HTTPStatus.BAD_REQUEST, "HTTP/0.9 is not supported")
            return
        self.raw_requestline = first + b"\n"
        socket_file, self.rfile = self.rfile, io.BytesIO(rest)
        try:
            parsed = self.parse_request()
        finally:
            self.rfile = socket_file
        if not parsed:
            return
        if not self._skip_body():
            return
        server_busy = getattr(self.server, "busy", False)
        if server_busy:  # others wait for this thread: no keep-alive now
            self.close_connection = True
        method = getattr(self, "do_" + self.command, None)
        if method is None:
            self.send_error(HTTPStatus.NOT_IMPLEMENTED, f"Unsupported method ({self.command!r})")
            return
        method()
        self.wfile.flush()

    def _read_head(self) -> bytes:
        """The request line and headers up to the blank line, without reading past it."""
        deadline = time.monotonic() + self.read_timeout()
        head = bytearray()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("request head not received in time")
            self.connection.settimeout(remaining)
            buffered = self.rfile.peek(1)  # type: ignore[attr-defined]  # one read at most
            if not buffered:
                return b""  # closed, perhaps mid-head: nothing to answer
            end = buffered.find(b"\n")
            line_ends = end >= 0
            head += self.rfile.read(end + 1 if line_ends else len(buffered))
            if len(head) > self.max_head_bytes:
                raise _HeadTooLarge
            if not line_ends:
                continue
            if head.endswith((b"\n\r\n", b"\n\n")) or bytes(head) in (b"\r\n", b"\n"):
                break
            if head.count(b"\n") == 1 and len(head.split()) == 2:
                break  # HTTP/0.9 sends no headers: refused at once, not after the timeout
        self.connection.settimeout(self.read_timeout())
        return bytes(head)

    def _skip_body(self) -> bool:
        """Read and drop a small body; else answer and close. False when already answered."""
        lengths = self.headers.get_all("Content-Length") or []
        if self.headers.get_all("Transfer-Encoding"):
            self.close_connection = True  # a chunked body is never read: the connection ends
            return True
        if not lengths:
            return True
        if len(set(lengths)) != 1 or not lengths[0].strip().isdigit():
            self._refuse(HTTPStatus.BAD_REQUEST, "Bad Content-Length")
            return False
        length = int(lengths[0])
        if length > _MAX_DRAINED_BODY:
            self.close_connection = True
            return True
        try:
            drained = self.rfile.read(length)
        except TimeoutError:
            drained = b""
        if len(drained) != length:
            self.close_connection = True
        return True

    def _refuse(self, status: HTTPStatus, message: str) -> None:
        """Answer an error and close, giving the client time to read it before the close."""
        self.close_connection = True
        try:
            self.send_error(status, message)
            self.wfile.flush()
            self._linger()
        except OSError:
            pass

    def _linger(self) -> None:
        # Closing with unread input makes the kernel reset the connection, which may discard
        # the answer on its way: stop writing, read a little, then let it close.
        self.connection.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + _LINGER_SECONDS
        received = 0
        while received < _LINGER_BYTES and (remaining := deadline - time.monotonic()) > 0:
            self.connection.settimeout(remaining)
            try:
                chunk = self.connection.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            received += len(chunk)

    def send_header(self, keyword: str, value: str) -> None:
        if keyword.lower() == "connection":
            self._said_close = True
        super().send_header(keyword, value)

    def end_headers(self) -> None:
        if self.close_connection and not self._said_close and self.request_version != "HTTP/0.9":
            self.send_header("Connection", "close")
        super().end_headers()
