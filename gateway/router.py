"""The router: every frame from every transport comes through here.

A transport (serial port, MQTT) splits its bytes into packets with
`protocol.reader.Reader.packets` and hands them to `Router.packets(link, ...)`
with the `Link` they came on. The router checks each frame (CRC, then the
device's key and replay state, docs/link.md "Pairing" and "Sessions"), keeps
the registry up to date, answers `hello`, and queues events for the commit
thread. Everything the gateway sends to a device goes out through `send()`,
which stamps the gateway's session and its one process-wide seq counter and
tags the frame with the key the device holds.

Acceptance, per device:
- no key in the registry (never paired): `hello` and `health` only;
- keyed: every frame tagged with the key (or, while a re-key is pending, the
  previous key), strictly after the last accepted (session, seq); the one
  exception is the untagged `hello` with paired = 0 of a device whose first
  pairing was interrupted (key created, never seen used), answered with the
  `bind` it missed.
Everything else is dropped and counted under its kind (`untagged`, `badtag`,
`replay`, `unpaired`, `direction`, `topic`, `unknown`, `too_many`).
"""

import collections
import itertools
import logging
import threading
import time

from gateway import fastencode, records
from gateway import registry as reg
from gateway.commit import Event
from gateway.downlink import CONFIRMED, Downlink
from gateway.errors import DeviceNotConnected as NotConnected
from protocol import frame as _frame
from protocol import messages as M
from protocol.errors import ProtocolError

log = logging.getLogger("hcp.gateway.router")

CLOCK_TOLERANCE_S = 2.0  # a device clock further off than this is set again
ACK_IDS_PER_FRAME = 200  # 33 + 2 + 8 * 200 bytes: well under MAX_PAYLOAD
BITMAP_CHUNK = 128  # bytes of image per bitmap frame (a 64K device has ~0.6 KB free blocks)


class Link:
    """Where a device was heard: a serial port or its MQTT topic pair.
    Subclasses implement send(data)."""

    name = "?"
    expect_device = None  # MQTT: the device id in the topic

    def __init__(self):
        self.device = None  # the device last heard on this link

    def send(self, data):
        raise NotImplementedError


class Router:
    def __init__(self, registry, committer, cfg, session, read_conn=None):
        self.registry = registry
        self.committer = committer
        self.cfg = cfg
        self.session = session
        self._seq = itertools.count(1)
        # Taking a seq and writing the frame happen under one lock: two
        # threads sending to one device (the commit thread's ACKs, a hello
        # answer, the API) must not put seq 11 on the wire before seq 10, or
        # the device refuses 10 as a replay. Writes never block (serial
        # buffers, MQTT queues), so the lock is held for microseconds.
        self._send_lock = threading.Lock()
        self.lock = threading.RLock()
        self.read_conn = read_conn  # for bitmaps; used under self.lock
        self.pending_invites = collections.OrderedDict()  # (device_id, seq) -> invitation id
        self.downlink = Downlink()  # commands not yet confirmed by `done`
        self.device_errors = {}  # error code -> count (errors devices sent us)
        self.listeners = []  # fn(dev, what) on "online" / "health"
        self.on_invite_refused = None  # fn(invitation_id, code, detail)

    # --- inbound -----------------------------------------------------------
    def packets(self, link, packets, reader):
        """Check and dispatch COBS packets from `link`; bad ones are counted
        in `reader.errors` (line errors) or the registry (auth)."""
        for packet in packets:
            now = time.time()
            try:
                fr = _frame.decode(packet)
                msg = M.parse(fr)
            except ProtocolError as err:
                reader.count(err.kind)
                continue
            try:
                self.frame(link, fr, msg, now)
            except Exception:  # never let one frame kill a reader
                log.exception("handling %s from %s", msg.get("type"), link.name)
                reader.count("internal")

    def frame(self, link, fr, msg, now):
        code = fr.mtype
        if code not in (M.HELLO, M.EVENT, M.HEALTH, M.ERROR, M.DONE):
            self.registry.count_rejected("direction")
            return
        device_id = msg.get("device_id") or (link.device.device_id if link.device else None)
        if device_id is None:
            self.registry.count_rejected("unknown")
            return
        if link.expect_device is not None and device_id != link.expect_device:
            self.registry.count_rejected("topic")
            return
        create = code in (M.HELLO, M.HEALTH)
        dev = self.registry.get(device_id, create=create)
        if dev is None:
            self.registry.count_rejected("too_many" if create else "unpaired")
            return
        with self.lock:
            if not self._accept(dev, fr, msg):
                return
            dev.frames += 1
            dev.last_seen = now
            if dev.first_seen is None:
                dev.first_seen = now
            dev.link = link
            link.device = dev
            came_online = not dev.online
            dev.online = True
        if came_online:
            self._notify(dev, "online")
        if code == M.EVENT:
            self._event(dev, msg, now)
        elif code == M.HELLO:
            self._hello(dev, msg, now)
        elif code == M.HEALTH:
            self._health(dev, msg, now)
        elif code == M.DONE:
            self.downlink.answered(dev.device_id, msg["ref_seq"])
        else:
            self._error(dev, msg)

    def _accept(self, dev, fr, msg):
        code = fr.mtype
        reject = self.registry.count_rejected
        confirm = False
        if dev.key is None and dev.prev_key is None:
            if code not in (M.HELLO, M.HEALTH, M.DONE):
                reject("unpaired", dev)
                return False
            if code == M.HELLO:
                dev.replay = _frame.Replay()  # nothing to authenticate: start afresh
            used = None
        elif fr.tag is None:
            if (code == M.HELLO and msg["paired"] == 0 and not dev.key_confirmed
                    and dev.prev_key is None):
                dev.replay = _frame.Replay()  # interrupted first pairing
                used = None
            elif code == M.DONE and not dev.key_confirmed and dev.prev_key is None:
                # Confirms a command sent before the device got its first
                # key (time, config): harmless, it only ends a resend.
                used = None
            else:
                reject("untagged", dev)
                return False
        else:
            used = None
            for key in (dev.key, dev.prev_key):
                if key is None:
                    continue
                try:
                    fr.verify(key)
                except ProtocolError:
                    continue
                used = key
                break
            if used is None:
                reject("badtag", dev)
                return False
            confirm = used is dev.key and not dev.key_confirmed
        try:
            dev.replay.accept(fr)
        except ProtocolError:
            reject("replay", dev)
            return False
        if used is not None or code != M.DONE:
            dev.tx_key = used  # answer with what the device holds (an untagged done says nothing of that)
        if confirm:
            dev.key_confirmed = True
            dev.prev_key = None
            device_id = dev.device_id
            self.committer.call(lambda conn: reg.save_key_confirmed(conn, device_id))
        return True

    def _event(self, dev, msg, now):
        ts, source = records.press_time(msg["time"], msg["uptime_ms"], msg["boot"], now, dev.uptime_ref)
        self.committer.put_event(Event(msg, dev, now, ts, source))

    def _seen(self, dev, now):
        self.committer.call(lambda conn: reg.save_seen(conn, dev, now))

    def _hello(self, dev, msg, now):
        dev.fw, dev.board, dev.boot = msg["fw"], msg["board"], msg["boot"]
        dev.reported_staff = msg["staff_id"]
        dev.reported_paired = msg["paired"]
        dev.uptime_ref = (msg["boot"], msg["uptime_ms"], now)
        dev.health = dict(dev.health, journal_depth=msg["journal_depth"])
        self._seen(dev, now)
        try:
            self.send_time(dev)
            self.send_config(dev)
            self.sync_binding(dev, msg["staff_id"], msg["paired"])
        except (NotConnected, OSError) as err:
            log.warning("answering hello of %s: %s", dev.device_id, err)

    def _health(self, dev, msg, now):
        dev.health = {k: msg[k] for k in ("uptime_ms", "time", "free_heap", "journal_depth",
                                          "journal_free", "dropped", "corrupt", "uninvited",
                                          "stuck", "fw", "staff_id")}
        dev.fw = msg["fw"]
        dev.reported_staff = msg["staff_id"]
        dev.clock_offset_s = (msg["time"] - now) if msg["time"] else None
        dev.uptime_ref = (dev.boot, msg["uptime_ms"], now) if dev.boot else dev.uptime_ref
        self._seen(dev, now)
        if dev.clock_offset_s is None or abs(dev.clock_offset_s) > CLOCK_TOLERANCE_S:
            try:  # never set, or drifted: the gateway sets the device clock
                self.send_time(dev)
            except (NotConnected, OSError) as err:
                log.warning("setting the clock of %s: %s", dev.device_id, err)
        self._notify(dev, "health")

    def _error(self, dev, msg):
        code = msg["code"]
        if msg["ref_seq"]:
            self.downlink.answered(dev.device_id, msg["ref_seq"], refused=True)
        with self.lock:
            self.device_errors[code] = self.device_errors.get(code, 0) + 1
            inv = self.pending_invites.pop((dev.device_id, msg["ref_seq"]), None)
        log.warning("device %s reports error %d (ref seq %d): %s", dev.device_id, code,
                    msg["ref_seq"], msg["detail"])
        if inv is not None and self.on_invite_refused is not None:
            self.on_invite_refused(inv, code, msg["detail"])

    def _notify(self, dev, what):
        for fn in self.listeners:
            try:
                fn(dev, what)
            except Exception:
                log.exception("listener")

    # --- outbound ----------------------------------------------------------
    def send(self, dev, msg, key=None, use_tx_key=True, deadline=None):
        """Encode and send one message to `dev` on its link; return its seq.
        Commands are kept until the device confirms them (gateway/downlink.py)."""
        link = dev.link
        if link is None or not dev.online:
            raise NotConnected("device %s is not connected" % dev.device_id)
        msg["session"] = self.session
        with self._send_lock:
            msg["seq"] = next(self._seq)
            data = M.encode(msg, dev.tx_key if use_tx_key else key)
            link.send(data)
        if msg["type"] in CONFIRMED:
            self.downlink.sent(dev.device_id, msg["seq"], msg, (key, use_tx_key), deadline=deadline)
        return msg["seq"]

    def resend_due(self, now=None):
        """Send again every command whose confirmation is overdue (called
        about once a second by the health monitor)."""
        for p in self.downlink.due(now):
            dev = self.registry.get(p.device_id)
            if dev is None:
                continue
            msg = dict(p.msg)
            key, use_tx_key = p.key_args
            try:
                link = dev.link
                if link is None or not dev.online:
                    raise NotConnected(dev.device_id)
                msg["session"] = self.session
                with self._send_lock:
                    msg["seq"] = next(self._seq)
                    link.send(M.encode(msg, dev.tx_key if use_tx_key else key))
            except (NotConnected, OSError):
                self.downlink.hold(p, now)
                continue
            if msg["type"] == "invite":
                with self.lock:
                    self.pending_invites[(dev.device_id, msg["seq"])] = msg["invitation"]
            self.downlink.requeue(p, msg["seq"], now)

    def send_ack(self, dev, ids):
        """What send() does with {"type": "ack", "device_id", "ids"} (at most
        ACK_IDS_PER_FRAME ids per frame), encoded by gateway/fastencode.py."""
        link = dev.link
        if link is None or not dev.online:
            raise NotConnected("device %s is not connected" % dev.device_id)
        for i in range(0, len(ids), ACK_IDS_PER_FRAME):
            with self._send_lock:
                link.send(fastencode.ack(self.session, next(self._seq), dev.device_id,
                                         ids[i:i + ACK_IDS_PER_FRAME], dev.tx_key))

    def send_time(self, dev):
        self.send(dev, {"type": "time", "time": int(time.time()),
                        "tz_min": self.cfg.hall.tz_offset_min})

    def send_config(self, dev):
        d = self.cfg.device
        self.send(dev, {"type": "config", "invite_timeout_s": d.invite_timeout_s,
                        "heartbeat_s": d.heartbeat_s, "stuck_ms": d.stuck_ms,
                        "reasons_version": d.reasons_version, "reasons": self.cfg.reason_codes})

    def send_invite(self, dev, invitation, cases, timeout_s):
        # A new invitation supersedes any older one still being resent: a
        # late resend would reopen it on the device and close this one.
        self.downlink.forget(dev.device_id, kinds=("invite",))
        # Resent until confirmed, but never after it would have timed out.
        seq = self.send(dev, {"type": "invite", "invitation": invitation, "cases": cases,
                              "timeout_s": timeout_s}, deadline=time.time() + timeout_s)
        with self.lock:
            self.pending_invites[(dev.device_id, seq)] = invitation
            while len(self.pending_invites) > 1000:
                self.pending_invites.popitem(last=False)
        return seq

    def send_cancel(self, dev, invitation):
        # Stop resending the invite being withdrawn before withdrawing it.
        self.downlink.forget_invite(dev.device_id, invitation)
        return self.send(dev, {"type": "cancel", "invitation": invitation})

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
        """Send the registry's binding; a new key if the device lacks it."""
        b = dev.binding
        new_key = dev.key is not None and dev.tx_key is not dev.key
        self.send(dev, {"type": "bind", "staff_id": b["staff_id"], "window": b["window"],
                        "key": dev.key.raw if new_key else b""})
        # The device holds the new key from here on: the card that follows is
        # tagged with it. (Should the bind be lost, the device's next frame,
        # tagged with what it really holds, sets tx_key back.)
        dev.tx_key = dev.key
        self.send_bitmaps(dev)

    def sync_binding(self, dev, reported_staff, reported_paired):
        """After a hello: give the device what it lacks (docs/link.md, start of a link)."""
        if dev.binding is not None:
            lacks_key = dev.key is not None and dev.tx_key is not dev.key
            if lacks_key or reported_staff != dev.binding["staff_id"]:
                self.send_bind(dev)
        elif reported_staff and dev.tx_key is not None:
            self.send(dev, {"type": "unbind", "staff_id": reported_staff})
