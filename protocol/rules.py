# Rules beyond field types: the domain's, checked the same way on encode and
# decode so that neither side puts on the wire what the other would refuse.
# (A 差评 without a reason, a rating outside 1..5, an uninvited press that
# claims an invitation, ...)

from protocol.errors import MessageError

MAX_REASONS = 32
_ID_CHARS = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_"


def device_id(v):
    if not v or len(v) > 32:
        raise MessageError("field", "device_id must be 1..32 characters")
    for c in v.encode("utf-8"):
        if c not in _ID_CHARS:
            raise MessageError("field", "device_id may hold only A-Z a-z 0-9 - _")


def check_event(kind, score, reasons, invitation):
    """The rules of an event (check() of an event message; protocol.tx)."""
    if kind == "rating":
        if not 1 <= score <= 5:
            raise MessageError("rule", "a rating has a score of 1..5")
        if score <= 2 and not reasons:
            raise MessageError("rule", "a 差评 (score 1-2) must carry at least one reason")
        if score >= 3 and reasons:
            raise MessageError("rule", "only a 差评 (score 1-2) carries reasons")
    elif reasons:
        raise MessageError("rule", kind + " events carry no reasons")
    if kind == "unrated" and score != 0:
        raise MessageError("rule", "an unrated event has score 0")
    if kind == "uninvited":
        if not 1 <= score <= 5:
            raise MessageError("rule", "an uninvited press records the button 1..5")
        if invitation:
            raise MessageError("rule", "an uninvited press has no invitation")
    elif not invitation:
        raise MessageError("rule", kind + " events need their invitation id")


def check(msg):
    """Rules beyond field types; the same on encode and decode, so neither
    side can put on the wire what the other would refuse."""
    t = msg["type"]
    if "device_id" in msg:
        device_id(msg["device_id"])
    if t == "event":
        check_event(msg["kind"], msg["score"], msg["reasons"], msg["invitation"])
    elif t == "ack":
        if not msg["ids"]:
            raise MessageError("rule", "an ack names at least one event")
    elif t == "invite":
        if not msg["invitation"] or not msg["cases"]:
            raise MessageError("rule", "an invitation needs an id and at least one case")
        if msg["timeout_s"] < 1:
            raise MessageError("rule", "an invitation's timeout is at least 1 s")
    elif t == "bind":
        if not msg["staff_id"]:
            raise MessageError("rule", "bind needs a staff id")
    elif t == "bitmap":
        if not msg["width"] or not msg["height"]:
            raise MessageError("rule", "a bitmap has a size")
        if msg["offset"] + len(msg["data"]) > (msg["width"] + 7) // 8 * msg["height"]:
            raise MessageError("rule", "bitmap data runs past its width x height")
    elif t == "config":
        if len(msg["reasons"]) > MAX_REASONS:
            raise MessageError("rule", "at most %d reasons" % MAX_REASONS)
