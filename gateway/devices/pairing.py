"""Pairing and bindings: device <-> staff account <-> window (一码一账号).

The database enforces one code, one account: `bindings` has one row per
device and UNIQUE staff_id and window, written under `BEGIN IMMEDIATE`, so of
two concurrent bindings of one account the second fails. A binding that
would break it is refused (the refusal names the current binding) unless the
technician asks to `replace`, which unbinds the others first. Every bind,
unbind, replace and refusal is a row in `audit`.

Keys are not pairing's: a device key is made here by `provision()`, handed
to the technician's tool (`hcp tool provision`), and written by that tool
into the device over its USB cable (docs/link.md "Keys"). It never crosses
the device's link. Pairing only tells a provisioned device, in frames tagged
with its key, whom it now belongs to. A re-provisioned device's previous key
stays valid for frames from it until it is seen using the new one.
"""

import base64
import contextlib
import logging
import secrets
import sqlite3
import threading
import time

from gateway.devices.keys import Key
from gateway.errors import (
    BindingError,
    DeviceNotConnected,
    InvalidRequest,
    NotFound,
    NotProvisioned,
    StorageError,
)
from protocol.errors import ProtocolError
from protocol.rules import check as check_rules

log = logging.getLogger("hcp.gateway.devices.pairing")

MAX_SLOT = 16 + 32


_NOT_TEXT = ("Cc", "Cf", "Cs", "Zl", "Zp")  # control, format (bidi, zero-width), surrogate, line breaks


def _text(v, name, required=True, free=False, limit=255):
    """A text field of the API: a string of at most `limit` bytes of UTF-8
    (255: one text field on the wire, protocol/fields.py), valid Unicode (no
    lone surrogate, which JSON lets through). Ids (staff_id, window, a case's
    projectNo, ...) are printable: letters, digits, marks, punctuation,
    symbols and the ASCII space (str.isprintable), so no control character,
    no line break, no invisible formatting and no other space. Free text
    (free=True: a staff name, a matter's name) may also hold other spaces
    (the ideographic one) and private-use or unassigned characters; never a
    control or format character or a line break either."""
    if not isinstance(v, str) or (required and not v):
        raise InvalidRequest("%s must be a %sstring of at most %d bytes"
                             % (name, "non-empty " if required else "", limit))
    try:
        n = len(v.encode())
    except UnicodeEncodeError:
        raise InvalidRequest("%s is not valid Unicode text (a lone surrogate)" % name) from None
    if n > limit:
        raise InvalidRequest("%s must be at most %d bytes of UTF-8, got %d" % (name, limit, n))
    if not v.isprintable():
        import unicodedata

        for i, ch in enumerate(v):
            if not ch.isprintable() and (not free or unicodedata.category(ch) in _NOT_TEXT):
                raise InvalidRequest("%s must be printable text: U+%04X at position %d is a control, format"
                                     " or space character" % (name, ord(ch), i))
    return v


def check_device_id(device_id):
    if not isinstance(device_id, str) or not device_id.isascii():
        raise InvalidRequest("device_id must be 1..32 characters of A-Z a-z 0-9 - _")
    try:
        check_rules({"type": "x", "device_id": device_id})
    except ProtocolError as err:
        raise InvalidRequest("device_id: %s" % err.detail) from err
    return device_id


def check_bitmap(b, name="bitmap"):
    """{"slot", "width", "height", "data": base64 of MONO_HLSB rows} -> tuple."""
    if not isinstance(b, dict):
        raise InvalidRequest("%s must be an object" % name)
    vals = []
    for k, top in (("slot", MAX_SLOT), ("width", 4096), ("height", 4096)):
        v = b.get(k)
        if not isinstance(v, int) or isinstance(v, bool) or not (0 if k == "slot" else 1) <= v <= top:
            raise InvalidRequest("%s.%s must be an integer 0..%d" % (name, k, top))
        vals.append(v)
    try:
        data = base64.b64decode(b.get("data", ""), validate=True)
    except (ValueError, TypeError) as err:
        raise InvalidRequest("%s.data must be base64" % name) from err
    slot, w, h = vals
    need = (w + 7) // 8 * h
    if len(data) != need:
        raise InvalidRequest("%s.data: %dx%d MONO_HLSB needs %d bytes, got %d" % (name, w, h, need, len(data)))
    if need > 0xFFFF:
        raise InvalidRequest("%s is larger than 65535 bytes" % name)
    return slot, w, h, data


class Pairing:
    def __init__(self, conn, registry, router):
        self.conn = conn
        self.lock = threading.Lock()
        self.registry = registry
        self.router = router

    @contextlib.contextmanager
    def _writing(self, what):
        """One `BEGIN IMMEDIATE ... COMMIT` under the pairing lock. A database
        error rolls it back and is a StorageError ("cannot record <what>"),
        a UNIQUE constraint a BindingError (one code, one account); any other
        error rolls back what was not committed and goes on."""
        conn = self.conn
        with self.lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except sqlite3.IntegrityError as err:
                conn.execute("ROLLBACK")
                raise BindingError("refused by the database (one code, one account): %s" % err) from err
            except sqlite3.Error as err:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise StorageError("cannot record %s: %s" % (what, err)) from err
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _audit(self, action, device_id="", staff_id="", window="", actor="", detail=""):
        self.conn.execute("INSERT INTO audit (at, action, device_id, staff_id, window, actor, detail)"
                          " VALUES (?, ?, ?, ?, ?, ?, ?)",
                          (time.time(), action, device_id, staff_id, window, actor, detail))

    def _conflicts(self, device_id, staff_id, window):
        rows = self.conn.execute(
            "SELECT device_id, staff_id, window, staff_name, bound_at FROM bindings"
            " WHERE device_id = ? OR staff_id = ? OR window = ?",
            (device_id, staff_id, window)).fetchall()
        return [dict(zip(("device_id", "staff_id", "window", "staff_name", "bound_at"), r, strict=True))
                for r in rows]

    def provision(self, device_id, actor=""):
        """Make a new key for `device_id` and register it; return it (hex),
        for the technician's tool to write into the device over USB. A
        device provisioned before keeps its binding; the key it holds stays
        valid until it is seen using the new one. Audited (never the key)."""
        check_device_id(device_id)
        key = secrets.token_bytes(32)
        with self._writing("the device key") as conn:
            conn.execute("INSERT OR IGNORE INTO devices (device_id) VALUES (?)", (device_id,))
            row = conn.execute("SELECT key, prev_key, key_confirmed FROM devices WHERE device_id = ?",
                               (device_id,)).fetchone()
            # The key the device may hold now: its confirmed one, or, if the
            # last provisioning was never confirmed, the one before.
            held = row[0] if row[2] or row[1] is None else row[1]
            conn.execute("UPDATE devices SET key = ?, prev_key = ?, key_confirmed = 0 WHERE device_id = ?",
                         (key, held, device_id))
            self._audit("provision", device_id, actor=actor,
                        detail="new key" + (", previous key valid until the device uses it" if held else ""))
        dev = self.registry.get(device_id)
        with self.router.lock:
            if dev is None:
                dev = self.registry.add(device_id)
            dev.prev_key = Key(held) if held else None
            dev.key = Key(key)
            dev.key_confirmed = False
            dev.tx_key = dev.prev_key or dev.key
            dev.challenge = None
        log.info("device %s provisioned (key not logged)", device_id)
        return {"device_id": device_id, "key": key.hex(), "reprovisioned": held is not None}

    def pair(self, device_id, staff_id, window, staff_name="", replace=False, actor="", bitmaps=()):
        check_device_id(device_id)
        _text(staff_id, "staff_id")
        _text(window, "window")
        _text(staff_name, "staff_name", required=False, free=True)
        bms = [check_bitmap(b, "bitmaps[%d]" % i) for i, b in enumerate(bitmaps or [])]
        if self.registry.get(device_id) is None:
            raise NotProvisioned("device %s is not provisioned: its key is written over the USB cable"
                                 " first (hcp tool provision)" % device_id)
        refused = None
        with self._writing("the binding") as conn:
            current = self._conflicts(device_id, staff_id, window)
            if current and not replace:
                # The refusal is audited (committed), then raised.
                self._audit("refuse", device_id, staff_id, window, actor, "already bound: %s" % current)
                refused = BindingError("refused: would break one code, one account; current: %s"
                                       % ", ".join("%(device_id)s = %(staff_id)s @ %(window)s" % c for c in current))
                refused.current = current
            else:
                for c in current:
                    conn.execute("DELETE FROM bindings WHERE device_id = ?", (c["device_id"],))
                    self._audit("unbind", c["device_id"], c["staff_id"], c["window"], actor,
                                "replaced by %s = %s @ %s" % (device_id, staff_id, window))
                conn.execute("INSERT INTO bindings (device_id, staff_id, window, staff_name, bound_at)"
                             " VALUES (?, ?, ?, ?, ?)", (device_id, staff_id, window, staff_name, time.time()))
                for slot, w, h, data in bms:
                    conn.execute("INSERT OR REPLACE INTO bitmaps (device_id, slot, width, height, data)"
                                 " VALUES (?, ?, ?, ?, ?)", (device_id, slot, w, h, data))
                self._audit("replace" if current else "bind", device_id, staff_id, window, actor, "")
        if refused is not None:
            raise refused
        with self.router.lock:
            for c in current:
                other = self.registry.get(c["device_id"])
                if other is not None:
                    other.binding = None
            dev = self.registry.get(device_id)
            dev.binding = {"staff_id": staff_id, "window": window, "staff_name": staff_name}
        for c in current:
            if c["device_id"] != device_id:
                self._send_unbind(c["device_id"], c["staff_id"])
        sent = False
        if dev.online and dev.link is not None:
            try:
                self.router.send_bind(dev)
                sent = True
            except (OSError, DeviceNotConnected) as err:
                log.warning("bind %s: %s (sent at its next hello)", device_id, err)
        return {"device_id": device_id, "staff_id": staff_id, "window": window,
                "staff_name": staff_name, "replaced": current, "sent": sent}

    def _send_unbind(self, device_id, staff_id):
        dev = self.registry.get(device_id)
        if dev is None or not dev.online:
            return False
        try:
            self.router.send(dev, {"type": "unbind", "staff_id": staff_id})
            return True
        except (OSError, DeviceNotConnected) as err:
            log.warning("unbind %s: %s (sent at its next hello)", device_id, err)
            return False

    def unpair(self, device_id, actor=""):
        check_device_id(device_id)
        with self._writing("the unbinding") as conn:
            cur = self._conflicts(device_id, "\x00", "\x00")
            if not cur:
                raise NotFound("device %s is not bound" % device_id)
            conn.execute("DELETE FROM bindings WHERE device_id = ?", (device_id,))
            self._audit("unbind", device_id, cur[0]["staff_id"], cur[0]["window"], actor, "")
        dev = self.registry.get(device_id)
        if dev is not None:
            with self.router.lock:
                dev.binding = None
        sent = self._send_unbind(device_id, cur[0]["staff_id"])
        return {"device_id": device_id, "unbound": cur[0], "sent": sent}

    def bitmap(self, device_id, bitmap, store=True):
        check_device_id(device_id)
        slot, w, h, data = check_bitmap(bitmap)
        dev = self.registry.get(device_id)
        if dev is None:
            raise NotFound("no device %s" % device_id)
        if store:
            with self._writing("the bitmap") as conn:
                conn.execute("INSERT OR REPLACE INTO bitmaps (device_id, slot, width, height, data)"
                             " VALUES (?, ?, ?, ?, ?)", (device_id, slot, w, h, data))
        try:
            frames = self.router.send_bitmap(dev, slot, w, h, data)
        except (OSError, DeviceNotConnected) as err:
            if store:
                return {"device_id": device_id, "slot": slot, "frames": 0, "sent": False,
                        "stored": True, "note": str(err)}
            raise DeviceNotConnected(str(err)) from err
        return {"device_id": device_id, "slot": slot, "frames": frames, "sent": True, "stored": store}

    def get_bitmap(self, device_id, slot=None):
        """One stored bitmap {"slot", "width", "height", "data": base64}, or
        with slot None the list of stored slots (without data)."""
        check_device_id(device_id)
        with self.lock:
            if slot is None:
                rows = self.conn.execute("SELECT slot, width, height FROM bitmaps WHERE device_id = ?"
                                         " ORDER BY slot", (device_id,)).fetchall()
                return {"device_id": device_id, "bitmaps": [
                    {"slot": r[0], "width": r[1], "height": r[2]} for r in rows]}
            row = self.conn.execute("SELECT width, height, data FROM bitmaps WHERE device_id = ? AND slot = ?",
                                    (device_id, slot)).fetchone()
        if row is None:
            raise NotFound("no bitmap in slot %d of %s" % (slot, device_id))
        return {"device_id": device_id, "slot": slot, "width": row[0], "height": row[1],
                "data": base64.b64encode(row[2]).decode()}

    def bindings(self):
        with self.lock:
            rows = self.conn.execute("SELECT device_id, staff_id, window, staff_name, bound_at FROM bindings"
                                     " ORDER BY window").fetchall()
        return [dict(zip(("device_id", "staff_id", "window", "staff_name", "bound_at"), r, strict=True))
                for r in rows]

    def audit(self, limit=100):
        with self.lock:
            rows = self.conn.execute("SELECT id, at, action, device_id, staff_id, window, actor, detail"
                                     " FROM audit ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [dict(zip(("id", "at", "action", "device_id", "staff_id", "window", "actor", "detail"), r,
                         strict=True)) for r in rows]
