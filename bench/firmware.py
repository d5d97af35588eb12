"""The firmware (docs/design.md §5: runs with `-X heapsize=64K`, stretch 32K; boot
to ready <= 200 ms): peak heap during a scripted session, boot-to-ready, the
size of the compiled bundle.

One real-firmware device (the installed .mpy bundle under the MicroPython
unix port) in a SimHall: gateway process, broker, upstream receivers. The
session: a 好评, a 差评 with two reasons, a batch of three cases, a walk-away
(unrated after the invitation times out), an uninvited press, a bitmap-laden
re-pair, all through the real API. The heap figure is the firmware's own:
the `free_heap` of its health frames (gc.mem_free() at each heartbeat, every
`heartbeat_s` = 2 s, read from the gateway's API every 0.2 s), so the peak
used is heap - the least free seen at a heartbeat, not the instantaneous
peak between heartbeats. Boot to ready: from starting the process (power on)
to the screen showing `idle` (paired, journal recovered, link up), measured
`boots` times. Reference: none (absolute targets).

    hcp bench firmware [--json] [-p heap=64K] [-p boots=5] [-p board=sim|esp32|pico]

`board`: the sim board, or a virtual ESP32 / RP2040 board (simulator/board.py:
hal_machine.py and the panel driver on emulated peripherals; the firmware
has its heap to itself, the emulator's own is held apart).
"""

import os
import pathlib
import shutil
import statistics
import tempfile
import threading
import time

from bench.common import Deadline, result


def _kib(text):
    text = str(text).upper()
    return int(text[:-1]) * 1024 if text.endswith("K") else int(text)


def bundle_size(workdir, board="sim"):
    from tools import flash

    out = pathlib.Path(workdir) / "bundle-size"
    files = flash.build(board, out)
    total = sum((out / rel).stat().st_size for rel in files)
    return total, len(files)


def run(progress=None, heap="64K", boots=5, seconds=110, keep=0, board="sim"):
    from simulator.hall import SimHall

    say = progress or (lambda m: None)
    deadline = Deadline(seconds)
    work = tempfile.mkdtemp(prefix="hcp-bench-firmware-")
    hall = SimHall(work, devices=1, seed=1, heap=heap, board=board)
    frees = []
    stop = threading.Event()
    try:
        size, nfiles = bundle_size(work, board)
        say("bundle: %d bytes in %d files" % (size, nfiles))
        hall.start(progress=say)
        w = hall.windows[0]
        dev = w.device

        def sample():
            while not stop.is_set():
                st, d = hall.api.call("GET", "/api/devices/%s" % w.device_id, timeout=2.0)
                if st == 200:
                    v = (d.get("counters") or {}).get("free_heap")
                    if v is not None and (not frees or frees[-1] != v):
                        frees.append(v)
                stop.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        steps = []

        def rate(cases, stars, reasons=()):
            status, inv = hall.invite(w, cases)
            ok = status == 200 and dev.wait_state(("invited",), timeout=5.0) == "invited"
            if ok:
                dev.press(stars)
                if reasons:
                    dev.wait_state(("reasons",), timeout=5.0)
                    for i in reasons:
                        dev.press(6 - (i % 4 + 1))
                    dev.press(1)
                    dev.press(1)
                ok = dev.wait_state(("thanks",), timeout=10.0) == "thanks"
                dev.wait_state(("idle",), timeout=10.0)
            steps.append(ok)

        say("session: ratings, 差评 with reasons, a batch, a walk-away, an uninvited press")
        rate(["FW-1"], 5)
        rate(["FW-2"], 2, reasons=(0, 2))
        rate(["FW-3", "FW-4", "FW-5"], 4)
        status, inv = hall.invite(w, ["FW-6"])  # nobody presses: unrated after the timeout
        steps.append(status == 200 and dev.wait_state(("invited",), timeout=5.0) == "invited"
                     and dev.wait_state(("idle",), timeout=hall.invite_timeout_s + 6.0) == "idle")
        dev.press(3)  # uninvited
        time.sleep(2.5)  # at least one more heartbeat after the session
        rate(["FW-7"], 1, reasons=(1,))
        time.sleep(2.5)
        rss = dev.rss_kb()
        say("boot to ready, %d boots" % boots)
        ready = []
        for _ in range(boots):
            if deadline.left < 15:
                break
            dev.power_cut()
            time.sleep(0.2)
            try:  # the screen of the last boot stays in the flash directory
                os.unlink(dev.flash / "screen.txt")
            except FileNotFoundError:
                pass
            t0 = time.monotonic()
            dev.start()
            if dev.wait_state(("idle",), timeout=10.0, poll=0.002) == "idle":
                ready.append(time.monotonic() - t0)
            # Wait until the screen file is rewritten by this boot before the next cut.
            time.sleep(1.0)
        time.sleep(2.5)
        stop.set()
        sampler.join(3)
    finally:
        stop.set()
        hall.stop()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    heap_b = _kib(heap)
    least = min(frees) if frees else None
    peak = heap_b - least if least is not None else None
    return result("firmware", peak, "bytes of heap used (peak at heartbeats)", None,
                  {"heap": heap, "boots": boots, "heartbeat_s": 2, "board": board,
                   "session": "5★, 差评+2 reasons, 3-case batch, walk-away (unrated), uninvited, 1★+reason"},
                  target="runs at 64K (stretch 32K); boot to ready <= 200 ms",
                  heap_bytes=heap_b, least_free_bytes=least, free_heap_seen=frees[:50],
                  session_steps_ok=all(steps) and len(steps) == 5, session_steps=steps,
                  boot_to_ready_ms_median=1e3 * statistics.median(ready) if ready else None,
                  boot_to_ready_ms_max=1e3 * max(ready) if ready else None,
                  boot_to_ready_ms=[round(1e3 * x, 1) for x in ready],
                  bundle_bytes=size, bundle_files=nfiles, device_rss_mb=rss / 1024.0)
