"""What a fast device costs the simulator's process: CPython memory and
start-up per device, and the CPU of a rating's round trip (firmware/README.md
"Fast simulator").

    .venv/bin/python -m simulator.fastcost --devices 1000 [--port FILE] [--json]

N devices are made and powered on in one process over a transport that
keeps nothing (each boots as in the fleet: journal scan, boot number, key,
settings, the firmware's run() up to its first hello), then each is paired,
invited, rated 5★ and ACKed, the frames going through the device as from
the gateway. Memory is what the process's resident set grew by, per
device, after a gc; start-up the CPU time from FastDevice() to the hello
on the wire, per device; the rating the CPU time per device of time + bind +
invite + press + ack (the firmware's turns, its codec and its journal on a
file). CPU time, not wall: a shared machine's other work stays out of it.

`--port FILE` measures another fast device module instead (e.g. the CPython
port of the link this one replaced: `git show 610db06:simulator/fastdev.py`),
the same way.
"""

import argparse
import gc
import importlib.util
import json
import pathlib
import shutil
import tempfile
import time

from protocol import messages
from protocol.hmac256 import Key
from tools.provision import write_key_dir

KEY = bytes(range(7, 39))
CLOCK = 1795000000


def rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Null:
    """A transport that keeps only the last payload of each device."""

    def __init__(self):
        self.last = {}
        self.frames = 0

    def publish(self, dev, data):
        self.last[dev.device_id] = data
        self.frames += 1

    def schedule(self, dev, ms):
        pass


def _module(port):
    if port is None:
        from simulator import fastdev

        return fastdev
    spec = importlib.util.spec_from_file_location("fastdev_port", port)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def measure(n, port=None, workdir=None):
    mod = _module(port)
    work = pathlib.Path(workdir or tempfile.mkdtemp(prefix="hcp-fastcost-"))
    key = Key(KEY)
    ids = ["FAST-%05d" % i for i in range(n)]
    for did in ids:  # the technician's step, before first boot: not timed
        write_key_dir(work / did, KEY)
    transport = Null()
    gc.collect()
    before = rss_kb()
    t0 = time.process_time()
    devs = [mod.FastDevice(did, work / did, did, transport).start() for did in ids]
    boot_s = time.process_time() - t0
    gc.collect()
    grown = rss_kb() - before
    assert all(b"\x00" in transport.last[d] for d in ids)
    seq = [0]

    def send(dev, msg):
        seq[0] += 1
        dev.receive(messages.encode(dict(msg, session=9, seq=seq[0]), key))

    t0 = time.process_time()
    for d in devs:
        send(d, {"type": "time", "time": CLOCK, "tz_min": 480})
        send(d, {"type": "bind", "staff_id": "S1", "window": "W1"})
        send(d, {"type": "invite", "invitation": "I-" + d.device_id, "cases": ["C"], "timeout_s": 60})
        d.press(5)
        ev = messages.decode(transport.last[d.device_id].rstrip(b"\x00").split(b"\x00")[-1], key)
        assert ev["type"] == "event" and ev["invitation"] == "I-" + d.device_id, ev
        send(d, {"type": "ack", "device_id": d.device_id, "ids": [[ev["boot"], ev["event_seq"]]]})
        assert d.journal_depth() == 0
    rating_s = time.process_time() - t0
    for d in devs:
        d.power_cut()
    shutil.rmtree(work, ignore_errors=True)
    return {"devices": n, "port": str(port) if port else "simulator/fastdev.py",
            "rss_kb_per_device": round(grown / n, 1), "boot_ms_per_device": round(boot_s * 1000 / n, 3),
            "rating_ms_per_device": round(rating_s * 1000 / n, 3), "frames": transport.frames}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--port", default=None, help="another fast device module to measure")
    ap.add_argument("--workdir", default=None)
    a = ap.parse_args(argv)
    print(json.dumps(measure(a.devices, a.port, a.workdir)))


if __name__ == "__main__":
    main()
