"""Everything the gateway sends to a device (the router, gateway/ingest/router.py,
is everything it receives).

Every frame out is stamped here: the gateway's session and the next seq of
its one process-wide counter, tagged with the key the device was last seen
using (`dev.tx_key`). Taking a seq and writing the frame happen under one
lock: two threads sending to one device (the commit thread's ACKs, a hello
answer, the API) must not put seq 11 on the wire before seq 10, or the
device refuses 10 as a replay. Writes never block (serial buffers, MQTT
queues), so the lock is held for microseconds.

Commands (invite, cancel, time, bind, unbind, bitmap, config) are kept by
the downlink until the device confirms them (gateway/devices/downlink.py) and sent
again by `resend_due` (about once a second). An invitation the device
refuses (its `error` names the invite's seq) is found by `refused_invite`.
ACKs go out through `send_ack`, encoded by gateway/devices/fastencode.py.

`lock` is the registry's lock of device state (keys, binding, link), taken
by the router, pairing and the bitmaps read here.
"""

import collections
import itertools
import threading
import time

from gateway.devices import fastencode
from gateway.devices.downlink import CONFIRMED, Downlink
from gateway.errors import DeviceNotConnected as NotConnected
from protocol import messages as M

ACK_IDS_PER_FRAME = 200  # 33 + 2 + 8 * 200 bytes: well under MAX_PAYLOAD
BITMAP_CHUNK = 128  # bytes of image per bitmap frame (a 64K device has ~0.6 KB free blocks)
PENDING_INVITES = 1000  # invite seqs remembered for a refusal (all devices)


class Commands:
    """registry: gateway.devices.registry.Registry; cfg: gateway.config (hall, device,
    reason_codes); session: the gateway's start counter; read_conn: a
    database connection for the stored bitmaps (used under `lock`)."""

    def __init__(self, registry, cfg, session, read_conn=None):
        self.registry = registry
        self.cfg = cfg
        self.session = session
        self.lock = registry.device_lock
        self.read_conn = read_conn
        self.downlink = Downlink()  # commands not yet confirmed by `done`
        self.pending_invites = collections.OrderedDict()  # (device_id, seq) -> invitation id
        self._seq = itertools.count(1)
        self._send_lock = threading.Lock()

    # --- the stamp -----------------------------------------------------------
    def stamp(self, link, msg, key):
        """Put `msg` (with its session) on `link`, tagged with `key`, as the
        next seq; return the seq."""
        with self._send_lock:
            msg["seq"] = next(self._seq)
            link.send(M.encode(msg, key))
        return msg["seq"]

    def _link(self, dev):
        link = dev.link
        if link is None or not dev.online:
            raise NotConnected("device %s is not connected" % dev.device_id)
        return link

    def send(self, dev, msg, deadline=None):
        """Encode and send one message to `dev` on its link; return its seq.
        Commands are kept until the device confirms them."""
        link = self._link(dev)
        msg["session"] = self.session
        seq = self.stamp(link, msg, dev.tx_key)
        if msg["type"] in CONFIRMED:
            self.downlink.sent(dev.device_id, seq, msg, deadline=deadline)
        return seq

    def send_ack(self, dev, ids):
        """What send() does with {"type": "ack", "device_id", "ids"} (at most
        ACK_IDS_PER_FRAME ids per frame), encoded by gateway/devices/fastencode.py."""
        link = self._link(dev)
        for i in range(0, len(ids), ACK_IDS_PER_FRAME):
            with self._send_lock:
                link.send(fastencode.ack(self.session, next(self._seq), dev.device_id,
                                         ids[i:i + ACK_IDS_PER_FRAME], dev.tx_key))

    def resend_due(self, now=None):
        """Send again every command whose confirmation is overdue."""
        for p in self.downlink.due(now):
            dev = self.registry.get(p.device_id)
            if dev is None:
                continue
            msg = dict(p.msg, session=self.session)
            try:
                seq = self.stamp(self._link(dev), msg, dev.tx_key)
            except (NotConnected, OSError):
                self.downlink.hold(p, now)
                continue
            if msg["type"] == "invite":
                self._invite_sent(dev, seq, msg["invitation"])
            self.downlink.requeue(p, seq, now)

    # --- invitations -----------------------------------------------------------
    def _invite_sent(self, dev, seq, invitation):
        with self.lock:
            self.pending_invites[(dev.device_id, seq)] = invitation
            while len(self.pending_invites) > PENDING_INVITES:
                self.pending_invites.popitem(last=False)

    def refused_invite(self, device_id, ref_seq):
        """The invitation whose invite frame `ref_seq` the device refused, or None."""
        with self.lock:
            return self.pending_invites.pop((device_id, ref_seq), None)

    def send_invite(self, dev, invitation, cases, timeout_s):
        # A new invitation supersedes any older one still being resent: a
        # late resend would reopen it on the device and close this one.
        self.downlink.forget(dev.device_id, kinds=("invite",))
        # Resent until confirmed, but never after it would have timed out.
        seq = self.send(dev, {"type": "invite", "invitation": invitation, "cases": cases,
                              "timeout_s": timeout_s}, deadline=time.time() + timeout_s)
        self._invite_sent(dev, seq, invitation)
        return seq

    def send_cancel(self, dev, invitation):
        # Stop resending the invite being withdrawn before withdrawing it.
        self.downlink.forget_invite(dev.device_id, invitation)
        return self.send(dev, {"type": "cancel", "invitation": invitation})

    # --- the device's settings, clock, binding and screens ------------------------
    def send_time(self, dev):
        self.send(dev, {"type": "time", "time": int(time.time()), "tz_min": self.cfg.hall.tz_offset_min})

    def send_config(self, dev):
        d = self.cfg.device
        self.send(dev, {"type": "config", "invite_timeout_s": d.invite_timeout_s,
                        "heartbeat_s": d.heartbeat_s, "stuck_ms": d.stuck_ms,
                        "reasons_version": d.reasons_version, "reasons": self.cfg.reason_codes})

    def send_bitmap(self, dev, slot, width, height, data):
        """Send one image as bitmap frames of BITMAP_CHUNK bytes; return the count."""
        if len(data) != (width + 7) // 8 * height:
            raise ValueError("bitmap of %dx%d needs %d bytes, got %d"
                             % (width, height, (width + 7) // 8 * height, len(data)))
        n = 0
        for off in range(0, len(data), BITMAP_CHUNK):
            self.send(dev, {"type": "bitmap", "slot": slot, "width": width, "height": height,
                            "offset": off, "data": bytes(data[off:off + BITMAP_CHUNK])})
            n += 1
        return n

    def send_bitmaps(self, dev):
        """All stored bitmaps of this device (card, prompts, reason labels)."""
        if self.read_conn is None:
            return 0
        with self.lock:
            rows = self.read_conn.execute(
                "SELECT slot, width, height, data FROM bitmaps WHERE device_id = ? ORDER BY slot",
                (dev.device_id,)).fetchall()
        for slot, w, h, data in rows:
            self.send_bitmap(dev, slot, w, h, data)
        return len(rows)

    def send_bind(self, dev):
        """Send the registry's binding and the card that goes with it."""
        b = dev.binding
        self.send(dev, {"type": "bind", "staff_id": b["staff_id"], "window": b["window"]})
        self.send_bitmaps(dev)

    def sync_binding(self, dev, reported_staff):
        """After a hello: give the device what it lacks (docs/link.md, start of a link)."""
        if dev.binding is not None:
            if reported_staff != dev.binding["staff_id"]:
                self.send_bind(dev)
        elif reported_staff:
            self.send(dev, {"type": "unbind", "staff_id": reported_staff})
