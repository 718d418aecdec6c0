"""A hostile stand-in for the CPH API on loopback: it answers well until told to redirect,
drip, flood, inflate or echo secrets. Shared by the hostile-API tests; run as a script
(`python -m tests.helpers.hostile_api MODE_FILE`) it serves in its own process, so that memory
measurements of an exporter are not mixed up with the stand-in's."""

from __future__ import annotations

import json
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

from cph_exporter.simulator import generate_fleet
from cph_exporter.simulator.fleet import list_entry

SERVERS = generate_fleet(20)
BOMB_SIZE = 1 << 30  # a gzip body inflating to 1 GiB
_BLOCK = 1 << 16


def page(servers: list[dict[str, Any]]) -> bytes:
    entries = [list_entry(s) for s in servers]
    return json.dumps({"request_id": "r1", "count": len(entries), "servers": entries}).encode()


@cache
def gzip_bomb() -> bytes:
    """About 1 MB of gzip that inflates to BOMB_SIZE zero bytes."""
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    zeros = bytes(1 << 20)
    out = [packer.compress(b'{"servers": "') for _ in range(1)]
    out += [packer.compress(zeros) for _ in range(BOMB_SIZE >> 20)]
    out.append(packer.compress(b'"}') + packer.flush())
    return b"".join(out)


def endless_servers() -> Iterator[bytes]:
    """One page of servers that never ends: a million and more entries."""
    entry = json.dumps(list_entry(SERVERS[0])).encode()
    yield b'{"count": 1000000, "servers": ['
    n = 0
    while True:
        yield entry.replace(SERVERS[0]["server_id"].encode(), f"s-{n:012d}".encode()) + b","
        n += 1


class Hostile(BaseHTTPRequestHandler):
    """Mode `ok` serves SERVERS; the other modes misbehave on every call."""

    protocol_version = "HTTP/1.1"
    mode: ClassVar[str] = "ok"
    mode_file: ClassVar[Path | None] = None
    location: ClassVar[str] = ""  # where `redirect` points
    echo: ClassVar[str] = ""  # what `echo` puts in error_msg
    seen: ClassVar[list[dict[str, str]]] = []  # the headers of every request
    stop: ClassVar[threading.Event] = threading.Event()

    def current_mode(self) -> str:
        if self.mode_file is not None:
            return self.mode_file.read_text().strip() or "ok"
        return self.mode

    def do_GET(self) -> None:
        type(self).seen.append(dict(self.headers.items()))
        mode = self.current_mode()
        path = self.path.split("?")[0]
        if mode == "redirect":
            self.send(302, b"", ("Location", self.location + self.path))
        elif mode == "echo":
            body = json.dumps({"error_code": "APIGW.0301", "error_msg": self.echo}).encode()
            self.send(401, body)
        elif mode == "huge":  # says 2 GB up front
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(2 << 30))
            self.end_headers()
            self.stream(iter(lambda: b" " * _BLOCK, b""))
        elif mode == "bomb":
            self.send(200, gzip_bomb(), ("Content-Encoding", "gzip"))
        elif mode == "endless":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.stream(endless_servers(), chunked=True)
        elif mode == "drip":  # a valid head, then one byte a second
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            self.stream(iter(lambda: b" ", b""), pause=1.0)
        elif mode == "drip-head":  # the head itself, one byte a second
            self.stream(iter(lambda: b"X", b""), pause=1.0, head=b"HTTP/1.1 200 OK\r\nX-A: ")
        elif path.endswith("/phones"):
            self.send(200, b'{"count": 0, "phones": []}')
        elif path.endswith("/servers"):
            self.send(200, page(SERVERS))
        else:
            wanted = path.rsplit("/", 1)[1]
            found = [s for s in SERVERS if s["server_id"] == wanted]
            self.send(200 if found else 404, json.dumps(found[0] if found else {}).encode())

    def do_PUT(self) -> None:  # the metadata service's token
        if self.current_mode() == "redirect":
            self.send(307, b"", ("Location", self.location + self.path))
        else:
            self.send(404, b"")

    def send(self, status: int, body: bytes, *headers: tuple[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def stream(
        self, blocks: Iterator[bytes], chunked: bool = False, pause: float = 0.0, head: bytes = b""
    ) -> None:
        """Write until the client goes away (or the stand-in stops)."""
        self.close_connection = True
        try:
            if head:
                self.wfile.write(head)
            for block in blocks:
                if self.stop.is_set():
                    return
                self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block) if chunked else block)
                if pause:
                    self.wfile.flush()
                    if self.stop.wait(pause):
                        return
        except OSError:
            return

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main(mode_file: str, port_file: str) -> None:
    Hostile.mode_file = Path(mode_file)
    gzip_bomb()  # compressed before serving, not while the exporter waits
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    Path(port_file).write_text(str(server.server_address[1]))
    try:
        server.serve_forever(0.05)
    finally:
        Hostile.stop.set()
        time.sleep(0.1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
