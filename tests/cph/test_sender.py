"""The client's lean sender against a raw loopback server: keep-alive reuse, answers cut short
and empty answers, which http.client (below urllib3's layers) leaves to the caller to notice."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
import requests

from cph_exporter.cph.transport import DEFAULT_MAX_RESPONSE_SIZE, ExchangeError, Sender
from cph_exporter.cph.transport import configure_session as configure

OK = b'{"ok": true}'


class RawServer:
    """Answers each request on a connection with the next scripted reply, as raw bytes."""

    def __init__(self, replies: list[tuple[bytes, bool]]) -> None:
        self.replies = replies
        self.connections = 0
        self.heads: list[bytes] = []
        self.hung_up = threading.Semaphore(0)  # released each time it closes a connection
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self._answer(conn)
        finally:
            conn.close()
            self.hung_up.release()

    def _answer(self, conn: socket.socket) -> None:
        buffer = b""
        while self.replies:
            while b"\r\n\r\n" not in buffer:
                data = conn.recv(65536)
                if not data:
                    return
                buffer += data
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            self.heads.append(head)
            data, close = self.replies.pop(0)
            conn.sendall(data)
            if close:
                return

    def close(self) -> None:
        self._sock.close()


def reply(body: bytes, length: int | None = None, close: bool = False) -> tuple[bytes, bool]:
    size = len(body) if length is None else length
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
    return head.encode() + body, close


@pytest.fixture
def servers() -> Iterator[list[RawServer]]:
    made: list[RawServer] = []
    yield made
    for server in made:
        server.close()


def start(servers: list[RawServer], replies: list[tuple[bytes, bool]]) -> tuple[Sender, str]:
    server = RawServer(replies)
    servers.append(server)
    session = configure(requests.Session(), server.url, True)
    return Sender(session, server.url), server.url


def get(sender: Sender, url: str, path: str = "/x") -> bytes:
    answer = sender.get(
        url + path, path, {"Host": url[7:]}, timeout=5, max_bytes=DEFAULT_MAX_RESPONSE_SIZE
    )
    assert answer.status == 200
    assert answer.headers.get("content-type") == "application/json"  # any case
    return answer.body


def test_answers_reuse_one_kept_alive_connection(
    servers: list[RawServer],
) -> None:
    lean, url = start(servers, [reply(OK), reply(b""), reply(OK)])
    assert [get(lean, url), get(lean, url), get(lean, url)] == [OK, b"", OK]
    server = servers[0]
    assert server.connections == 1  # the empty answer, too, was read to its end
    assert all(b"\r\nUser-Agent: cph-exporter" in head for head in server.heads)
    assert all(head.count(b"\r\nHost: ") == 1 for head in server.heads)


def test_an_answer_shorter_than_its_length_fails_and_the_next_one_reconnects(
    servers: list[RawServer],
) -> None:
    lean, url = start(servers, [reply(OK[:4], length=len(OK), close=True), reply(OK)])
    with pytest.raises(ExchangeError, match="connection closed without a complete answer"):
        get(lean, url)
    assert get(lean, url) == OK
    assert servers[0].connections == 2


def test_a_connection_the_server_closed_is_not_reused(
    servers: list[RawServer],
) -> None:
    lean, url = start(servers, [reply(OK, close=True), reply(OK)])
    assert get(lean, url) == OK
    # Once the server has closed it: before, the pool's check cannot see the close, and the
    # second request would race it (the client's retry policy covers that race).
    assert servers[0].hung_up.acquire(timeout=30)
    assert get(lean, url) == OK
    assert servers[0].connections == 2
