# The message table: type codes, field layouts, error codes, bitmap slots.
#
# Both codecs read it: protocol/messages.py (message dicts both ways, for
# the gateway, the tools and the tests) and the device's own pair,
# protocol/tx.py (frames out) and protocol/rx.py (frames in). It is its own
# module so that the device loads the table without the dict codec: on
# MicroPython every module imported is its bytecode in RAM for good.
#
# Types 0x01-0x0F travel device -> gateway, 0x10-0x2F gateway -> device,
# 0x7F (error) either way. protocol/README.md is the byte-level reference;
# protocol/fields.py describes the kinds (B H I h s y S E k).

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


HELLO = const(0x01)
EVENT = const(0x02)
HEALTH = const(0x03)
DONE = const(0x04)
ACK = const(0x10)
INVITE = const(0x11)
CANCEL = const(0x12)
TIME = const(0x13)
BIND = const(0x14)
UNBIND = const(0x15)
BITMAP = const(0x16)
CONFIG = const(0x17)
ERROR = const(0x7F)

# Error codes carried by ERROR messages.
E_FRAME = const(1)  # a frame failed its checks
E_AUTH = const(2)  # tag missing/wrong, or a replay
E_TYPE = const(3)  # unknown or wrong-direction message type
E_FULL = const(4)  # device journal full: invitations refused
E_STATE = const(5)  # message not valid in the current state
E_ARG = const(6)  # a field value the receiver cannot use

# Bitmap slots on the device (see protocol/README.md).
SLOT_CARD = const(0)
SLOT_PROMPT = const(1)
SLOT_THANKS = const(2)
SLOT_REASONS = const(3)
SLOT_REASON0 = const(16)  # reason i of the config list is slot 16 + i

# Event kinds on the wire (kind `k`): index into this tuple.
KINDS = ("", "rating", "unrated", "uninvited")

# Field layouts as one string per type ("name:kind ..."): a few hundred bytes
# of RAM on the device, where nested tuples cost several kilobytes.
SCHEMA = {
    HELLO: ("hello", "device_id:s fw:s board:s boot:I journal_depth:H uptime_ms:I"
                     " staff_id:s paired:B"),
    EVENT: ("event", "device_id:s boot:I event_seq:I kind:k score:B reasons:S"
                     " invitation:s time:I uptime_ms:I"),
    HEALTH: ("health", "device_id:s uptime_ms:I time:I free_heap:I journal_depth:H"
                       " journal_free:H dropped:I corrupt:I uninvited:I stuck:B fw:s"
                       " staff_id:s display_fault:B rx_overruns:I"),
    DONE: ("done", "device_id:s ref_seq:I"),
    ACK: ("ack", "device_id:s ids:E"),
    INVITE: ("invite", "invitation:s cases:S timeout_s:H"),
    CANCEL: ("cancel", "invitation:s"),
    TIME: ("time", "time:I tz_min:h"),
    BIND: ("bind", "staff_id:s window:s"),
    UNBIND: ("unbind", "staff_id:s"),
    BITMAP: ("bitmap", "slot:B width:H height:H offset:H data:y"),
    CONFIG: ("config", "invite_timeout_s:H heartbeat_s:H stuck_ms:H reasons_version:s"
                       " reasons:S"),
    ERROR: ("error", "code:H ref_seq:I detail:s"),
}


def is_int(v):
    # MicroPython's bool is not an int subclass; CPython's is. Refuse bools on both.
    return isinstance(v, int) and not isinstance(v, bool)
