"""Issue 22 #9: the production server bounds request heads and bodies.

gunicorn with ``core.workers.BoundedUvicornWorker``, as the README, Dockerfile and compose file
start it: a 1 MiB header (or request line) is refused before it is read whole, a body over
``HTTP_MAX_BODY_BYTES`` is refused from its length, and the server keeps serving. Heads and
bodies under the bounds pass untouched (a large body arriving with its head in one read is not
counted as head)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.served import free_port, server_env

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

BASE_DIR = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024


@pytest.fixture
def server():
    """(host, port) of gunicorn with one bounded uvicorn worker on the test database and Redis."""
    port = free_port()
    env = server_env()
    for name in ("HTTP_MAX_HEADER_BYTES", "HTTP_MAX_BODY_BYTES"):
        env.pop(name, None)  # the defaults are what is tested
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "config.asgi:application",
            "-k",
            "core.workers.BoundedUvicornWorker",
        ]
        + ["-w", "1", "-b", f"127.0.0.1:{port}", "--log-level", "warning"],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code in (200, 503):
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            pytest.fail("gunicorn did not start")
        yield "127.0.0.1", port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _exchange(address, request: bytes, *, chunk: int = 64 * 1024) -> tuple[int | None, bytes]:
    """Send ``request`` (stopping if the server closes) and read the answer: (status, body);
    status None when the server closed without answering."""
    with socket.create_connection(address, timeout=10) as sock:
        try:
            for start in range(0, len(request), chunk):
                sock.sendall(request[start : start + chunk])
        except (BrokenPipeError, ConnectionResetError):
            pass
        received = b""
        try:
            while part := sock.recv(65536):
                received += part
                if b"\r\n\r\n" in received and _complete(received):
                    break
        except (ConnectionResetError, TimeoutError):
            pass
    if not received:
        return None, b""
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def _complete(received: bytes) -> bool:
    head, _, body = received.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def _get(path: str = "/health", headers: bytes = b"") -> bytes:
    return (
        b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers + b"Connection: close\r\n\r\n"
    )


def _serves(address) -> bool:
    status, _ = _exchange(address, _get())
    return status in (200, 503)


def test_a_one_mib_header_is_refused_and_the_server_keeps_serving(server):
    status, body = _exchange(server, _get(headers=b"X-Big: " + b"a" * MIB + b"\r\n"))
    assert status in (431, 400, None)
    if status == 431:
        assert json.loads(body)["error"]["code"] == "headers_too_large"
    assert _serves(server)


def test_many_headers_adding_up_past_the_bound_are_refused(server):
    many = b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 1000) for i in range(200))  # ~200 KB
    status, _ = _exchange(server, _get(headers=many))
    assert status in (431, 400, None)
    assert _serves(server)


def test_a_one_mib_request_line_is_refused(server):
    status, _ = _exchange(server, _get(path="/health?" + "q" * MIB))
    assert status in (431, 400, None)
    assert _serves(server)


def test_headers_within_the_bound_pass(server):
    status, _ = _exchange(server, _get(headers=b"Cookie: " + b"c" * (32 * 1024) + b"\r\n"))
    assert status in (200, 503)


def test_a_body_over_the_bound_is_refused_from_its_length_before_it_is_sent(server):
    head = (
        b"POST /api/proxy/v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (100 * MIB)
    )
    status, body = _exchange(server, head)  # the body is never sent: the answer comes first
    assert status == 413
    assert json.loads(body)["error"]["code"] == "payload_too_large"
    assert _serves(server)


def test_a_chunked_body_over_the_bound_is_cut(server):
    chunk = b"%x\r\n%s\r\n" % (MIB, b"x" * MIB)
    request = (
        b"POST /api/proxy/v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 6 + b"0\r\n\r\n"
    )
    status, _ = _exchange(server, request)
    assert status in (413, None)
    assert _serves(server)


def test_a_large_body_arriving_with_its_head_is_not_taken_for_a_large_head(server):
    body = b'{"model": "x", "pad": "' + b"p" * (900 * 1024) + b'"}'
    request = (
        b"POST /api/proxy/v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    ) + body
    status, _ = _exchange(server, request, chunk=len(request))
    assert status == 401  # the application answered (no key), not the server's bounds
