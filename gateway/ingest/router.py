"""The router: every frame from every transport comes through here.

A transport (serial port, MQTT) splits its bytes into packets with
`protocol.reader.Reader.packets` and hands them to `Router.packets(link, ...)`
with the `Link` they came on. The router checks each frame (CRC, then the
device's key and replay state, docs/link.md "Keys" and "Sessions"), keeps
the registry up to date, answers `hello`, and queues events for the commit
thread. Everything the gateway sends to a device goes out through
gateway/devices/commands.py (the stamp: session, seq, tag; commands kept until
confirmed), which the router is given.

What the router tells others, each given to it when it is made: a device
that came online or sent its health (`on_device(dev, what)`), an invitation
a device refused (`on_invite_refused(invitation_id, code, detail)`).

Acceptance: the device is provisioned (its key was written over the USB
cable and registered, gateway/devices/pairing.py), the frame carries the tag of its
key (or, until the device is seen using a new key, of the previous one),
and its (session, seq) comes strictly after the last accepted one, by no
more than MAX_SESSION_JUMP sessions or MAX_SEQ_JUMP frames. Nothing else
changes any state: a refused frame is counted under its kind (`untagged`,
`badtag`, `replay`, `jump`, `unknown`, `direction`, `topic`) and dropped,
and unprovisioned devices get no answer at all (a serial port's hello is
remembered in the registry's small `heard` table, for the technician).

A frame with a good tag that is refused as a replay or a jump may be an old
frame played back, or the device itself after something moved its replay
state where it cannot follow (a forged jump by someone holding its key, a
restored database). The router then checks that the device is there: it
sends a `time` command (at most one per CHALLENGE_EVERY_S) and takes a `done`
naming that command's seq, with a good tag, as proof; that frame's (session,
seq) becomes the replay state. No recording can hold that answer (the seq
is new), so a playback never moves the state, and the device is never
locked out.
"""

import logging
import time
from typing import NamedTuple

from gateway import records
from gateway.devices import registry as reg
from gateway.errors import DeviceNotConnected as NotConnected
from gateway.store.commit import Event
from protocol import frame as _frame
from protocol import messages as M
from protocol.errors import ProtocolError

log = logging.getLogger("hcp.gateway.ingest.router")

CLOCK_TOLERANCE_S = 2.0  # a device clock further off than this is set again
# How far a device's (session, seq) may move in one step. A session is a
# boot: a thousand boots unheard is a crash loop while the gateway was off;
# a million frames in one boot unheard is months of hellos. Beyond either,
# the device proves it is there (the challenge) and is taken where it is.
MAX_SESSION_JUMP = 1000
MAX_SEQ_JUMP = 1_000_000
CHALLENGE_EVERY_S = 2.0
CHALLENGE_TTL_S = 10.0


class Challenge(NamedTuple):
    """The liveness check sent to a device (module docstring)."""

    seq: int  # of the `time` command its `done` must name
    until: float  # when that answer no longer counts


class Link:
    """Where a device was heard: a serial port or its MQTT topic pair.
    Subclasses implement send(data)."""

    name = "?"
    expect_device = None  # MQTT: the device id in the topic
    physical = False  # a cable to one device (serial): hellos of unknown devices are remembered

    def __init__(self):
        self.device = None  # the device last heard on this link

    def send(self, data):
        raise NotImplementedError


class Router:
    """registry: the devices; committer: where events and registry writes
    go (put_event, call); commands: gateway/devices/commands.py; cfg: the config
    (hall). on_device(dev, what): "online" / "health"; on_invite_refused
    (invitation_id, code, detail)."""

    def __init__(self, registry, committer, commands, cfg, on_device=None, on_invite_refused=None):
        self.registry = registry
        self.committer = committer
        self.commands = commands
        self.cfg = cfg
        self.lock = registry.device_lock
        self.device_errors = {}  # error code -> count (errors devices sent us)
        self.on_device = on_device
        self.on_invite_refused = on_invite_refused

    # --- inbound -----------------------------------------------------------
    def packets(self, link, packets, reader):
        """Check and dispatch COBS packets from `link`; bad ones are counted
        in `reader.errors` (line errors) or the registry (auth)."""
        for packet in packets:
            now = time.time()
            try:
                fr = _frame.decode(packet)
                if fr.tag is None and link.expect_device is not None:
                    # A topic names its device, which holds a key: an untagged
                    # frame there is refused before its fields cost anything
                    # (a flood on a device's topic, docs/security.md).
                    self.registry.count_rejected("untagged", self.registry.get(link.expect_device))
                    continue
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
        dev = self.registry.get(device_id)
        if dev is None:
            self.registry.count_rejected("unknown")
            if code == M.HELLO and link.physical:
                self.registry.hear(device_id, link.name, msg, now)
            return
        with self.lock:
            if not self._accept(dev, link, fr, msg, now):
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
            self.commands.downlink.answered(dev.device_id, msg["ref_seq"])
        else:
            self._error(dev, msg)

    def _accept(self, dev, link, fr, msg, now):
        """Tag, then replay order (module docstring); under self.lock."""
        reject = self.registry.count_rejected
        if fr.tag is None:
            reject("untagged", dev)
            return False
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
        last = dev.replay
        fresh = (fr.session == last.session and last.seq < fr.seq <= last.seq + MAX_SEQ_JUMP) or (
            last.session < fr.session <= last.session + MAX_SESSION_JUMP) or (
            last.session == last.seq == 0)  # never heard since provisioning
        if not fresh:
            ch = dev.challenge
            if not (ch is not None and fr.mtype == M.DONE and msg["ref_seq"] == ch.seq
                    and now <= ch.until):
                reject("replay" if (fr.session, fr.seq) <= (last.session, last.seq) else "jump", dev)
                self._challenge(dev, link, used, now)
                return False
            log.warning("device %s proved it is there at session %d seq %d (the replay state was"
                        " %d/%d): taken from here", dev.device_id, fr.session, fr.seq,
                        last.session, last.seq)
            dev.challenge = None
        last.session = fr.session
        last.seq = fr.seq
        self.registry.mark_replay(dev)
        dev.tx_key = used
        if used is dev.key and not dev.key_confirmed:
            dev.key_confirmed = True
            dev.prev_key = None
            device_id = dev.device_id
            self.committer.call(lambda conn: reg.save_key_confirmed(conn, device_id))
        return True

    def _challenge(self, dev, link, key, now):
        """Ask whoever holds the key on `link` to answer a new command."""
        ch = dev.challenge
        if ch is not None and now < ch.until - CHALLENGE_TTL_S + CHALLENGE_EVERY_S:
            return
        msg = {"type": "time", "time": int(now), "tz_min": self.cfg.hall.tz_offset_min,
               "session": self.commands.session}
        try:
            seq = self.commands.stamp(link, msg, key)
        except OSError:
            return
        dev.challenge = Challenge(seq, now + CHALLENGE_TTL_S)

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
            self.commands.send_time(dev)
            self.commands.send_config(dev)
            self.commands.sync_binding(dev, msg["staff_id"])
        except (NotConnected, OSError) as err:
            log.warning("answering hello of %s: %s", dev.device_id, err)

    def _health(self, dev, msg, now):
        dev.health = {k: msg[k] for k in ("uptime_ms", "time", "free_heap", "journal_depth",
                                          "journal_free", "dropped", "corrupt", "uninvited",
                                          "stuck", "fw", "staff_id", "display_fault",
                                          "rx_overruns")}
        dev.fw = msg["fw"]
        dev.reported_staff = msg["staff_id"]
        dev.clock_offset_s = (msg["time"] - now) if msg["time"] else None
        dev.uptime_ref = (dev.boot, msg["uptime_ms"], now) if dev.boot else dev.uptime_ref
        self._seen(dev, now)
        if dev.clock_offset_s is None or abs(dev.clock_offset_s) > CLOCK_TOLERANCE_S:
            try:  # never set, or drifted: the gateway sets the device clock
                self.commands.send_time(dev)
            except (NotConnected, OSError) as err:
                log.warning("setting the clock of %s: %s", dev.device_id, err)
        self._notify(dev, "health")

    def _error(self, dev, msg):
        code = msg["code"]
        if msg["ref_seq"]:
            self.commands.downlink.answered(dev.device_id, msg["ref_seq"], refused=True)
        with self.lock:
            self.device_errors[code] = self.device_errors.get(code, 0) + 1
        inv = self.commands.refused_invite(dev.device_id, msg["ref_seq"])
        log.warning("device %s reports error %d (ref seq %d): %s", dev.device_id, code,
                    msg["ref_seq"], msg["detail"])
        if inv is not None and self.on_invite_refused is not None:
            self.on_invite_refused(inv, code, msg["detail"])

    def _notify(self, dev, what):
        if self.on_device is None:
            return
        try:
            self.on_device(dev, what)
        except Exception:
            log.exception("on_device")
