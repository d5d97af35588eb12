"""The gateway's HTTP API: JSON in, JSON out, `Authorization: Bearer <token>`
(`[http] token`) on every request. Reference: gateway/README.md.

    GET  /api/status                      gateway status, alarm, ports, forwarders
    GET  /api/devices                     device summaries; "unprovisioned": devices heard on a
                                          serial port that hold no key yet
    POST /api/devices/<id>/key            provision: a new device key (hex) for the technician's
                                          tool to write over USB (never over plain HTTP from
                                          another host: 403)
    GET  /api/devices/<id>                one device
    POST /api/devices/<id>/bitmaps        {"slot", "width", "height", "data": base64, "store": true}
    GET  /api/devices/<id>/bitmaps[/<slot>]  stored slots, or one image (base64 MONO_HLSB)
    POST /api/pair                        {"device_id", "staff_id", "window", "staff_name",
                                           "replace": false, "bitmaps": [...]}
    POST /api/unpair                      {"device_id"}
    GET  /api/bindings                    every binding
    GET  /api/audit?limit=N               bind/unbind/replace/refuse, newest first
    POST /api/invitations                 {"window", "cases": [{"projectNo", ...}], "timeout_s"}
    GET  /api/invitations/<id>            state, cases, the event that answered it
    POST /api/invitations/<id>/cancel
    POST /api/storage                     {"max_size_mb": N}: cap the database now (0 lifts it)
    GET  /api/dashboard                   everything the dashboard page shows (gateway/dashboard.py)
    GET  /api/alerts                      the active alerts
    GET  /metrics                         Prometheus text format (gateway/metrics.py)
    GET  / , /dashboard, /web/<file>      the dashboard page: no token to load it, none of its data without

Errors are {"error": text} with 400 (bad request), 401 (token), 404 (not
found), 409 (binding refused: also "current"; or device not connected), 503
(storage alarm / database error).
"""

import hmac
import json
import logging
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from gateway.dashboard import Raw, static
from gateway.errors import (
    BindingError,
    DeviceNotConnected,
    GatewayError,
    InvalidRequest,
    NotFound,
    StorageError,
)
from gateway.pairing import MAX_SLOT, _text

log = logging.getLogger("hcp.gateway.api")

MAX_BODY = 1 << 20

STATUS = [(InvalidRequest, 400), (NotFound, 404), (BindingError, 409), (DeviceNotConnected, 409),
          (StorageError, 503), (GatewayError, 500)]
_DIGITS = re.compile(r"[0-9]{1,9}")  # Content-Length, a bitmap slot: plain ASCII digits, no sign


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
    server_version = "hcp-gateway"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        log.debug("%s " + fmt, self.client_address[0], *args)

    def _reply(self, code, obj):
        raw = isinstance(obj, Raw)
        body = obj.body if raw else json.dumps(obj, ensure_ascii=False, default=str).encode()
        self.send_response(code)
        self.send_header("Content-Type", obj.content_type if raw else "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
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
        if len(values) > 1 or not _DIGITS.fullmatch(values[0].strip()):
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
        try:
            body = self._json(raw) if method == "POST" else {}
            result = route(self.server.gw, method, parts, body, query)
            if result is None:
                self._reply(404, {"error": "no such endpoint: %s %s" % (method, url.path)})
            else:
                code, obj = result
                self._reply(code, obj)
        except GatewayError as err:
            code = next(c for cls, c in STATUS if isinstance(err, cls))
            obj = {"error": str(err)}
            if getattr(err, "current", None) is not None:
                obj["current"] = err.current
            self._reply(code, obj)
        except Exception as err:  # never a traceback to the client
            log.exception("API %s %s", method, self.path)
            self._reply(500, {"error": "internal error: %s" % type(err).__name__})

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")


def _flag(body, name):
    v = body.get(name, False)
    if not isinstance(v, bool):
        raise InvalidRequest("%s must be true or false" % name)
    return v


def _check_common(body):
    """Fields several endpoints take: `actor` (who did it, for the audit: an
    id of at most 100 characters), `bitmaps` (a list, at most one per slot)."""
    if "actor" in body:
        actor = body["actor"]
        if not isinstance(actor, str) or len(actor) > 100:
            raise InvalidRequest("actor must be a string of at most 100 characters")
        _text(actor, "actor", required=False)
    bitmaps = body.get("bitmaps")
    if bitmaps is not None and (not isinstance(bitmaps, list) or len(bitmaps) > MAX_SLOT + 1):
        raise InvalidRequest("bitmaps must be a list of at most %d bitmaps (one per slot)" % (MAX_SLOT + 1))


def route(gw, method, parts, body, query):
    """(status, object) for one request, or None if no endpoint matches."""
    if method == "GET" and parts == ["metrics"]:
        return 200, gw.dashboard.metrics_text()
    if not parts or parts[0] != "api":
        return None
    p = parts[1:]
    if method == "GET":
        if p == ["status"]:
            return 200, gw.status()
        if p == ["dashboard"]:
            return 200, gw.dashboard.snapshot()
        if p == ["alerts"]:
            return 200, gw.dashboard.alerts()
        if p == ["devices"]:
            return 200, {"devices": [d.summary() for d in sorted(gw.registry.all(),
                                                                 key=lambda d: d.device_id)],
                         "unprovisioned": gw.registry.unprovisioned()}
        if len(p) == 2 and p[0] == "devices":
            dev = gw.registry.get(p[1])
            if dev is None:
                raise NotFound("no device %s" % p[1])
            return 200, dev.summary()
        if len(p) == 3 and p[0] == "devices" and p[2] == "bitmaps":
            return 200, gw.pairing.get_bitmap(p[1])
        if len(p) == 4 and p[0] == "devices" and p[2] == "bitmaps":
            if not _DIGITS.fullmatch(p[3]) or int(p[3]) > MAX_SLOT:
                raise InvalidRequest("slot must be an integer 0..%d, got %r" % (MAX_SLOT, p[3][:20]))
            return 200, gw.pairing.get_bitmap(p[1], int(p[3]))
        if p == ["bindings"]:
            return 200, {"bindings": gw.pairing.bindings()}
        if p == ["audit"]:
            try:
                limit = int(query.get("limit", ["100"])[0])
            except ValueError as err:
                raise InvalidRequest("limit must be an integer") from err
            return 200, {"audit": gw.pairing.audit(max(1, min(limit, 10000)))}
        if len(p) == 2 and p[0] == "invitations":
            return 200, gw.invitations.get(p[1])
        return None
    if method == "POST":
        _check_common(body)
        if p == ["invitations"]:
            return 201, gw.invitations.open(body.get("window"), body.get("cases"), body.get("timeout_s"))
        if len(p) == 3 and p[0] == "invitations" and p[2] == "cancel":
            return 200, gw.invitations.cancel(p[1])
        if p == ["storage"]:
            return 200, gw.set_storage_cap(body.get("max_size_mb"))
        if p == ["pair"]:
            return 201, gw.pairing.pair(body.get("device_id"), body.get("staff_id"), body.get("window"),
                                        staff_name=body.get("staff_name", ""),
                                        replace=_flag(body, "replace"),
                                        actor=str(body.get("actor", ""))[:100],
                                        bitmaps=body.get("bitmaps") or [])
        if len(p) == 3 and p[0] == "devices" and p[2] == "key":
            return 201, gw.pairing.provision(p[1], actor=str(body.get("actor", ""))[:100])
        if p == ["unpair"]:
            return 200, gw.pairing.unpair(body.get("device_id"), actor=str(body.get("actor", ""))[:100])
        if len(p) == 3 and p[0] == "devices" and p[2] == "bitmaps":
            store = body.get("store", True)
            if not isinstance(store, bool):
                raise InvalidRequest("store must be true or false")
            return 200, gw.pairing.bitmap(p[1], body, store=store)
        return None
    return None


class Api:
    def __init__(self, gw, host, port, token):
        self.server = ThreadingHTTPServer((host, port), _Handler)
        self.server.daemon_threads = True
        self.server.gw = gw
        self.server.token = token
        self.thread = threading.Thread(target=self.server.serve_forever, name="hcp-api",
                                       kwargs={"poll_interval": 0.2}, daemon=True)

    @property
    def port(self):
        return self.server.server_address[1]

    def start(self):
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
