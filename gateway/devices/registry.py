"""The device registry: what the gateway knows about each evaluator.

In memory, one `Device` per provisioned device: its keys and replay state
(checked on every frame, so never a database read on the hot path), the link
it was last heard on, its last hello/health, its binding. The database holds
the durable part (devices, bindings, bitmaps tables); `load()` rebuilds the
memory side at start, and writers (the commit thread for health and replay
state, gateway.devices.pairing for keys and bindings) update both.

A device enters the registry only when the technician provisions its key
(`gateway.devices.pairing.Pairing.provision`, over the USB cable: docs/link.md
"Keys"); nothing heard on a line or a topic creates one. What an
unprovisioned device says in its hello is kept in `heard`, a small table of
fixed size (the technician's "which device is on this port?"), and only
for serial ports.

Keys: `key` is the key the device was provisioned with; while a re-provision
is not yet confirmed, `prev_key` is the one the device may still hold.
`tx_key` is the key the device was last seen using, so frames to it are
tagged with what it can check.

Replay: `replay` is the last accepted (session, seq) of the device. It is
persisted (devices.replay_session, replay_seq) in the commit thread's
transactions (`mark_replay` / `flush_replay`), so a frame captured before a
gateway restart is still a replay after it.
"""

import collections
import json
import threading
import time

from gateway.devices.keys import Key
from gateway.store.manyrows import update_many
from protocol import frame as _frame


class Device:
    __slots__ = (
        "device_id", "key", "prev_key", "key_confirmed", "tx_key", "replay", "link",
        "first_seen", "last_seen", "online", "fw", "board", "boot", "reported_staff",
        "reported_paired", "health", "clock_offset_s", "uptime_ref", "binding", "rejected",
        "frames", "events", "duplicates", "challenge",
    )

    def __init__(self, device_id):
        self.device_id = device_id
        self.key = None  # gateway.devices.keys.Key
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
        self.challenge = None  # gateway.ingest.router.Challenge: the liveness check sent

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
            "display_fault": bool(h.get("display_fault")),
            "clock_offset_s": self.clock_offset_s,
            "counters": {k: h.get(k) for k in ("dropped", "corrupt", "uninvited", "free_heap", "rx_overruns")
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


HEARD_MAX = 64  # unprovisioned devices remembered (serial ports only)


class Registry:
    """All provisioned devices, by id and by window. Thread-safe for lookups
    and updates. Devices are added by provisioning and by load(), never by
    what arrives on a line, so no flood of made-up hellos can grow it."""

    def __init__(self):
        self.lock = threading.RLock()  # the registry's own tables
        # Device state (keys, replay, link, binding): taken by the router for
        # each frame, by pairing and by the commands sent (a lock of its own,
        # so that reading the registry never waits for a frame being checked).
        self.device_lock = threading.RLock()
        self.devices = {}
        self.rejected = {}  # kind -> count, all devices (and unknown senders)
        self.heard = collections.OrderedDict()  # device_id -> what its hello said (HEARD_MAX)
        self.on_added = []  # fn(dev) when a device is provisioned
        self._replay_dirty = {}  # device_id -> (session, seq) not yet written

    def count_rejected(self, kind, dev=None):
        with self.lock:
            self.rejected[kind] = self.rejected.get(kind, 0) + 1
            if dev is not None:
                dev.count_rejected(kind)

    def get(self, device_id):
        """The provisioned device, or None."""
        return self.devices.get(device_id)

    def add(self, device_id):
        """The device, created if new (provisioning and load only)."""
        with self.lock:
            dev = self.devices.get(device_id)
            if dev is None:
                dev = self.devices[device_id] = Device(device_id)
                self.heard.pop(device_id, None)
                new = True
            else:
                new = False
        if new:
            for fn in self.on_added:
                fn(dev)
        return dev

    def hear(self, device_id, link_name, msg, now):
        """An unprovisioned device said hello on a serial port: remember it
        (the oldest is forgotten beyond HEARD_MAX)."""
        with self.lock:
            self.heard.pop(device_id, None)
            self.heard[device_id] = {"device_id": device_id, "link": link_name, "fw": msg["fw"],
                                     "board": msg["board"], "boot": msg["boot"], "last_seen": now}
            while len(self.heard) > HEARD_MAX:
                self.heard.popitem(last=False)

    def unprovisioned(self):
        with self.lock:
            return list(self.heard.values())

    def mark_replay(self, dev):
        """The device's replay state moved: written at the next commit."""
        self._replay_dirty[dev.device_id] = (dev.replay.session, dev.replay.seq)

    def flush_replay(self, conn):
        """Write the replay states that moved (in the commit thread's transaction)."""
        if not self._replay_dirty:
            return
        with self.lock:
            dirty, self._replay_dirty = self._replay_dirty, {}
        update_many(conn, "devices", ("replay_session", "replay_seq"), "device_id",
                    [(s, q, d) for d, (s, q) in dirty.items()])

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
        """Rebuild the memory side from the database (at start). A row
        without a key is a device heard before provisioning existed: not
        loaded (it must be provisioned)."""
        with self.lock:
            for (device_id, first_seen, last_seen, fw, board, boot, reported_staff, health, clock_offset_s,
                 key, prev_key, key_confirmed, replay_session, replay_seq) in conn.execute(
                    "SELECT device_id, first_seen, last_seen, fw, board, boot, reported_staff, health,"
                    " clock_offset_s, key, prev_key, key_confirmed, replay_session, replay_seq"
                    " FROM devices WHERE key IS NOT NULL"):
                dev = self.devices[device_id] = Device(device_id)
                dev.first_seen, dev.last_seen, dev.fw, dev.board = first_seen, last_seen, fw, board
                dev.boot, dev.reported_staff = boot, reported_staff
                dev.health = json.loads(health or "{}")
                dev.clock_offset_s = clock_offset_s
                dev.key = Key(key)
                dev.prev_key = Key(prev_key) if prev_key else None
                dev.key_confirmed = bool(key_confirmed)
                dev.tx_key = dev.key if dev.key_confirmed or dev.prev_key is None else dev.prev_key
                dev.replay = _frame.Replay(replay_session or 0, replay_seq or 0)
            for device_id, staff_id, window, name in conn.execute(
                    "SELECT device_id, staff_id, window, staff_name FROM bindings"):
                dev = self.devices.get(device_id)
                if dev is not None:
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
