"""gateway/web/routes.py, the API's table: it holds exactly the endpoints
gateway/README.md documents; a pattern's `{name}` takes one segment, any
text (an empty one too, as the path split gives it); a POST's common fields
are checked before it is routed (400 before 404); only the key endpoint
carries the device-key flag (api.py answers it over TLS or loopback only)."""

import pathlib
import re

import pytest

from gateway.errors import InvalidRequest
from gateway.web import routes

README = pathlib.Path(__file__).resolve().parent.parent / "gateway" / "README.md"


def _documented():
    """{(method, pattern)} of the README's endpoint table (the dashboard's
    static files aside: api.py serves those before routing)."""
    out = set()
    for m in re.finditer(r"^\| `(GET|POST) (/[^`?]*)(?:\?[^`]*)?` \|", README.read_text(encoding="utf-8"), re.M):
        method, path = m.groups()
        if path == "/":
            continue
        segs = tuple("{%s}" % s.lower() if s.isupper() else s for s in path.strip("/").split("/"))
        out.add((method, segs))
    return out


def test_the_table_is_the_documented_api():
    ours = {(r.method, tuple("{%s}" % ("slot" if p == "{slot}" else "id") if p.startswith("{") else p
                             for p in r.pattern)) for r in routes.ROUTES}
    assert len(ours) == len(routes.ROUTES) == 18  # no route twice
    assert ours == _documented()


@pytest.mark.parametrize("method, path, handler, args", [
    ("GET", "/metrics", None, []),
    ("GET", "/api/devices", routes._devices, []),
    ("GET", "/api/devices/EV-1", routes._device, ["EV-1"]),
    ("GET", "/api/devices/", routes._devices, []),  # api.py strips the slashes at both ends
    ("GET", "/api/devices//bitmaps", None, [""]),  # an empty segment is one too
    ("GET", "/api/devices/a/b/c/d", None, None),
    ("GET", "/api/devices/EV-1/bitmaps/7", routes._bitmap, ["EV-1", "7"]),
    ("POST", "/api/devices/设备/key", None, ["设备"]),
    ("POST", "/api/devices/EV-1", None, None),  # GET only
    ("GET", "/api/pair", None, None),  # POST only
    ("GET", "/api/status/x", None, None),
    ("GET", "/status", None, None),
])
def test_find(method, path, handler, args):
    found = routes.find(method, path.strip("/").split("/"))
    if args is None:
        assert found is None
        return
    r, got = found
    assert got == args and (handler is None or r.handler is handler)
    assert r.key == (path.endswith("/key"))


def test_a_post_is_checked_before_it_is_routed():
    with pytest.raises(InvalidRequest, match="actor"):
        routes.route(None, "POST", ["api", "nothing"], {"actor": 5}, {})
    assert routes.route(None, "POST", ["api", "nothing"], {"actor": "tech-7"}, {}) is None
    assert routes.route(None, "POST", ["elsewhere"], {"actor": 5}, {}) is None
    with pytest.raises(InvalidRequest, match="slot must be an integer 0..48"):
        routes.route(None, "GET", ["api", "devices", "EV-1", "bitmaps", "-1"], {}, {})
