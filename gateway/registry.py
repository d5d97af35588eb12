"""The device registry: what the gateway knows about each evaluator.

In memory, one `Device` per device id: its keys and replay state (checked on
every frame, so never a database read on the hot path), the link it was last
heard on, its last hello/health, its binding. The database holds the durable
part (devices, bindings, bitmaps tables); `load()` rebuilds the memory side at
start, and writers (the commit thread for health, gateway.pairing for keys and
bindings) update both.

Keys: `key` is the key the gateway wants the device to hold; while a re-key
is pending, `prev_key` is the one the device still holds. `tx_key` is the key
the device was last seen using, so frames to it are tagged with what it can
check (None = the device holds no key, frames go untagged).
"""

import json
import threading
import time

from protocol import frame as _frame
from protocol import hmac256


class Device:
    __slots__ = (
        "device_id", "key", "prev_key", "key_confirmed", "tx_key", "replay", "link",
        "first_seen", "last_seen", "online", "fw", "board", "boot", "reported_staff",
        "reported_paired", "health", "clock_offset_s", "uptime_ref", "binding", "rejected",
        "frames", "events", "duplicates",
    )

    def __init__(self, device_id):
        self.device_id = device_id
        self.key = None  # hmac256.Key
        self.prev_key = None
        self.key_confirmed = False
        self.tx_key = None
        self.replay = _frame.Replay()
        self.link = None
        self.first_seen = None
        self.last_seen = None
        self.online = False
        self.fw = ""
        self.board = ""
        self.boot = 0
        self.reported_staff = ""
        self.reported_paired = None
        self.health = {}
        self.clock_offset_s = None
        self.uptime_ref = None  # (boot, uptime_ms, gateway time)
        self.binding = None  # {"staff_id", "window", "staff_name"}
        self.rejected = {}
        self.frames = 0
        self.events = 0
        self.duplicates = 0

    @property
    def paired(self):
        """The gateway holds a key for this device (it may send events)."""
        return self.key is not None

    def count_rejected(self, kind):
        self.rejected[kind] = self.rejected.get(kind, 0) + 1

    def summary(self):
        h = self.health
        return {
            "device_id": self.device_id,
            "online": self.online,
            "paired": self.paired,
            "key_confirmed": self.key_confirmed,
            "staff_id": self.binding["staff_id"] if self.binding else "",
            "window": self.binding["window"] if self.binding else "",
            "reported_staff": self.reported_staff,
            "fw": self.fw,
            "board": self.board,
            "boot": self.boot,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "link": self.link.name if self.link is not None else "",
            "journal_depth": h.get("journal_depth"),
            "journal_free": h.get("journal_free"),
            "stuck": h.get("stuck", 0),
            "stuck_buttons": stuck_buttons(h.get("stuck", 0)),
            "clock_offset_s": self.clock_offset_s,
            "counters": {k: h.get(k) for k in ("dropped", "corrupt", "uninvited", "free_heap")
                         if k in h},
            "frames": self.frames,
            "events": self.events,
            "duplicates": self.duplicates,
            "rejected": dict(self.rejected),
        }


def stuck_buttons(mask):
    """Bit i of the health `stuck` mask is button i: bit 0 = 5★ ... bit 4 = 1★.
    Returns the stars of the stuck buttons."""
    return [5 - i for i in range(5) if mask >> i & 1]


MAX_DEVICES = 10_000  # a hall has hundreds; beyond this, unknown ids are refused (`too_many`)


class Registry:
    """All devices, by id and by window. Thread-safe for lookups and updates.
    New ids are only created up to MAX_DEVICES, so a flood of made-up hellos
    (anyone can publish to an MQTT topic) cannot exhaust memory or the disk."""

    def __init__(self):
        self.lock = threading.RLock()
        self.devices = {}
        self.rejected = {}  # kind -> count, all devices (and unknown senders)

    def count_rejected(self, kind, dev=None):
        with self.lock:
            self.rejected[kind] = self.rejected.get(kind, 0) + 1
            if dev is not None:
                dev.count_rejected(kind)

    def get(self, device_id, create=False, force=False):
        """The device, or None. create: a new one (up to MAX_DEVICES, or
        beyond with force: pairing and loading never refuse)."""
        dev = self.devices.get(device_id)
        if dev is None and create:
            with self.lock:
                dev = self.devices.get(device_id)
                if dev is None:
                    if len(self.devices) >= MAX_DEVICES and not force:
                        return None
                    dev = self.devices[device_id] = Device(device_id)
        return dev

    def by_window(self, window):
        with self.lock:
            for dev in self.devices.values():
                if dev.binding and dev.binding["window"] == window:
                    return dev
        return None

    def all(self):
        with self.lock:
            return list(self.devices.values())

    def load(self, conn):
        """Rebuild the memory side from the database (at start)."""
        with self.lock:
            for row in conn.execute(
                    "SELECT device_id, first_seen, last_seen, fw, board, boot, reported_staff, health,"
                    " clock_offset_s, key, prev_key, key_confirmed FROM devices"):
                dev = self.get(row[0], create=True, force=True)
                (dev.first_seen, dev.last_seen, dev.fw, dev.board, dev.boot,
                 dev.reported_staff) = row[1:7]
                dev.health = json.loads(row[7] or "{}")
                dev.clock_offset_s = row[8]
                dev.key = hmac256.Key(row[9]) if row[9] else None
                dev.prev_key = hmac256.Key(row[10]) if row[10] else None
                dev.key_confirmed = bool(row[11])
                dev.tx_key = dev.key if dev.key_confirmed else dev.prev_key
            for device_id, staff_id, window, name in conn.execute(
                    "SELECT device_id, staff_id, window, staff_name FROM bindings"):
                dev = self.get(device_id, create=True, force=True)
                dev.binding = {"staff_id": staff_id, "window": window, "staff_name": name}


# --- durable side, run by the commit thread inside its transaction ---------

def save_seen(conn, dev, now):
    """Upsert what a hello/health told us about a device."""
    conn.execute(
        "INSERT INTO devices (device_id, first_seen, last_seen, fw, board, boot, reported_staff,"
        " transport, health, clock_offset_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (device_id) DO UPDATE SET last_seen = excluded.last_seen, fw = excluded.fw,"
        " board = excluded.board, boot = excluded.boot, reported_staff = excluded.reported_staff,"
        " transport = excluded.transport, health = excluded.health,"
        " clock_offset_s = excluded.clock_offset_s",
        (dev.device_id, dev.first_seen or now, dev.last_seen or now, dev.fw, dev.board, dev.boot,
         dev.reported_staff, dev.link.name if dev.link is not None else "",
         json.dumps(dev.health, separators=(",", ":")), dev.clock_offset_s))


def save_key_confirmed(conn, device_id):
    conn.execute("UPDATE devices SET key_confirmed = 1, prev_key = NULL WHERE device_id = ?",
                 (device_id,))


def now():
    return time.time()
