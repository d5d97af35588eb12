"""Security review (issue 12), finding 9: idle and slow connections must not
make the API unreachable, nor cost a thread each, nor fill the log with
tracebacks. Real sockets over loopback against an in-process gateway."""

import http.client
import json
import logging
import socket
import struct
import threading
import time

import pytest
from support.gwharness import TOKEN, InProcess, write_config

from gateway.web import api as api_mod


@pytest.fixture
def gw(tmp_path, monkeypatch, caplog, capfd):
    # Short timeouts so the test sees them expire; the defaults are 10 s.
    monkeypatch.setattr(api_mod, "IDLE_S", 1.5, raising=False)
    monkeypatch.setattr(api_mod, "REQUEST_S", 1.5, raising=False)
    caplog.set_level(logging.DEBUG, logger="hcp")
    with InProcess(write_config(tmp_path)) as g:
        yield g
    # No traceback anywhere: not in the log records, not on stderr (where
    # socketserver prints the ones nobody handled).
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, ["%s: %s" % (r.name, r.getMessage()) for r in bad]
    out, err = capfd.readouterr()
    assert "Traceback" not in err and "Traceback" not in out, err[-3000:]


def status(port, timeout=5.0):
    """GET /api/status on a new connection: (status, seconds it took)."""
    t0 = time.monotonic()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", "/api/status", headers={"Authorization": "Bearer " + TOKEN})
        r = c.getresponse()
        r.read()
        return r.status, time.monotonic() - t0
    finally:
        c.close()


def api_threads():
    return [t for t in threading.enumerate() if t.name.startswith("hcp-api") or "process_request" in t.name]


def idle_connections(port, n):
    """n connections that send nothing."""
    return [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(n)]


def closed_by_server(s, within):
    """True if the server closes (EOF or reset) this connection within `within` s."""
    s.settimeout(within)
    try:
        while True:
            data = s.recv(4096)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def test_hundreds_of_idle_connections_do_not_take_the_api_down(gw):
    port = gw.port
    threads_before = threading.active_count()
    socks = idle_connections(port, 400)
    try:
        time.sleep(0.5)  # the server has seen them
        for _ in range(3):
            code, took = status(port)
            assert code == 200 and took < 2.0, (code, took)
        assert threading.active_count() - threads_before <= 40, len(api_threads())
        assert len(api_threads()) <= 1 + getattr(api_mod, "WORKERS", 16)
    finally:
        for s in socks:
            s.close()
    # Right after they close, and a moment later.
    code, took = status(port)
    assert code == 200 and took < 2.0, (code, took)
    time.sleep(0.3)
    code, took = status(port)
    assert code == 200 and took < 2.0, (code, took)
    assert threading.active_count() - threads_before <= 40


def test_idle_and_slow_connections_are_closed_after_the_timeout(gw):
    port = gw.port
    # Connected, never a byte.
    idle = socket.create_connection(("127.0.0.1", port))
    # Headers that never end (slowloris).
    slow_head = socket.create_connection(("127.0.0.1", port))
    slow_head.sendall(b"GET /api/status HTTP/1.1\r\nHost: x\r\n")
    # A body that never comes.
    slow_body = socket.create_connection(("127.0.0.1", port))
    slow_body.sendall(("POST /api/storage HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                       "Content-Length: 100\r\n\r\n{" % TOKEN).encode())
    # Keep-alive, idle after one request.
    keep = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    keep.request("GET", "/api/status", headers={"Authorization": "Bearer " + TOKEN})
    assert keep.getresponse().read()
    t0 = time.monotonic()
    for s in (idle, slow_head, slow_body, keep.sock):
        assert closed_by_server(s, within=5.0)
    took = time.monotonic() - t0
    assert took < 4.0, took
    for s in (idle, slow_head, slow_body):
        s.close()
    keep.close()
    assert status(port)[0] == 200


def test_client_disconnects_are_no_tracebacks(gw):
    port = gw.port
    for _ in range(20):
        # Send a request, then reset the connection before the answer is read.
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /web/dashboard.js HTTP/1.1\r\nHost: x\r\n\r\n")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        # A body cut short.
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(("POST /api/storage HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                   "Content-Length: 1000\r\n\r\n{\"max" % TOKEN).encode())
        s.close()
    time.sleep(0.5)
    assert status(port)[0] == 200


def test_beyond_the_cap_a_busy_gateway_answers_503(gw):
    port = gw.port
    busy = []
    try:
        # Every connection the gateway keeps is in the middle of a request.
        for _ in range(getattr(api_mod, "MAX_CONNECTIONS", 64)):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET /api/status HTTP/1.1\r\n")
            busy.append(s)
        time.sleep(0.3)
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        resp = http.client.HTTPResponse(s)
        resp.begin()
        body = json.loads(resp.read())
        s.close()
        assert resp.status == 503 and "connections" in body["error"], body
        assert resp.getheader("Retry-After")
    finally:
        for s in busy:
            s.close()
    time.sleep(0.3)
    assert status(port)[0] == 200


def _talk(port, data, quiet_s=0.5):
    """Send bytes, read until the server closes or is quiet for quiet_s."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(data)
    out = b""
    s.settimeout(quiet_s)
    try:
        while chunk := s.recv(65536):
            out += chunk
    except TimeoutError:
        pass
    s.close()
    return out


def test_pipelined_requests_and_heads_too_long(gw):
    port = gw.port
    one = ("GET /api/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n" % TOKEN).encode()
    assert _talk(port, one * 3).count(b"HTTP/1.1 200 OK") == 3  # none lost between requests
    for head in (b"GET /api/status HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n",
                 b"GET /" + b"a" * 40000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"):
        out = _talk(port, head)
        assert out.startswith(b"HTTP/1.1 431 "), out[:200]
        assert b"32768 bytes" in out.split(b"\r\n\r\n", 1)[1], out[-200:]
    assert status(port)[0] == 200
