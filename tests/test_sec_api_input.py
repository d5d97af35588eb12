"""Security review (issue 12), finding 10: malformed API input gets a 4xx
with {"error": ...}, never a 500 or a traceback in the log, and an
invitation is checked against what the wire and the device can carry before
anything is stored. Real HTTP over loopback against an in-process gateway."""

import http.client
import json
import logging
import socket

import pytest
from support.gwfixtures import connect, pair, rows
from support.gwfixtures import hall as hall  # noqa: F401 (the fixture)
from support.gwharness import TOKEN

from gateway.errors import InvalidRequest
from protocol import frame as _frame
from protocol import messages as M
from protocol import rx


def raw(port, head, body=b"", timeout=5.0):
    """Send one request as bytes (head: request line and headers, without
    the blank line); return (status, decoded JSON body)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(head.encode("latin-1") + b"\r\n\r\n" + body)
        resp = http.client.HTTPResponse(s)
        resp.begin()
        data = resp.read()
        assert resp.getheader("Content-Type", "").startswith("application/json"), resp.getheaders()
        return resp.status, json.loads(data)
    finally:
        s.close()


def post(port, path, body, extra=""):
    if isinstance(body, str):
        body = body.encode()
    head = ("POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"
            "Content-Length: %d%s" % (path, TOKEN, len(body), extra))
    return raw(port, head, body)


def get(port, path):
    return raw(port, "GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nConnection: close" % (path, TOKEN))


@pytest.fixture
def logged(caplog):
    caplog.set_level(logging.DEBUG, logger="hcp")
    yield caplog
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, ["%s %s %s" % (r.name, r.levelname, r.getMessage()) for r in bad]


def bad_request(result, *needles):
    code, body = result
    assert code == 400, (code, body)
    assert isinstance(body.get("error"), str) and body["error"]
    for n in needles:
        assert n in body["error"], (n, body["error"])
    return body["error"]


def test_malformed_bodies_and_headers(hall, logged):
    port = hall.port
    # Deep nesting: json's recursion limit, not a 500.
    bad_request(post(port, "/api/invitations", b"[" * 100000), "JSON")
    bad_request(post(port, "/api/invitations", b'{"window": ' + b"{" * 50000), "JSON")
    # Content-Length that is not a length. A negative one must not read until EOF.
    auth = "Authorization: Bearer %s\r\n" % TOKEN
    for value in ("abc", "-5", "1e3", " ", "99999999999999999999999999"):
        head = "POST /api/storage HTTP/1.1\r\nHost: x\r\n%sContent-Length: %s" % (auth, value)
        bad_request(raw(port, head, b'{"max_size_mb": 0}'), "Content-Length")
        # the same without the token: still a 4xx, not a 500
        head = "POST /api/storage HTTP/1.1\r\nHost: x\r\nContent-Length: %s" % value
        code, body = raw(port, head, b"{}")
        assert 400 <= code < 500 and body["error"], (code, body)
    # A chunked body is not read: refused, never mistaken for the next request.
    head = "POST /api/storage HTTP/1.1\r\nHost: x\r\n%sTransfer-Encoding: chunked" % auth
    code, body = raw(port, head, b"5\r\n{}{}{\r\n0\r\n\r\n")
    assert code in (400, 411) and "Content-Length" in body["error"]
    # Not UTF-8; a lone surrogate (valid JSON, not valid text); NaN.
    bad_request(post(port, "/api/invitations", b'{"window": "\xff\xfe"}'), "JSON")
    bad_request(post(port, "/api/invitations", '{"window": "A\\ud800", "cases": ["P"]}'), "window")
    bad_request(post(port, "/api/unpair", '{"device_id": "EV-1", "actor": "\\udfff"}'), "actor")
    # Methods the API does not have: 405 in JSON, not the stdlib's HTML 501.
    code, body = raw(port, "PUT /api/status HTTP/1.1\r\nHost: x\r\n%sContent-Length: 0" % auth)
    assert code == 405 and body["error"]
    code, body = raw(port, "BREW /api/status HTTP/1.1\r\nHost: x\r\n%sContent-Length: 0" % auth)
    assert code == 405 and body["error"]
    # A request line that is not HTTP at all.
    code, body = raw(port, "GET /\x01 \x02 HTTP/9.9")
    assert 400 <= code < 500 and body["error"]
    # The gateway still serves.
    assert get(port, "/api/status")[0] == 200


def test_numbers_must_be_in_range(hall, logged):
    port = hall.port
    for slot in ("99999999999999999999", "-1", "49", "%D9%A3", "1_0", "+1", "%201"):
        bad_request(get(port, "/api/devices/EV-1/bitmaps/" + slot), "slot")
    code, body = get(port, "/api/devices/EV-1/bitmaps/48")
    assert code == 404 and body["error"]
    # NaN and Infinity are not JSON numbers; 1e308 MB is no cap SQLite can hold.
    for v in ("NaN", "Infinity", "-Infinity"):
        bad_request(post(port, "/api/storage", '{"max_size_mb": %s}' % v), v.lstrip("-"))
    for v in ("1e308", "-0.5", "true", '"5"', "1" * 400):
        bad_request(post(port, "/api/storage", '{"max_size_mb": %s}' % v), "max_size_mb")
    for v in (float("nan"), float("inf"), 1e308):
        with pytest.raises(InvalidRequest):
            hall.gw.set_storage_cap(v)
    code, body = post(port, "/api/storage", '{"max_size_mb": 0}')
    assert code == 200 and body == {"max_size_mb": 0}
    for v in ("1e308", "0", "3.5", "true", "-1"):
        bad_request(post(port, "/api/invitations", '{"window": "W", "cases": ["P"], "timeout_s": %s}' % v),
                    "timeout_s")
    bad_request(get(port, "/api/audit?limit=abc"), "limit")
    assert get(port, "/api/audit?limit=99999999999999999999999")[0] == 200


def test_ids_are_printable_text_and_shapes_are_checked(hall, logged):
    port = hall.port

    def pair_req(**over):
        body = dict({"device_id": "EV-1", "staff_id": "S1", "window": "W1", "staff_name": "王小明"}, **over)
        return post(port, "/api/pair", json.dumps(body))

    for field, value in (("window", "A\x00"), ("window", "A\n05"), ("window", "A\u202e05"),
                         ("staff_id", "S\x07"), ("staff_id", "S 1\t"), ("staff_name", "王\x00"),
                         ("staff_name", "王\x1b[31m"), ("window", ""), ("window", 5), ("staff_id", None)):
        bad_request(pair_req(**{field: value}), field)
    for value in ("x" * 101, 5, "tech\x00"):
        bad_request(pair_req(actor=value), "actor")
    bad_request(pair_req(bitmaps=5), "bitmaps")
    bad_request(pair_req(bitmaps={"slot": 0}), "bitmaps")
    bad_request(pair_req(bitmaps=[{"slot": 0, "width": 8, "height": 1, "data": "AA=="}] * 50), "bitmaps")
    assert rows(hall.db, "SELECT count(*) FROM bindings")[0][0] == 0
    assert rows(hall.db, "SELECT count(*) FROM audit")[0][0] == 0

    def inv(window="W1", cases=("P-1",), **extra):
        return post(port, "/api/invitations", json.dumps(dict({"window": window, "cases": list(cases)}, **extra)))

    bad_request(inv(window="W1\x00"), "window")
    bad_request(inv(window="W1\r\n"), "window")
    bad_request(inv(cases=["P-1\x00"]), "cases[0].projectNo")
    bad_request(inv(cases=[{"projectNo": "P-1", "taskCode": "T\x00"}]), "cases[0].taskCode")
    bad_request(inv(cases=[{"projectNo": "P-1", "k\x00": "v"}]), "cases[0]")
    bad_request(inv(cases=[{"projectNo": "P-1", "k" * 65: "v"}]), "cases[0]")
    bad_request(inv(cases=[dict({"projectNo": "P-1"}, **{"f%d" % i: "v" for i in range(40)})]), "cases[0]")
    bad_request(inv(cases=[{"projectNo": "P-1", "taskCode": 5}]), "cases[0].taskCode")
    bad_request(inv(cases=[{"projectNo": "P-1", "n": [1, 2]}]), "cases[0].n")
    # Free text in other case fields may hold an ideographic space; ids may not.
    bad_request(inv(cases=["P\u30001"]), "cases[0].projectNo")
    bad_request(post(port, "/api/unpair", json.dumps({"device_id": "EV-1", "actor": ["x"]})), "actor")
    bad_request(post(port, "/api/devices/EV-1/bitmaps",
                     json.dumps({"slot": 0, "width": 8, "height": 1, "data": "AA==", "store": "yes"})), "store")
    assert rows(hall.db, "SELECT count(*) FROM invitations")[0][0] == 0


def _frame_len(cases, invitation):
    """The longest the invite frame can be on the line (COBS of a frame
    with no zero byte: one code byte per 254, plus one), delimiter excluded."""
    _, payload = M.encode_payload({"type": "invite", "invitation": invitation, "cases": cases, "timeout_s": 10})
    n = _frame.HEADER_LEN + len(payload) + 8 + _frame.CRC_LEN
    return n + n // 254 + 1


def test_an_invitation_the_wire_cannot_carry_is_refused_before_it_is_stored(hall, logged):
    dev = connect(hall.device("EV-1"))
    pair(hall, dev, "S1", "W1")
    port = hall.port
    # 64 cases of 255 bytes: every field passes its own check, the frame cannot be sent.
    cases = ["%02d-" % i + "x" * 252 for i in range(64)]
    err = bad_request(post(port, "/api/invitations", json.dumps({"window": "W1", "cases": cases})), "cases")
    assert "bytes" in err and "projectNo" in err, err
    assert rows(hall.db, "SELECT count(*) FROM invitations")[0][0] == 0
    # Longer than the device's receive buffer (protocol/rx.py CAP), shorter than
    # the frame's 2048-byte payload: refused too, the device would drop it.
    cases = ["%02d-" % i + "x" * 97 for i in range(15)]  # about 1,540 bytes
    assert _frame_len(cases, "INV-1-1") > rx.CAP
    bad_request(post(port, "/api/invitations", json.dumps({"window": "W1", "cases": cases})), "cases")
    assert rows(hall.db, "SELECT count(*) FROM invitations")[0][0] == 0

    # The boundary: the longest last case the API takes, found through the API.
    head = ["%02d-" % i + "y" * 97 for i in range(10)]

    opened = []

    def accepted(n):
        code, body = post(port, "/api/invitations", json.dumps({"window": "W1", "cases": head + ["z" * n]}))
        assert code in (201, 400), (code, body)
        if code == 201:
            opened.append(n)
        return code == 201

    lo, hi = 1, 255
    assert accepted(lo) and not accepted(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if accepted(mid):
            lo = mid
        else:
            hi = mid
    # What it took fits the device's buffer with any invitation id it can hold.
    assert _frame_len(head + ["z" * lo], "I" * 64) <= rx.CAP
    dev.wait(lambda: dev.invitation is not None and dev.invitation["cases"] == head + ["z" * lo])
    # Exactly the accepted ones were stored.
    assert rows(hall.db, "SELECT count(*) FROM invitations")[0][0] == len(opened) >= 2
