# What the device does with each message from the gateway (docs/link.md).
# The link has already checked the frame, its tag and its replay order.

from firmware import journal, store
from firmware.rating import FALLBACK

# Message codes and error codes (protocol/README.md §4).
_DONE = 0x04
_E_STATE = 5
_E_ARG = 6
_MAX_INVITATION = 64  # bytes: with the reasons, a record must fit a slot
_CONFIG = ("invite_timeout_s", "heartbeat_s", "stuck_ms", "reasons_version", "reasons")


def obey(dev, msg, now):
    """Apply one message. Every command applied is answered `done` (refused
    ones get an `error`), so the gateway stops resending it (docs/link.md)."""
    if _apply(dev, msg, now):
        dev.link.out(_DONE, dev.device_id, msg["seq"])


def _apply(dev, msg, now):
    """True when msg was a command and it was applied."""
    t = msg["type"]
    link = dev.link
    if t == "ack":
        if msg["device_id"] == dev.device_id:
            n = 0
            for b, q in msg["ids"]:
                s = dev.journal.ack(b, q)
                if s >= 0:
                    link.acked(s, now)
                    n += 1
            if n:
                dev.journal.f.flush()
    elif t == "invite":
        inv = msg["invitation"]
        if not dev.paired():
            code = _E_STATE
        elif len(inv.encode()) > _MAX_INVITATION:
            code = _E_ARG
        else:
            code = dev.ev.invite(inv, len(msg["cases"]), msg["timeout_s"], now)
        if code:
            link.out(0x7F, code, msg["seq"], "invite")
            return False
        return True
    elif t == "cancel":
        dev.ev.cancel(msg["invitation"])
        return True
    elif t == "time":
        # The wall clock is kept as an offset from uptime: no RTC needed.
        dev.wall = msg["time"] - now // 1000
        dev.tz_min = msg["tz_min"]
        return True
    elif t == "error":
        # The gateway refused something of ours for authentication (2) or
        # does not know this device (5): introduce ourselves again. While
        # the link is down the hello timer paces this, so no loop.
        dev.gw_errors += 1
        if msg["code"] in (2, 5) and link.up:
            link.start(now)
    elif t == "bitmap":
        slot = msg["slot"]
        if slot > 47 or 3 < slot < 16 or msg["width"] > dev.screen.w \
                or msg["height"] > dev.screen.h:
            link.out(0x7F, _E_ARG, msg["seq"], "bitmap")
            return False
        store.put_bitmap(slot, msg["width"], msg["height"], msg["offset"], msg["data"])
        dev.dirty = True
        return True
    elif t == "config":
        if journal.size_of("x" * _MAX_INVITATION, msg["reasons"]) > journal.ROOM:
            link.out(0x7F, _E_ARG, msg["seq"], "reasons")
            return False
        cfg = {}
        for k in _CONFIG:
            cfg[k] = msg[k]
        old = store.get("config") or {}
        if old != cfg:
            if old.get("reasons_version") != cfg["reasons_version"]:
                for i in range(16, 48):  # labels of another list must go
                    store.drop_bitmap(i)
            store.put("config", cfg)
        configure(dev, cfg, now)
        return True
    elif t == "bind" or t == "unbind":
        # Only ever from the gateway: the link took this frame only because
        # it carries the tag of the device key, which never crosses the link.
        staff = window = ""
        if t == "bind":
            staff = msg["staff_id"]
            window = msg["window"]
        else:
            # An open invitation closes as unrated while the binding still
            # holds.
            dev.ev.close(now)
        if staff != dev.staff_id:
            store.drop_bitmap(0)  # the card of the previous staff member
        store.put("pair", {"staff_id": staff, "window": window})
        dev.staff_id = staff
        dev.window = window
        dev.dirty = True
        # The new binding is news for the gateway: health on the next turn.
        link.t_health = now
        return True
    return False


def configure(dev, cfg, now):
    dev.heartbeat_ms = (cfg["heartbeat_s"] or 30) * 1000
    if cfg["stuck_ms"]:
        dev.buttons.stuck_ms = cfg["stuck_ms"]
    # Only another list resets the reason pages: a gateway re-sends the same
    # config after every hello, maybe while a citizen is choosing.
    reasons = cfg["reasons"] or None
    if reasons != (None if dev.ev.reasons is FALLBACK else dev.ev.reasons):
        dev.ev.set_reasons(reasons)
    link = dev.link
    if link and link.t_health > now + dev.heartbeat_ms:
        link.t_health = now + dev.heartbeat_ms
    dev.dirty = True
