"""The API's endpoints: one table of (method, path pattern) -> handler.

gateway/web/api.py is the HTTP server (connections, the token, bodies, errors
as JSON); this module says what each request does. A pattern is the path's
segments; `{name}` takes any one segment (the handler gets it, decoded).
A handler is fn(gw, body, query, *segments) -> (status, object), with `gw`
the running gateway (gateway/service.py) and `body` the parsed JSON object
({} for a GET). gateway/README.md "HTTP API" is the reference.

Every POST under /api/ has its common fields checked (`actor`, `bitmaps`)
before it is routed, a path no route has included: its 400 comes before
a 404.
"""

import re
from typing import NamedTuple

from gateway.devices.pairing import MAX_SLOT, _text
from gateway.errors import InvalidRequest, NotFound

DIGITS = re.compile(r"[0-9]{1,9}")  # Content-Length, a bitmap slot: plain ASCII digits, no sign


class Route(NamedTuple):
    method: str
    pattern: tuple  # path segments; "{name}" takes any one
    handler: object  # fn(gw, body, query, *segments) -> (status, object)
    key: bool = False  # the answer is a device key: over TLS or to this machine only (api.py: 403)


def _flag(body, name):
    v = body.get(name, False)
    if not isinstance(v, bool):
        raise InvalidRequest("%s must be true or false" % name)
    return v


def _actor(body):
    return str(body.get("actor", ""))[:100]


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


# --- the handlers ----------------------------------------------------------------
def _devices(gw, body, query):
    return 200, {"devices": [d.summary() for d in sorted(gw.registry.all(), key=lambda d: d.device_id)],
                 "unprovisioned": gw.registry.unprovisioned()}


def _device(gw, body, query, device_id):
    dev = gw.registry.get(device_id)
    if dev is None:
        raise NotFound("no device %s" % device_id)
    return 200, dev.summary()


def _bitmap(gw, body, query, device_id, slot):
    if not DIGITS.fullmatch(slot) or int(slot) > MAX_SLOT:
        raise InvalidRequest("slot must be an integer 0..%d, got %r" % (MAX_SLOT, slot[:20]))
    return 200, gw.pairing.get_bitmap(device_id, int(slot))


def _audit(gw, body, query):
    try:
        limit = int(query.get("limit", ["100"])[0])
    except ValueError as err:
        raise InvalidRequest("limit must be an integer") from err
    return 200, {"audit": gw.pairing.audit(max(1, min(limit, 10000)))}


def _pair(gw, body, query):
    return 201, gw.pairing.pair(body.get("device_id"), body.get("staff_id"), body.get("window"),
                                staff_name=body.get("staff_name", ""), replace=_flag(body, "replace"),
                                actor=_actor(body), bitmaps=body.get("bitmaps") or [])


def _send_bitmap(gw, body, query, device_id):
    store = body.get("store", True)
    if not isinstance(store, bool):
        raise InvalidRequest("store must be true or false")
    return 200, gw.pairing.bitmap(device_id, body, store=store)


def _r(method, path, handler, **kw):
    return Route(method, tuple(path.strip("/").split("/")), handler, **kw)


ROUTES = (
    _r("GET", "/metrics", lambda gw, b, q: (200, gw.dashboard.metrics_text())),
    _r("GET", "/api/status", lambda gw, b, q: (200, gw.status())),
    _r("GET", "/api/dashboard", lambda gw, b, q: (200, gw.dashboard.snapshot())),
    _r("GET", "/api/alerts", lambda gw, b, q: (200, gw.dashboard.alerts())),
    _r("GET", "/api/devices", _devices),
    _r("GET", "/api/devices/{id}", _device),
    _r("GET", "/api/devices/{id}/bitmaps", lambda gw, b, q, d: (200, gw.pairing.get_bitmap(d))),
    _r("GET", "/api/devices/{id}/bitmaps/{slot}", _bitmap),
    _r("GET", "/api/bindings", lambda gw, b, q: (200, {"bindings": gw.pairing.bindings()})),
    _r("GET", "/api/audit", _audit),
    _r("GET", "/api/invitations/{id}", lambda gw, b, q, i: (200, gw.invitations.get(i))),
    _r("POST", "/api/invitations", lambda gw, b, q: (201, gw.invitations.open(b.get("window"), b.get("cases"),
                                                                               b.get("timeout_s")))),
    _r("POST", "/api/invitations/{id}/cancel", lambda gw, b, q, i: (200, gw.invitations.cancel(i))),
    _r("POST", "/api/storage", lambda gw, b, q: (200, gw.set_storage_cap(b.get("max_size_mb")))),
    _r("POST", "/api/pair", _pair),
    _r("POST", "/api/devices/{id}/key", lambda gw, b, q, d: (201, gw.pairing.provision(d, actor=_actor(b))),
       key=True),
    _r("POST", "/api/unpair", lambda gw, b, q: (200, gw.pairing.unpair(b.get("device_id"), actor=_actor(b)))),
    _r("POST", "/api/devices/{id}/bitmaps", _send_bitmap),
)


def find(method, parts, routes=ROUTES):
    """(route, [segments the pattern takes]) for a request, or None."""
    for r in routes:
        if r.method != method or len(r.pattern) != len(parts):
            continue
        args = []
        for want, got in zip(r.pattern, parts, strict=True):
            if want.startswith("{"):
                args.append(got)
            elif want != got:
                break
        else:
            return r, args
    return None


def route(gw, method, parts, body, query, found=None):
    """(status, object) for one request, or None if no endpoint matches.
    `found`: find(method, parts), when the caller has it already."""
    if method == "POST" and parts[:1] == ["api"]:
        _check_common(body)
    found = found or find(method, parts)
    if found is None:
        return None
    r, args = found
    return r.handler(gw, body, query, *args)
