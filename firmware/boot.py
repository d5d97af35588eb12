# Power-on, in the order docs/link.md requires:
#
#   1. board settings and the HAL
#   2. the journal, scanned (torn records dropped, highest boot seen)
#   3. this boot's number = max(stored, highest in journal) + 1, persisted
#      atomically before anything can be sent or journaled: event ids
#      (device, boot, seq) must never repeat
#   4. identity, key, pairing, last config; then the device runs
#
# main.py drops this module (and recover.py) from RAM once the device is
# built: code that runs once should not hold heap for the device's life.

import gc
import os

from firmware import store


def start(argv):
    opts = {}
    for i in range(0, len(argv) - 1, 2):
        opts[argv[i].lstrip("-")] = argv[i + 1]
    store.ROOT = opts.get("flash", ".") + "/"
    settings = store.get("board") or {}
    if opts.get("board", settings.get("name", "sim" if "uart" in opts else "")) == "sim":
        from firmware import hal_sim as hal
    else:
        from firmware import hal_machine as hal
    hal.init(settings, opts)
    store.ROOT = hal.flash + "/"
    try:
        os.mkdir(hal.flash)
    except OSError:
        pass  # it exists
    fbuf = bytearray((hal.width + 7) // 8 * hal.height)  # the screen, early too
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

    # One module at a time, collecting in between: what a compile leaves
    # behind is freed before the next one starts, and holes fill from the
    # bottom of the heap up.
    gc.collect()
    from firmware import link

    gc.collect()
    from firmware import app

    gc.collect()
    from firmware import orders, screen

    gc.collect()
    from firmware.buttons import Buttons
    from firmware.rating import Evaluator

    app.dev = app
    app.hal = hal
    app.board = hal.name
    app.journal = j
    app.boot = boot
    d = store.get("device")
    if not d:
        d = {"device_id": hal.make_id()}
        store.put("device", d)
    app.device_id = d["device_id"]
    d = store.get("pair") or {}
    app.staff_id = d.get("staff_id", "")
    app.window = d.get("window", "")
    app.buttons = Buttons(hal.debounce_ms, hal.stuck_ms)
    app.ev = Evaluator(app)
    screen.init(hal.width, hal.height, fbuf)
    app.screen = screen
    link.init(app)
    link.set_key(store.key())
    app.link = link
    cfg = store.get("config")
    if cfg:
        orders.configure(app, cfg, 0)
    return app
