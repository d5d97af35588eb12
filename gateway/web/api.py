"""The gateway's HTTP API: JSON in, JSON out, `Authorization: Bearer <token>`
(`[http] token`) on every request. The endpoints are the table of
gateway/web/routes.py; their reference is gateway/README.md "HTTP API". This
module is the HTTP server: connections, the token, bodies, errors as JSON.
The dashboard page (GET /, /dashboard, /web/<file>) needs no token to load,
none of its data comes without. A device key (POST /api/devices/<id>/key)
is never answered over plain HTTP to another host: 403.

Errors are {"error": text} with 400 (bad request), 401 (token), 404 (not
found), 409 (binding refused: also "current"; or device not connected), 503
(storage alarm / database error; or every API connection busy), other 4xx
for HTTP itself (405 method, 411 chunked body, 413 body > 1 MB, 431 head > 32 KB).

Connections (_Server): at most MAX_CONNECTIONS open, served by at most
WORKERS threads; idle ones cost no thread and are closed after IDLE_S (or
sooner, oldest first, to make room); a request must arrive whole within
REQUEST_S.
"""

import collections
import hmac
import http.client
import json
import logging
import queue
import selectors
import socket
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler

from gateway.config import http_tls_context
from gateway.config import loopback as is_loopback
from gateway.errors import (
    BindingError,
    DeviceNotConnected,
    GatewayError,
    InvalidRequest,
    NotFound,
    StorageError,
)
from gateway.web import routes
from gateway.web.dashboard import Raw, static
from gateway.web.routes import DIGITS

log = logging.getLogger("hcp.gateway.web.api")

MAX_BODY = 1 << 20
MAX_HEAD = 32 * 1024  # request line and headers
MAX_CONNECTIONS = 64  # open at once; then an idle one makes room, or 503 if none is idle
WORKERS = 16  # threads serving requests (started as needed); idle connections hold none
IDLE_S = 10.0  # a connection with no request under way is closed after this
REQUEST_S = 10.0  # a request (TLS handshake, request line, headers, body) must arrive within this
BACKLOG = 1024  # connections the kernel holds until they are accepted
QUEUE_S = 1.0  # every connection busy: new ones wait this long in the kernel's queue, then 503
EVICT_MIN_S = 0.025  # an idle connection younger than this is not closed to make room
LINGER_S = 1.0  # a refused connection: how long its answer is given to reach the client
WARN_EVERY_S = 10.0
# The dashboard page (gateway/web/index.html) loads its script and stylesheet
# from /web/ and fetches /api/dashboard: nothing inline, nothing from elsewhere,
# never in a frame, no referrer (the page's address has the hall's host in it).
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self';"
       " base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
PAGE_HEADERS = (("Content-Security-Policy", CSP), ("X-Frame-Options", "DENY"), ("Referrer-Policy", "no-referrer"))

STATUS = [(InvalidRequest, 400), (NotFound, 404), (BindingError, 409), (DeviceNotConnected, 409),
          (StorageError, 503), (GatewayError, 500)]


class _Refused(Exception):
    """A request refused before its body was read: answered, then the
    connection is closed (what follows on it is not a request)."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def _reject_constant(name):
    raise ValueError("%s is not a JSON number" % name)


def _lone_surrogate(obj):
    """The path of the first string (or key) in a parsed body that is not
    valid Unicode (JSON lets a lone surrogate through: "\\ud800"), or None.
    Iterative: the parser bounds the depth, this walk has no limit of its own."""
    todo = [(obj, "")]
    while todo:
        v, path = todo.pop()
        if isinstance(v, str):
            try:
                v.encode()
            except UnicodeEncodeError:
                return path or "body"
        elif isinstance(v, dict):
            for k, x in v.items():
                try:
                    k.encode()
                except UnicodeEncodeError:
                    return (path + "." if path else "") + "a key"
                todo.append((x, (path + "." if path else "") + k[:64]))
        elif isinstance(v, list):
            todo.extend((x, "%s[%d]" % (path, i)) for i, x in enumerate(v))
    return None


class _Handler(BaseHTTPRequestHandler):
    """One request on a connection the server keeps between requests (its
    reader and writer outlive the handler: see _Server)."""

    server_version = "hcp-gateway"
    protocol_version = "HTTP/1.1"

    def __init__(self, conn, server):  # not StreamRequestHandler's: no setup(), one request
        self.request = conn.sock
        self.client_address = conn.addr
        self.server = server
        self.tls = conn.tls
        self.rfile = conn.reader
        self.wfile = conn.writer
        self.close_connection = True
        self.handle_one_request()

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except http.client.LineTooLong as err:  # the request line (headers: parse_request answers)
            self.command, self.requestline, self.request_version = "", "", "HTTP/1.0"
            self.send_error(431, str(err))

    def log_message(self, fmt, *args):
        log.debug("%s " + fmt, self.client_address[0], *args)

    def _reply(self, code, obj):
        raw = isinstance(obj, Raw)
        body = obj.body if raw else json.dumps(obj, ensure_ascii=False, default=str).encode()
        ctype = obj.content_type if raw else "application/json; charset=utf-8"
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")  # every answer is what it says it is
        if ctype.startswith("text/html"):
            for name, value in PAGE_HEADERS:
                self.send_header(name, value)
        elif not raw:
            self.send_header("Cache-Control", "no-store")  # the data behind the token stays out of caches
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code, message=None, explain=None):
        """The standard library's own refusals (a malformed request line,
        headers too long, an unknown method) in JSON like every other error."""
        if code == 501:  # a method the API does not have
            code, message = 405, "method %s not allowed: the API has GET and POST" % (self.command or "?")
        elif code == 505:  # HTTP/2+ in a request line: a request this server cannot read
            code = 400
        short = self.responses.get(code, ("error",))[0]
        if message and explain:  # e.g. 431 "Line too long: header line", "Too many headers: ..."
            message = "%s: %s" % (message, explain)
        if self.request_version == "HTTP/0.9":  # the request line was not read that far
            self.request_version = "HTTP/1.0"  # (0.9 answers have no status line)
        self.close_connection = True
        self._reply(code, {"error": message or short})

    def parse_request(self):
        if not super().parse_request():
            return False
        if self.request_version == "HTTP/0.9":  # no headers, no status line
            self.send_error(400, "HTTP/0.9 requests are not supported")
            return False
        return True

    def _authorized(self):
        got = self.headers.get("Authorization", "")
        want = "Bearer " + self.server.token
        return hmac.compare_digest(got.encode(), want.encode())

    def _length(self):
        """The body's length from Content-Length (0 without one)."""
        if self.headers.get("Transfer-Encoding") is not None:
            raise _Refused(411, "Transfer-Encoding is not supported: send the body with a Content-Length")
        values = self.headers.get_all("Content-Length") or []
        if not values:
            return 0
        if len(values) > 1 or not DIGITS.fullmatch(values[0].strip()):
            raise _Refused(400, "Content-Length must be one number of bytes 0..%d, got %s"
                           % (MAX_BODY, ", ".join(repr(v[:20]) for v in values)))
        n = int(values[0])
        if n > MAX_BODY:
            raise _Refused(413, "request body larger than %d bytes (Content-Length)" % MAX_BODY)
        return n

    def _read_body(self):
        """The body as bytes, read whatever the method, so that the next
        request on the connection starts where it should."""
        n = self._length()
        return self.rfile.read(n) if n else b""

    def _json(self, raw):
        if not raw.strip():
            return {}
        try:
            obj = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
        except UnicodeDecodeError as err:
            raise InvalidRequest("body is not JSON: not UTF-8 at byte %d" % err.start) from err
        except RecursionError as err:
            raise InvalidRequest("body is not JSON this API takes: nested too deeply") from err
        except ValueError as err:
            raise InvalidRequest("body is not JSON: %s" % err) from err
        if not isinstance(obj, dict):
            raise InvalidRequest("body must be a JSON object")
        bad = _lone_surrogate(obj)
        if bad is not None:
            raise InvalidRequest("%s is not valid Unicode text (a lone surrogate)" % bad)
        return obj

    def _dispatch(self, method):
        url = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.strip("/").split("/")]
        query = urllib.parse.parse_qs(url.query)
        try:
            raw = self._read_body()
        except _Refused as err:
            self.close_connection = True
            self._reply(err.code, {"error": str(err)})
            return
        page = static(url.path) if method == "GET" else None
        if page is not None:
            self._reply(200, page)
            return
        if not self._authorized():
            self._reply(401, {"error": "missing or wrong bearer token"})
            return
        found = routes.find(method, parts)
        if found is not None and found[0].key and not self.tls and not is_loopback(self.client_address[0]):
            # The answer is a device key: never in clear across the hall network.
            self._reply(403, {"error": "a device key is only handed out over TLS ([http] tls_cert) or to "
                                       "this machine itself"})
            return
        try:
            body = self._json(raw) if method == "POST" else {}
            result = routes.route(self.server.gw, method, parts, body, query, found)
            if result is None:
                code, obj = 404, {"error": "no such endpoint: %s %s" % (method, url.path)}
            else:
                code, obj = result
        except GatewayError as err:
            code = next(c for cls, c in STATUS if isinstance(err, cls))
            obj = {"error": str(err)}
            if getattr(err, "current", None) is not None:
                obj["current"] = err.current
        except Exception as err:  # never a traceback to the client
            log.exception("API %s %s", method, self.path)
            code, obj = 500, {"error": "internal error: %s" % type(err).__name__}
        self._reply(code, obj)  # a client gone by now is the server's to note (debug), not an error

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")


class _HeadTooLong(http.client.LineTooLong):
    def __init__(self):  # (LineTooLong's own message names http.client's limit, not ours)
        http.client.HTTPException.__init__(self, "request line and headers longer than %d bytes" % MAX_HEAD)


class _Reader:
    """The read side of one connection, buffered across the requests of a
    keep-alive connection (a pipelined request is never lost), with a
    deadline for the request under way and a budget for its head."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.deadline = 0.0
        self.head = MAX_HEAD

    def begin(self):
        """A new request: REQUEST_S and MAX_HEAD from now."""
        self.deadline = time.monotonic() + REQUEST_S
        self.head = MAX_HEAD

    def _fill(self):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no whole request within %g s" % REQUEST_S)
        self.sock.settimeout(left)
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buf += data
        return True

    def readline(self, limit=-1):
        cap = self.head + 1 if limit is None or limit < 0 else min(limit, self.head + 1)
        start = 0
        while True:
            i = self.buf.find(b"\n", start, cap)
            if i >= 0:
                n = i + 1
                break
            if len(self.buf) >= cap:
                n = cap
                break
            start = len(self.buf)
            if not self._fill():
                n = len(self.buf)
                break
        if n > self.head:
            raise _HeadTooLong()
        line = bytes(self.buf[:n])
        del self.buf[:n]
        self.head -= n
        return line

    def read(self, n):
        while len(self.buf) < n and self._fill():
            pass
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def pending(self):
        """Bytes of a next request already here (read, or decrypted by TLS)."""
        return bool(self.buf) or (isinstance(self.sock, ssl.SSLSocket) and self.sock.pending() > 0)


class _Writer:
    def __init__(self, sock):
        self.sock = sock

    def write(self, data):
        self.sock.settimeout(REQUEST_S)  # the whole sendall: a client that reads nothing is dropped
        self.sock.sendall(data)
        return len(data)

    def flush(self):
        pass


class _Conn:
    __slots__ = ("sock", "addr", "tls", "ready", "reader", "writer", "since", "busy")

    def __init__(self, sock, addr, tls):
        self.sock = sock
        self.addr = addr
        self.tls = tls
        self.ready = not tls  # TLS: after the handshake (done by a worker, never the loop)
        self.reader = _Reader(sock)
        self.writer = _Writer(sock)
        self.since = time.monotonic()
        self.busy = False


class _Closing:
    """A refused connection whose 503 is on its way: read and dropped until
    the client closes, or LINGER_S (closing with its request unread would
    reset the connection and the answer with it)."""

    __slots__ = ("sock", "until")

    def __init__(self, sock):
        self.sock = sock
        self.until = time.monotonic() + LINGER_S


def _close(sock):
    try:
        sock.close()
    except OSError:
        pass


_ACCEPT, _WAKE = object(), object()


class _Server:
    """The API's HTTP/1.1 server: one loop thread (`hcp-api`) owns the
    listening socket and every connection waiting for a request; a request
    is served by one of at most WORKERS threads (`hcp-api-N`). So an idle
    connection (never a byte, or keep-alive between requests) costs a file
    descriptor and no thread, and a flood of them cannot starve the API:

    - at most MAX_CONNECTIONS are open; a new one beyond closes the idle one
      that waited longest (one whose request has arrived is not idle, nor
      one accepted less than EVICT_MIN_S ago: its request may be on its way). Only
      if every connection is in the middle of a request do new ones wait, in
      the kernel's accept queue, and after QUEUE_S of that they are answered
      503 (JSON, Retry-After: 1) and closed.
      A 503 rather than a bare close: the counter system and the tools tell
      "busy, retry" from "gateway down". Over TLS it is a bare close: the
      answer would need a handshake, the very work a flood must not get
      from the loop;
    - a connection idle for IDLE_S is closed; a request (TLS handshake,
      request line, headers, body) must be whole within REQUEST_S of its
      first byte, its head within MAX_HEAD bytes, its body MAX_BODY;
    - a client that goes away (reset, broken pipe, timeout, TLS error) is a
      debug line, never a traceback; refusals are a warning at most every
      WARN_EVERY_S."""

    def __init__(self, gw, host, port, token, context=None):
        self.gw = gw
        self.token = token
        self.context = context
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.listener.bind((host, port))
            self.listener.listen(BACKLOG)
            self.listener.setblocking(False)
        except OSError:
            self.listener.close()
            raise
        self.server_address = self.listener.getsockname()[:2]
        self.sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.sel.register(self.listener, selectors.EVENT_READ, _ACCEPT)
        self.sel.register(self._wake_r, selectors.EVENT_READ, _WAKE)
        self.conns = set()  # every open connection; only the loop thread changes it
        self.closing = set()
        self._back = collections.deque()  # (conn, keep) handed back by workers
        self._jobs = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._workers = 0
        self._idle_workers = 0
        self._halt = threading.Event()
        self._paused = False  # the listener is out of the selector: every connection is busy
        self._full_since = None
        self.refused = 0  # connections answered 503 / closed at once
        self.evicted = 0  # idle connections closed to make room
        self._noted = (0, 0)
        self._warned = 0.0
        self.thread = threading.Thread(target=self.serve, name="hcp-api", daemon=True)

    # --- the loop ------------------------------------------------------------
    def serve(self):
        try:
            while not self._halt.is_set():
                try:
                    self._turn()
                except Exception:  # a bug: logged, and the API goes on
                    log.exception("API connection loop")
                    time.sleep(0.1)
        finally:
            self._shut()

    def _turn(self):
        timeout = 0.25
        if self._paused:  # wake when an idle connection may make room
            idle = [c.since for c in self.conns if not c.busy]
            if idle:
                timeout = min(timeout, max(0.005, min(idle) + EVICT_MIN_S - time.monotonic()))
        for key, _ in self.sel.select(timeout):
            # An event of this select may be stale: the connection handed to a
            # worker or closed meanwhile (by _make_room), the listener paused.
            d = key.data
            if d is _ACCEPT:
                if not self._paused:
                    self._accept()
            elif d is _WAKE:
                self._drain(self._wake_r)
            elif isinstance(d, _Closing):
                if d in self.closing:
                    self._linger(d)
            elif d in self.conns and not d.busy:
                self._ready(d)
        self._take_back()
        now = time.monotonic()
        self._expire(now)
        self._resume(now)
        self._note()

    def _accept(self):
        for _ in range(256):  # then the other events get their turn
            refuse = False
            if len(self.conns) >= MAX_CONNECTIONS and not self._make_room():
                # Every connection is in the middle of a request. For QUEUE_S
                # new ones wait in the kernel's accept queue (a burst of
                # requests drains in milliseconds); after that, 503.
                now = time.monotonic()
                if self._full_since is None:
                    self._full_since = now
                if now - self._full_since < QUEUE_S:
                    self._pause()
                    return
                refuse = True
            try:
                sock, addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:  # out of file descriptors: the queue waits for the next turn
                self._warn("cannot accept an API connection: %s" % err)
                time.sleep(0.05)
                return
            if refuse:
                self._refuse(sock)
                continue
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self.context is not None:
                    sock = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            except OSError as err:
                log.debug("API connection from %s: %s", addr[0], err)
                _close(sock)
                continue
            conn = _Conn(sock, addr, self.context is not None)
            self.conns.add(conn)
            self.sel.register(sock, selectors.EVENT_READ, conn)

    def _make_room(self):
        """Close the idle connection that waited longest; False if none is idle."""
        for key, _ in self.sel.select(0):  # one whose request is here already is not idle
            if isinstance(key.data, _Conn) and not key.data.busy:
                self._ready(key.data)
        idle = self._evictable(time.monotonic())
        if not idle:
            return False
        self._drop(min(idle, key=lambda c: c.since))
        self.evicted += 1
        return True

    def _evictable(self, now):
        # Not one accepted a moment ago: its request may be on its way.
        return [c for c in self.conns if not c.busy and now - c.since >= EVICT_MIN_S]

    def _pause(self):
        if not self._paused:
            self.sel.unregister(self.listener)
            self._paused = True

    def _resume(self, now):
        if len(self.conns) < MAX_CONNECTIONS:
            self._full_since = None
        if self._paused and (self._full_since is None or now - self._full_since >= QUEUE_S
                             or self._evictable(now)):
            self.sel.register(self.listener, selectors.EVENT_READ, _ACCEPT)
            self._paused = False

    def _refuse(self, sock):
        self.refused += 1
        if self.context is not None or len(self.closing) >= 4 * MAX_CONNECTIONS:
            _close(sock)
            return
        body = json.dumps({"error": "the gateway is busy: all %d API connections are serving requests;"
                                    " retry in a moment" % MAX_CONNECTIONS}).encode()
        try:
            sock.setblocking(False)
            self._drain(sock)
            sock.send(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json; charset=utf-8\r\n"
                      b"X-Content-Type-Options: nosniff\r\nRetry-After: 1\r\nConnection: close\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            _close(sock)
            return
        c = _Closing(sock)
        self.closing.add(c)
        self.sel.register(sock, selectors.EVENT_READ, c)

    def _linger(self, c):
        if not self._drain(c.sock):
            self._unlinger(c)

    def _unlinger(self, c):
        self.closing.discard(c)
        try:
            self.sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        _close(c.sock)

    @staticmethod
    def _drain(sock):
        """Read and drop what is there; False once the peer closed or failed."""
        try:
            while sock.recv(65536):
                pass
            return False
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False

    def _ready(self, conn):
        """Bytes arrived on an idle connection: a worker serves it."""
        self.sel.unregister(conn.sock)
        conn.busy = True
        self._jobs.put(conn)
        with self._lock:
            start = self._idle_workers < self._jobs.qsize() and self._workers < WORKERS
            if start:
                self._workers += 1
                n = self._workers
        if start:
            threading.Thread(target=self._work, name="hcp-api-%d" % n, daemon=True).start()

    def _take_back(self):
        while self._back:
            conn, keep = self._back.popleft()
            if keep and not self._halt.is_set():
                conn.busy = False
                conn.since = time.monotonic()
                self.sel.register(conn.sock, selectors.EVENT_READ, conn)
            else:
                self.conns.discard(conn)
                _close(conn.sock)

    def _drop(self, conn):
        self.conns.discard(conn)
        try:
            self.sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        _close(conn.sock)

    def _expire(self, now):
        for conn in [c for c in self.conns if not c.busy and now - c.since > IDLE_S]:
            log.debug("API connection from %s idle for %g s: closed", conn.addr[0], IDLE_S)
            self._drop(conn)
        for c in [c for c in self.closing if now > c.until]:
            self._unlinger(c)

    def _note(self):
        """A warning, at most every WARN_EVERY_S, while connections are refused or evicted."""
        if (self.refused, self.evicted) == self._noted:
            return
        now = time.monotonic()
        if now - self._warned >= WARN_EVERY_S:
            self._warn("API connections: %d refused (503) and %d idle ones closed to make room so far;"
                       " at most %d are open at once" % (self.refused, self.evicted, MAX_CONNECTIONS))
            self._noted = (self.refused, self.evicted)

    def _warn(self, msg):
        now = time.monotonic()
        if now - self._warned >= WARN_EVERY_S:
            self._warned = now
            log.warning("%s", msg)

    # --- the workers ---------------------------------------------------------
    def _work(self):
        while True:
            with self._lock:
                self._idle_workers += 1
            conn = self._jobs.get()
            with self._lock:
                self._idle_workers -= 1
            if conn is None:
                return
            keep = False
            try:
                keep = self._serve(conn)
            finally:
                if not keep:
                    _close(conn.sock)
                self._back.append((conn, keep))
                self.wake()

    def _serve(self, conn):
        """Serve the requests that are there; True to keep the connection
        (back to the loop, idle), False to close it."""
        try:
            conn.reader.begin()
            if not conn.ready:
                conn.sock.settimeout(REQUEST_S)
                conn.sock.do_handshake()
                conn.ready = True
            while True:
                h = _Handler(conn, self)
                if h.close_connection or self._halt.is_set():
                    return False
                if not conn.reader.pending():
                    return True
                conn.reader.begin()
        except OSError as err:  # reset, broken pipe, timeout, TLS: the client's doing
            log.debug("API connection from %s: %s", conn.addr[0], err or type(err).__name__)
        except Exception:
            log.exception("API connection from %s", conn.addr[0])
        return False

    # --- start / stop -------------------------------------------------------
    def wake(self):
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def start(self):
        self.thread.start()

    def stop(self, timeout=5.0):
        self._halt.set()
        self.wake()
        if self.thread.is_alive():
            self.thread.join(timeout)
        else:
            self._shut()

    def _shut(self):
        if self.listener.fileno() < 0:
            return
        self.listener.close()
        for conn in list(self.conns):
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)  # a worker reading it wakes up
            except OSError:
                pass
            _close(conn.sock)
        self.conns.clear()
        for c in list(self.closing):
            _close(c.sock)
        self.closing.clear()
        for _ in range(self._workers):
            self._jobs.put(None)
        self.sel.close()
        _close(self._wake_r)
        _close(self._wake_w)


class Api:
    """The API on [http] listen: start(), stop(), port. HTTPS (TLS 1.2+) when
    the config has [http] tls_cert and tls_key."""

    def __init__(self, gw, host, port, token):
        self.cfg = getattr(gw, "cfg", None)
        cert, key = getattr(self.cfg, "tls_cert", None), getattr(self.cfg, "tls_key", None)
        context = None
        if cert:
            try:
                context = http_tls_context(cert, key)
            except (OSError, ssl.SSLError, ValueError) as err:  # checked at load; changed since?
                raise GatewayError("http.tls_cert/tls_key: cannot serve TLS with %s and %s: %s"
                                   % (cert, key, err)) from err
        self.tls = context is not None
        self.server = _Server(gw, host, port, token, context)

    @property
    def port(self):
        return self.server.server_address[1]

    def start(self):
        if self.cfg is not None and not getattr(self.cfg, "warnings_logged", False):
            for warning in self.cfg.warnings:
                log.warning("%s", warning)
        self.server.start()
        log.info("API on %s://%s:%d", "https" if self.tls else "http", self.server.server_address[0], self.port)

    def stop(self):
        self.server.stop()
