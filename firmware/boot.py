# Power-on, in the order docs/link.md requires:
#
#   1. board settings and the HAL
#   2. the journal, scanned (torn records dropped, highest boot seen)
#   3. this boot's number = max(stored, highest in journal) + 1, persisted
#      atomically before anything can be sent or journaled: event ids
#      (device, boot, seq) must never repeat
#   4. identity, pairing, last config; then the device runs
#
# main.py drops this module (and recover.py) from RAM once the device is
# built: code that runs once should not hold heap for the device's life.

import gc
from binascii import unhexlify

from firmware import store


def start(argv):
    opts = {}
    for i in range(0, len(argv) - 1, 2):
        opts[argv[i].lstrip("-")] = argv[i + 1]
    store.ROOT = opts.get("flash", ".") + "/"
    settings = store.get("board") or {}
    if opts.get("board", settings.get("name", "sim" if "uart" in opts else "")) == "sim":
        from firmware import hal_sim

        hal = hal_sim.Board(opts.get("uart"), settings)
    else:
        from firmware import hal_machine

        hal = hal_machine.Board(settings)
        store.ROOT = hal.flash + "/"
    gc.collect()

    from firmware.recover import open_journal

    j = open_journal(store.ROOT + "journal", hal.slots)
    boot = j.max_boot
    try:
        with open(store.ROOT + "boot") as f:
            boot = max(boot, int(f.read()))
    except (OSError, ValueError):
        pass
    boot += 1
    store.atomic(store.ROOT + "boot", str(boot))

    from firmware import app, orders
    from firmware.buttons import Buttons
    from firmware.link import Link
    from firmware.rating import Evaluator
    from firmware.screen import Screen

    dev = app.Device()
    dev.hal = hal
    dev.board = hal.name
    dev.journal = j
    dev.boot = boot
    d = store.get("device")
    if not d:
        d = {"device_id": hal.make_id()}
        store.put("device", d)
    dev.device_id = d["device_id"]
    d = store.get("pair") or {}
    dev.staff_id = d.get("staff_id", "")
    dev.window = d.get("window", "")
    dev.buttons = Buttons(hal.debounce_ms, hal.stuck_ms)
    dev.ev = Evaluator(dev)
    cfg = store.get("config")
    if cfg:
        orders.configure(dev, cfg, 0)
    dev.screen = Screen(hal.width, hal.height)
    dev.link = Link(dev)
    dev.link.set_key(unhexlify(d.get("key", "")))
    return dev
