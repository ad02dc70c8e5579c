"""The Telegram hot path's HTTP/1.1 connection (``_KeptConnection``) against canned answers."""

from __future__ import annotations

import http.client
import socket
import threading

import pytest

from vestnik.workers.channels.telegram import _KeptConnection


def serve(*answers: bytes):
    """A server that reads one request per answer and writes the answer (then closes)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    requests: list[bytes] = []

    def run():
        conn, _ = server.accept()
        with conn:
            for answer in answers:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = int([v for k, _, v in (h.partition(b":") for h in head.split(b"\r\n"))
                              if k.lower() == b"content-length"][0])
                while len(body) < length:
                    body += conn.recv(65536)
                requests.append(head + b"\r\n\r\n" + body)
                conn.sendall(answer)
        server.close()

    threading.Thread(target=run, daemon=True).start()
    conn = _KeptConnection("127.0.0.1", server.getsockname()[1], False)
    conn.connect(2)
    return conn, requests


def ask(conn: _KeptConnection, body: bytes = b'{"a": 1}') -> tuple[int, bytes]:
    conn.write("/botTOKEN/sendMessage", body, 2)
    return conn.read_answer()


def test_answers_with_a_length_keep_the_connection_and_the_request_is_whole():
    ok = b'{"ok":true,"result":{"message_id":1}}'
    conn, requests = serve(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(ok), ok),
                           b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 400 Bad\r\ncontent-length: 2\r\n\r\n{}")
    assert ask(conn, "привет".encode()) == (200, ok)
    assert conn.sock is not None  # kept
    assert ask(conn) == (400, b"{}")
    head, _, body = requests[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /botTOKEN/sendMessage HTTP/1.1\r\n") and body == "привет".encode()
    assert b"Content-Type: application/json" in head and b"Host: 127.0.0.1:" in head
    conn.close()


def test_a_chunked_answer_and_connection_close():
    conn, _ = serve(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                    b"4\r\n{\"ok\r\n6;x=y\r\n\":true\r\n1\r\n}\r\n0\r\n\r\n")
    assert ask(conn) == (200, b'{"ok":true}')
    assert conn.sock is None  # the server said close


def test_an_answer_without_a_length_runs_to_the_end():
    conn, _ = serve(b"HTTP/1.0 502 Bad Gateway\r\nContent-Type: text/html\r\n\r\n<html>bad</html>")
    assert ask(conn) == (502, b"<html>bad</html>")
    assert conn.sock is None


def test_bytes_past_the_answer_close_the_connection():
    conn, _ = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}garbage")
    assert ask(conn) == (200, b"{}")
    assert conn.sock is None


@pytest.mark.parametrize("answer, error", [
    (b"SMTP ready\r\n\r\n", http.client.BadStatusLine),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}", http.client.RemoteDisconnected),
])
def test_a_broken_answer_is_an_http_error(answer, error):
    conn, _ = serve(answer)
    with pytest.raises(error):
        ask(conn)
    conn.close()
