# One valid example of every message type. `hcp proto examples` prints these,
# the golden vectors are built from them, and the tests round-trip them on
# both interpreters. Not imported by the firmware.

# A fixed test key (32 bytes: 00 01 02 ... 1f) for tagged golden vectors.
TEST_KEY = bytes(range(32))

EXAMPLES = [
    {"type": "hello", "session": 7, "seq": 1, "device_id": "EV-0001", "fw": "0.1.0",
     "board": "sim", "boot": 7, "journal_depth": 2, "uptime_ms": 153, "staff_id": "S1024",
     "paired": 1},
    {"type": "event", "session": 7, "seq": 2, "device_id": "EV-0001", "boot": 7,
     "event_seq": 41, "kind": "rating", "score": 5, "reasons": [], "invitation": "INV-9",
     "time": 1795000000, "uptime_ms": 60210},
    {"type": "event", "session": 7, "seq": 3, "device_id": "EV-0001", "boot": 7,
     "event_seq": 42, "kind": "rating", "score": 1, "reasons": ["R1", "R3"],
     "invitation": "INV-10", "time": 1795000100, "uptime_ms": 160400},
    {"type": "event", "session": 7, "seq": 4, "device_id": "EV-0001", "boot": 7,
     "event_seq": 43, "kind": "unrated", "score": 0, "reasons": [], "invitation": "INV-11",
     "time": 0, "uptime_ms": 171000},
    {"type": "event", "session": 7, "seq": 5, "device_id": "EV-0001", "boot": 7,
     "event_seq": 44, "kind": "uninvited", "score": 5, "reasons": [], "invitation": "",
     "time": 1795000200, "uptime_ms": 260000},
    {"type": "health", "session": 7, "seq": 6, "device_id": "EV-0001", "uptime_ms": 300000,
     "time": 1795000240, "free_heap": 41216, "journal_depth": 1, "journal_free": 511,
     "dropped": 0, "corrupt": 1, "uninvited": 1, "stuck": 0, "fw": "0.1.0",
     "staff_id": "S1024", "display_fault": 1, "rx_overruns": 2},
    {"type": "ack", "session": 3, "seq": 10, "device_id": "EV-0001", "ids": [[7, 41], [7, 42]]},
    {"type": "invite", "session": 3, "seq": 11, "invitation": "INV-12",
     "cases": ["330100-2026-000123", "330100-2026-000124"], "timeout_s": 10},
    {"type": "cancel", "session": 3, "seq": 12, "invitation": "INV-12"},
    {"type": "time", "session": 3, "seq": 13, "time": 1795000300, "tz_min": 480},
    {"type": "bind", "session": 3, "seq": 14, "staff_id": "S1024", "window": "A05"},
    {"type": "unbind", "session": 3, "seq": 15, "staff_id": "S1024"},
    {"type": "bitmap", "session": 3, "seq": 16, "slot": 1, "width": 16, "height": 2,
     "offset": 0, "data": b"\xf0\x0f\x81\x18"},
    {"type": "config", "session": 3, "seq": 17, "invite_timeout_s": 10, "heartbeat_s": 30,
     "stuck_ms": 5000, "reasons_version": "fallback-1",
     "reasons": ["R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8"]},
    {"type": "error", "session": 3, "seq": 18, "code": 4, "ref_seq": 11,
     "detail": "journal full"},
    {"type": "done", "session": 7, "seq": 7, "device_id": "EV-0001", "ref_seq": 16},
]
