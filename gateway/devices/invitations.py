"""Invitations (一次一评): the counter system asks for a rating of one case or a
batch of cases at a window; the gateway records it and sends `invite` to the
device bound to that window.

The invitation row is committed BEFORE the frame goes out, so whatever the
device answers (rating or unrated) finds its cases; the commit thread closes
the invitation with the first event that answers it and builds one upstream
record per case (gateway/records.py).

States: open -> rated | unrated (by the device's event), cancelled (by the
counter), refused (the device answered E_FULL), undelivered (no link),
expired (no answer within timeout_s + [device] expire_grace_s: the device was
off, or lost the invite on the line). An answer is matched by the invitation's
event_id, not its state: a rating a device journaled and thanked for is
counted when it arrives, however late (the invitation then becomes rated).
"""

import itertools
import json
import logging
import sqlite3
import threading
import time

from gateway.devices.pairing import _text as _checked
from gateway.errors import DeviceNotConnected, InvalidRequest, NotFound, StorageError
from gateway.report import local_day
from protocol import frame as _frame
from protocol import rx as _device_rx
from protocol.errors import ProtocolError
from protocol.hmac256 import TAG_LEN

log = logging.getLogger("hcp.gateway.devices.invitations")

CASE_FIELDS = ("projectNo", "serviceNumber", "taskCode")
MAX_CASES = 64
MAX_CASE_FIELDS = 16  # projectNo and up to 15 more, each at most 255 bytes
_FIELD_NAME_MAX = 64
# The invite frame must reach the device whole: its payload within the
# frame's MAX_PAYLOAD, and the whole frame, COBS-encoded, within the device's
# receive buffer (protocol/rx.py CAP: longer packets are dropped there). The
# invitation id counts at the longest the device takes (firmware/orders.py
# _MAX_INVITATION); the gateway's own ids ("INV-<session>-<n>") are far shorter.
INVITATION_ID_MAX = 64


def _wire_len(payload_len):
    """The longest a frame with this payload can be on the line: tagged,
    COBS-encoded with no zero byte (one code byte per 254, plus one)."""
    n = _frame.HEADER_LEN + payload_len + TAG_LEN + _frame.CRC_LEN
    return n + n // 254 + 1


MAX_INVITE_PAYLOAD = max(n for n in range(_frame.MAX_PAYLOAD + 1) if _wire_len(n) <= _device_rx.CAP)
# invitation:s, cases:S (count, then each: length + bytes), timeout_s:H
MAX_CASES_BYTES = MAX_INVITE_PAYLOAD - (1 + INVITATION_ID_MAX) - 1 - 2


def _text(v, name, required=False, free=False):
    if v is None or v == "":
        if required:
            raise InvalidRequest("%s is required" % name)
        return ""
    return _checked(v, name, required=required, free=free)


def check_cases(cases):
    """Cases as the API takes them: strings (projectNo) or objects with
    projectNo and optional serviceNumber, taskCode and other string fields.
    projectNo is an id (printable, no spaces but the ASCII one); the other
    fields are free text (no control characters). Every projectNo goes to
    the device in the invite frame: together they must fit it."""
    if not isinstance(cases, list) or not cases:
        raise InvalidRequest("cases must be a non-empty list")
    if len(cases) > MAX_CASES:
        raise InvalidRequest("at most %d cases in one invitation" % MAX_CASES)
    out = []
    seen = set()
    for i, c in enumerate(cases):
        if isinstance(c, str):
            c = {"projectNo": c}
        if not isinstance(c, dict):
            raise InvalidRequest("cases[%d] must be a projectNo or an object" % i)
        if len(c) > MAX_CASE_FIELDS:
            raise InvalidRequest("cases[%d] has %d fields, at most %d" % (i, len(c), MAX_CASE_FIELDS))
        case = {"projectNo": _text(c.get("projectNo"), "cases[%d].projectNo" % i, required=True)}
        for k, v in c.items():
            if k != "projectNo":
                _checked(k, "cases[%d]: a field name" % i, limit=_FIELD_NAME_MAX)
                case[k] = _text(v, "cases[%d].%s" % (i, k), free=True)
        if case["projectNo"] in seen:
            raise InvalidRequest("cases[%d].projectNo %r appears twice" % (i, case["projectNo"]))
        seen.add(case["projectNo"])
        out.append(case)
    need = sum(1 + len(c["projectNo"].encode()) for c in out)
    if need > MAX_CASES_BYTES:
        raise InvalidRequest("cases: the invite frame carries every projectNo to the device; these %d take %d bytes"
                             " (each its length + 1), the device takes at most %d: send fewer or shorter cases"
                             % (len(out), need, MAX_CASES_BYTES))
    return out


BY_STATE = "SELECT state, count(*) FROM invitations WHERE created_at >= ? AND created_at < ? GROUP BY state"


def by_state(conn, start, end):
    """{state: number} of the invitations opened in [start, end) (through the
    created_at index: today's rows only)."""
    return dict(conn.execute(BY_STATE, (start, end)).fetchall())


class Invitations:
    def __init__(self, conn, registry, router, cfg, session):
        self.conn = conn  # the admin connection
        self.lock = threading.Lock()
        self.registry = registry
        self.router = router
        self.cfg = cfg
        self.session = session
        self._n = itertools.count(1)
        self._swept = 0.0
        self.expired = 0  # invitations this process marked expired

    def _write(self, sql, args, what="record the invitation"):
        """One statement in its own transaction; the rows it changed."""
        with self.lock:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                n = self.conn.execute(sql, args).rowcount
                self.conn.execute("COMMIT")
            except sqlite3.Error as err:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise StorageError("cannot %s: %s" % (what, err)) from err
        return n

    def open(self, window, cases, timeout_s=None):
        """Check everything asked (window, cases, timeout, that the invite
        frame fits the device), then store the invitation, then send it."""
        window = _text(window, "window", required=True)
        cases = check_cases(cases)
        if timeout_s is None:
            timeout_s = self.cfg.device.invite_timeout_s
        if not isinstance(timeout_s, int) or isinstance(timeout_s, bool) or not 1 <= timeout_s <= 3600:
            raise InvalidRequest("timeout_s must be an integer 1..3600")
        dev = self.registry.by_window(window)
        if dev is None:
            raise NotFound("no device is bound to window %r" % window)
        if not dev.online or dev.link is None:
            raise DeviceNotConnected("device %s at window %s is not connected" % (dev.device_id, window))
        inv_id = "INV-%d-%d" % (self.session, next(self._n))
        now = time.time()
        self._write("INSERT INTO invitations (id, window, device_id, staff_id, cases, timeout_s,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (inv_id, window, dev.device_id, dev.binding["staff_id"],
                     json.dumps(cases, ensure_ascii=False), timeout_s, now))
        try:
            self.router.send_invite(dev, inv_id, [c["projectNo"] for c in cases], timeout_s)
        except (OSError, DeviceNotConnected, ProtocolError) as err:
            # Never left open: no device will answer an invite that was not sent.
            self._write("UPDATE invitations SET state = 'undelivered', closed_at = ? WHERE id = ?",
                        (time.time(), inv_id))
            if isinstance(err, ProtocolError):  # checked above; kept as a guard
                raise InvalidRequest("the invitation cannot be encoded for the device: %s" % err) from err
            raise DeviceNotConnected("sending the invitation to %s failed: %s" % (dev.device_id, err)) from err
        return self.get(inv_id)

    def get(self, inv_id):
        with self.lock:
            row = self.conn.execute(
                "SELECT id, window, device_id, staff_id, cases, timeout_s, created_at, state,"
                " event_id, closed_at FROM invitations WHERE id = ?", (inv_id,)).fetchone()
        if row is None:
            raise NotFound("no invitation %r" % inv_id)
        keys = ("invitation", "window", "device_id", "staff_id", "cases", "timeout_s", "created_at",
                "state", "event_id", "closed_at")
        out = dict(zip(keys, row, strict=True))
        out["cases"] = json.loads(out["cases"])
        return out

    def cancel(self, inv_id):
        inv = self.get(inv_id)
        if inv["state"] != "open":
            raise InvalidRequest("invitation %s is %s, not open" % (inv_id, inv["state"]))
        self._write("UPDATE invitations SET state = 'cancelled', closed_at = ? WHERE id = ? AND state = 'open'",
                    (time.time(), inv_id))
        dev = self.registry.get(inv["device_id"])
        sent = False
        if dev is not None:
            try:
                self.router.send_cancel(dev, inv_id)
                sent = True
            except (OSError, DeviceNotConnected) as err:
                log.warning("cancel %s: %s", inv_id, err)
        out = self.get(inv_id)
        out["sent"] = sent
        return out

    def expire(self, now=None):
        """Mark expired the open invitations no answer came for within their
        timeout plus the grace; return how many. The grace covers the
        device's own clock (it counts the timeout from when the invite
        arrived) and a late unrated event on a slow line."""
        now = time.time() if now is None else now
        n = self._write("UPDATE invitations SET state = 'expired', closed_at = ?"
                        " WHERE state = 'open' AND event_id IS NULL AND created_at + timeout_s + ? < ?",
                        (now, self.cfg.device.expire_grace_s, now), what="expire invitations")
        self.expired += n
        if n:
            log.info("%d invitation(s) expired with no answer", n)
        return n

    def expire_due(self, every_s=5.0):
        """expire() at most every `every_s` seconds (the health tick calls
        this every second)."""
        now = time.time()
        if now - self._swept >= every_s:
            self._swept = now
            self.expire(now)

    def counts(self, now=None):
        """{state: number} of the invitations opened since the hall's midnight."""
        now = time.time() if now is None else now
        midnight, _ = local_day(now, self.cfg.hall.tz_offset_min)
        with self.lock:
            return by_state(self.conn, midnight, midnight + 86400)

    def refused(self, inv_id, code, detail):
        """The device refused the invite (error frame answering it)."""
        try:
            self._write("UPDATE invitations SET state = 'refused', closed_at = ? WHERE id = ? AND state = 'open'",
                        (time.time(), inv_id))
        except StorageError as err:
            log.error("%s", err)
